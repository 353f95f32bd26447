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

function readInteger(records: Uint8Array, at: number, source: Source): number {
  if (source === Source.U8) return records[at]!;
  if (source === Source.U16) return records[at]! | (records[at + 1]! << 8);
  return (records[at]! | (records[at + 1]! << 8) | (records[at + 2]! << 16) | (records[at + 3]! << 24)) >>> 0;
}

/**
 * Fills one model's feature row from a profile record. Built once per model from the schema, so the per-record work
 * is a loop over preresolved offsets: no lookups by name, no allocation.
 */
export class FeatureExtractor {
  readonly featureCount: number;
  private readonly source: Uint8Array;
  private readonly offset: Int32Array;
  private readonly missing: Float64Array;
  private readonly flagSource: Uint8Array;
  private readonly bit: Uint8Array;

  constructor(schema: ProfileSchema, featureNames: readonly string[]) {
    const resolved = featureNames.map((name) => resolveFeature(schema, name));
    this.featureCount = resolved.length;
    this.source = Uint8Array.from(resolved, (f) => f.source);
    this.offset = Int32Array.from(resolved, (f) => f.offset);
    this.missing = Float64Array.from(resolved, (f) => f.missing);
    this.flagSource = Uint8Array.from(resolved, (f) => f.flagSource);
    this.bit = Uint8Array.from(resolved, (f) => f.bit);
  }

  /**
   * Writes the features of the record at records[recordOffset] to out[outOffset ..]. For an unknown device
   * (`known` false) `records` is not read and every profile feature is NaN. `os` is an `Os` number.
   */
  fill(records: Uint8Array, recordOffset: number, known: boolean, os: number, out: Float32Array, outOffset: number): void {
    for (let j = 0; j < this.featureCount; j++) {
      const source = this.source[j] as Source;
      let value: number;
      if (source === Source.OS_ANDROID) value = os === Os.ANDROID ? 1 : 0;
      else if (source === Source.OS_IOS) value = os === Os.IOS ? 1 : 0;
      else if (source === Source.KNOWN_DEVICE) value = known ? 1 : 0;
      else if (!known) value = NaN;
      else if (source === Source.F32) {
        const at = recordOffset + this.offset[j]!;
        F32_BYTES[0] = records[at]!;
        F32_BYTES[1] = records[at + 1]!;
        F32_BYTES[2] = records[at + 2]!;
        F32_BYTES[3] = records[at + 3]!;
        value = F32_SCRATCH[0]!;
      } else {
        const integer = readInteger(records, recordOffset + this.offset[j]!, source === Source.FLAG ? (this.flagSource[j] as Source) : source);
        if (integer === this.missing[j]) value = NaN;
        else value = source === Source.FLAG ? (integer >>> this.bit[j]!) & 1 : integer;
      }
      out[outOffset + j] = value;
    }
  }
}
