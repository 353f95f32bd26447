import { Os } from '../engine/types.js';
import type { ProfileSchema } from '../store/profile-schema.js';

/**
 * Model features: a profile field name, `flag:<bit>` for one bit of the flags field, or a context feature the
 * request itself provides. Profile features of an unknown device are all NaN (missing); context features never are.
 */
export const CONTEXT_FEATURES = ['ctx:os_android', 'ctx:os_ios', 'ctx:known_device'] as const;

const Source = { U8: 0, U16: 1, U32: 2, F32: 3, FLAG: 4, OS_ANDROID: 5, OS_IOS: 6, KNOWN_DEVICE: 7 } as const;
type Source = (typeof Source)[keyof typeof Source];
const INTEGER_SOURCES = { u8: Source.U8, u16: Source.U16, u32: Source.U32 } as const;

interface ResolvedFeature {
  source: Source;
  /** Byte offset of the field inside the record (profile features only). */
  offset: number;
  /** The integer field's "not known" value, or -1 when it has none. */
  missing: number;
  /** Width of the field holding a flag, and the flag's bit. */
  flagSource: Source;
  bit: number;
  /** Whole numbers only (integer fields, flags, context): the only features the logistic format may hash. */
  integral: boolean;
}

/** What a feature name refers to, or a precise error naming the valid choices. */
function resolveFeature(schema: ProfileSchema, name: string): ResolvedFeature {
  const context = CONTEXT_FEATURES.indexOf(name as (typeof CONTEXT_FEATURES)[number]);
  if (context >= 0) {
    const source = [Source.OS_ANDROID, Source.OS_IOS, Source.KNOWN_DEVICE][context]!;
    return { source, offset: 0, missing: -1, flagSource: source, bit: 0, integral: true };
  }
  if (!schema.featureNames().includes(name)) {
    throw new Error(`unknown feature "${name}" (known: ${[...schema.featureNames(), ...CONTEXT_FEATURES].join(', ')})`);
  }
  if (name.startsWith('flag:')) {
    const { field, bit } = schema.flag(name.slice('flag:'.length));
    const flagSource = INTEGER_SOURCES[field.type as keyof typeof INTEGER_SOURCES];
    return { source: Source.FLAG, offset: field.offset, missing: field.missing ?? -1, flagSource, bit, integral: true };
  }
  const field = schema.field(name);
  if (field.type === 'f32') return { source: Source.F32, offset: field.offset, missing: -1, flagSource: Source.F32, bit: 0, integral: false };
  return { source: INTEGER_SOURCES[field.type], offset: field.offset, missing: field.missing ?? -1, flagSource: Source.U8, bit: 0, integral: true };
}

/** Throws a precise error when `name` is not a feature a model may read. */
export function checkFeatureName(schema: ProfileSchema, name: string): void {
  resolveFeature(schema, name);
}

/** True when the feature only ever takes whole values (or NaN). */
export function isIntegralFeature(schema: ProfileSchema, name: string): boolean {
  return resolveFeature(schema, name).integral;
}

const F32_SCRATCH = new Float32Array(1);
const F32_BYTES = new Uint8Array(F32_SCRATCH.buffer);

/** The expression reading an integer field at `at + offset` (little-endian). */
function integerRead(source: Source, offset: number): string {
  const byte = (k: number) => `records[at + ${offset + k}]`;
  if (source === Source.U8) return byte(0);
  if (source === Source.U16) return `(${byte(0)} | (${byte(1)} << 8))`;
  return `((${byte(0)} | (${byte(1)} << 8) | (${byte(2)} << 16) | (${byte(3)} << 24)) >>> 0)`;
}

/**
 * Generates one model's fill function from its resolved features: offsets, widths, sentinels and bits become
 * constants, and a field several features read (the flags) is read once. A loop over the resolved table cost
 * about 60 instructions per feature in the served engine; the generated code costs a few.
 */
function compileFill(features: readonly ResolvedFeature[]): FillFunction {
  const reads = new Map<string, string>();
  const known: string[] = [];
  const unknown: string[] = [];
  const context: string[] = [];
  const read = (source: Source, offset: number) => {
    const key = `${source}:${offset}`;
    let name = reads.get(key);
    if (name === undefined) {
      name = `v${reads.size}`;
      reads.set(key, name);
      known.push(`const ${name} = ${source === Source.F32 ? `(F32_BYTES[0] = records[at + ${offset}], F32_BYTES[1] = records[at + ${offset + 1}], F32_BYTES[2] = records[at + ${offset + 2}], F32_BYTES[3] = records[at + ${offset + 3}], F32[0])` : integerRead(source, offset)};`);
    }
    return name;
  };
  features.forEach((f, j) => {
    const slot = `out[o + ${j}]`;
    if (f.source === Source.OS_ANDROID) context.push(`${slot} = os === ${Os.ANDROID} ? 1 : 0;`);
    else if (f.source === Source.OS_IOS) context.push(`${slot} = os === ${Os.IOS} ? 1 : 0;`);
    else if (f.source === Source.KNOWN_DEVICE) context.push(`${slot} = known ? 1 : 0;`);
    else {
      unknown.push(`${slot} = NaN;`);
      if (f.source === Source.F32) known.push(`${slot} = ${read(Source.F32, f.offset)};`);
      else {
        const value = read(f.source === Source.FLAG ? f.flagSource : f.source, f.offset);
        const present = f.source === Source.FLAG ? `(${value} >>> ${f.bit}) & 1` : value;
        known.push(`${slot} = ${f.missing >= 0 ? `${value} === ${f.missing} ? NaN : ${present}` : present};`);
      }
    }
  });
  const body = `return function fill(records, at, known, os, out, o) {\n  if (known) {\n    ${known.join('\n    ')}\n  } else {\n    ${unknown.join('\n    ')}\n  }\n  ${context.join('\n  ')}\n};`;
  return new Function('F32', 'F32_BYTES', `"use strict"; ${body}`)(F32_SCRATCH, F32_BYTES) as FillFunction;
}

/**
 * Writes the features of the record at records[recordOffset] to out[outOffset ..]. For an unknown device
 * (`known` false) `records` is not read and every profile feature is NaN. `os` is an `Os` number.
 */
type FillFunction = (records: Uint8Array, recordOffset: number, known: boolean, os: number, out: Float32Array, outOffset: number) => void;

/** Fills one model's feature row from a profile record: built once per model from the schema, no lookups by name. */
export class FeatureExtractor {
  readonly featureCount: number;
  readonly fill: FillFunction;

  constructor(schema: ProfileSchema, featureNames: readonly string[]) {
    const resolved = featureNames.map((name) => resolveFeature(schema, name));
    this.featureCount = resolved.length;
    this.fill = compileFill(resolved);
  }
}
