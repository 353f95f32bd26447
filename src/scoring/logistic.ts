import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatPath, type CompiledModel } from './model.js';

/**
 * Our logistic-regression format ("rta-logistic/1", specified in data/models/README.md): dense weights by feature
 * name, categorical tokens such as `credit_band=3` hashed into a weight array, optional Platt calibration.
 */

export const LOGISTIC_FORMAT = 'rta-logistic/1';
const MAX_BUCKETS = 1 << 24;

const finite = z.number().refine(Number.isFinite, { error: 'expected a finite number' });

const logisticFileSchema = z
  .object({
    format: z.literal(LOGISTIC_FORMAT, { error: `expected format "${LOGISTIC_FORMAT}"` }),
    name: z.string().min(1),
    version: z.string().min(1),
    description: z.string().optional(),
    bias: finite,
    dense: z.array(z.object({ feature: z.string().min(1), weight: finite, ifMissing: finite.default(0) }).strict()),
    hashed: z
      .object({
        hash: z.literal('fnv1a32', { error: 'the only token hash is "fnv1a32"' }),
        buckets: z.number().int().min(1).max(MAX_BUCKETS),
        features: z.array(z.string().min(1)).min(1),
        weights: z.array(finite),
      })
      .strict()
      .optional(),
    calibration: z.object({ method: z.literal('platt', { error: 'the only calibration is "platt"' }), a: finite, b: finite }).strict().optional(),
  })
  .strict();

export type LogisticModel = z.infer<typeof logisticFileSchema>;

/** Every feature the model reads, dense first, each once. */
export function logisticFeatures(model: LogisticModel): string[] {
  return [...new Set([...model.dense.map((d) => d.feature), ...(model.hashed?.features ?? [])])];
}

export function parseLogisticModel(json: unknown, source: string): LogisticModel {
  const parsed = logisticFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  const model = parsed.data;
  const duplicate = (names: string[]) => names.find((name, i) => names.indexOf(name) !== i);
  const denseTwice = duplicate(model.dense.map((d) => d.feature));
  if (denseTwice !== undefined) throw new Error(`${source}: dense: feature "${denseTwice}" has two weights`);
  if (model.hashed) {
    const { buckets, weights, features } = model.hashed;
    if (weights.length !== buckets) throw new Error(`${source}: hashed.weights has ${weights.length} entries but buckets is ${buckets}`);
    const hashedTwice = duplicate(features);
    if (hashedTwice !== undefined) throw new Error(`${source}: hashed.features lists "${hashedTwice}" twice`);
  }
  return model;
}

export function loadLogisticModel(path: string): LogisticModel {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: not readable JSON: ${(error as Error).message}`);
  }
  return parseLogisticModel(json, path);
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const UTF8 = new TextEncoder();

function hashBytes(state: number, bytes: Uint8Array): number {
  for (const byte of bytes) state = Math.imul(state ^ byte, FNV_PRIME) >>> 0;
  return state;
}

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text`: the token hash of the format. */
export function fnv1a32(text: string): number {
  return hashBytes(FNV_OFFSET, UTF8.encode(text));
}

/** The token a hashed feature contributes: `name=<whole number>`, or `name=missing` for NaN. */
export function logisticToken(feature: string, value: number): string {
  return Number.isNaN(value) ? `${feature}=missing` : `${feature}=${Math.trunc(value)}`;
}

/** Continues an FNV-1a state with the decimal digits of a whole number, without building the string. */
function hashDigits(state: number, value: number): number {
  let unit = 1;
  while (unit * 10 <= value) unit *= 10;
  for (; unit >= 1; unit /= 10) state = Math.imul(state ^ (48 + (Math.floor(value / unit) % 10)), FNV_PRIME) >>> 0;
  return state;
}

class CompiledLogistic implements CompiledModel {
  readonly featureCount: number;
  private readonly bias: number;
  private readonly denseIndex: Int32Array;
  private readonly denseWeight: Float64Array;
  private readonly denseIfMissing: Float64Array;
  private readonly hashedIndex: Int32Array;
  /** FNV-1a state after `name=`, and the full hash of `name=missing`, per hashed feature. */
  private readonly tokenPrefix: Uint32Array;
  private readonly missingToken: Uint32Array;
  private readonly buckets: number;
  private readonly bucketWeight: Float64Array;
  private readonly plattA: number;
  private readonly plattB: number;

  constructor(model: LogisticModel, featureNames: readonly string[]) {
    const indexOf = (name: string): number => {
      const index = featureNames.indexOf(name);
      if (index < 0) throw new Error(`model "${model.name}" reads feature "${name}", which is not in its feature list (${featureNames.join(', ')})`);
      return index;
    };
    this.featureCount = featureNames.length;
    this.bias = model.bias;
    this.denseIndex = Int32Array.from(model.dense, (d) => indexOf(d.feature));
    this.denseWeight = Float64Array.from(model.dense, (d) => d.weight);
    this.denseIfMissing = Float64Array.from(model.dense, (d) => d.ifMissing);
    const hashed = model.hashed ?? { features: [], buckets: 1, weights: [0] };
    this.hashedIndex = Int32Array.from(hashed.features, indexOf);
    this.tokenPrefix = Uint32Array.from(hashed.features, (name) => fnv1a32(`${name}=`));
    this.missingToken = Uint32Array.from(hashed.features, (name) => fnv1a32(logisticToken(name, NaN)));
    this.buckets = hashed.buckets;
    this.bucketWeight = Float64Array.from(hashed.weights);
    this.plattA = model.calibration?.a ?? 1;
    this.plattB = model.calibration?.b ?? 0;
  }

  scoreRows(features: Float32Array, count: number, out: Float32Array, outOffset: number, outStride: number): void {
    for (let row = 0, rowStart = 0; row < count; row++, rowStart += this.featureCount) {
      let z = this.bias;
      for (let j = 0; j < this.denseIndex.length; j++) {
        const value = features[rowStart + this.denseIndex[j]!]!;
        z += this.denseWeight[j]! * (value === value ? value : this.denseIfMissing[j]!);
      }
      for (let j = 0; j < this.hashedIndex.length; j++) {
        const value = features[rowStart + this.hashedIndex[j]!]!;
        const hash = value === value ? hashDigits(this.tokenPrefix[j]!, value) : this.missingToken[j]!;
        z += this.bucketWeight[hash % this.buckets]!;
      }
      out[outOffset + row * outStride] = 1 / (1 + Math.exp(-(this.plattA * z + this.plattB)));
    }
  }
}

/**
 * Compiles against the manifest's feature order. The caller guarantees hashed features are whole-valued
 * (integer profile fields, flags, context), so their tokens are well defined.
 */
export function compileLogistic(model: LogisticModel, featureNames: readonly string[]): CompiledModel {
  return new CompiledLogistic(model, featureNames);
}
