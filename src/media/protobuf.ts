import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { InputError } from '../engine/errors.js';
import { checkWire, compileWireRule, type WireRule } from './wire-check.js';

/**
 * Parses a .proto file at module load. Field names stay as written in the .proto, so decoded messages and fixtures
 * read like the protocol page and like protoc's text format.
 */
export function loadProto(url: URL): protobuf.Root {
  const parsed = protobuf.parse(readFileSync(url, 'utf8'), { keepCase: true });
  const { root } = parsed;
  // Well-known types (google/protobuf/wrappers.proto) come with protobufjs; no other import is allowed.
  for (const name of parsed.imports ?? []) {
    const common = protobuf.common.get(name);
    if (!common) throw new Error(`${url.pathname}: import "${name}" is not a well-known type`);
    root.addJSON(common.nested!);
  }
  root.resolveAll();
  return root;
}

/** A message type the adapters decode from media bytes: its protobufjs reflection and its compiled wire rule. */
export interface StrictType {
  readonly type: protobuf.Type;
  readonly rule: WireRule;
}

export function strictType(root: protobuf.Root, name: string): StrictType {
  const type = root.lookupType(name);
  return { type, rule: compileWireRule(type) };
}

/** Checks the bytes strictly, then decodes them; anything wrong becomes InputError('malformed_protobuf'). */
export function decodeStrict<T>(message: StrictType, bytes: Uint8Array): T {
  checkWire(message.rule, bytes);
  try {
    return message.type.decode(bytes) as unknown as T;
  } catch (error) {
    // The wire check should leave nothing for protobufjs to refuse; this keeps a miss a 400 rather than a 500.
    throw new InputError('malformed_protobuf', `${message.rule.typeName}: ${(error as Error).message}`);
  }
}

/** A uint64 as protobufjs decodes it (Long), or as JSON carries it (number or decimal string). */
export type Uint64 = protobuf.Long | number | string;

const TWO_POW_32 = 0x1_0000_0000;
/** Largest high word of a uint64 that still fits a JS safe integer (2^53 - 1). */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;

/**
 * Ids above 2^53-1 cannot become JS numbers without rounding, and a rounded creative id would name a creative the
 * request never carried: refuse them instead.
 */
export function uint64ToNumber(value: Uint64, field: string): number {
  if (typeof value === 'number' || typeof value === 'string') {
    const number = Number(value);
    if (Number.isSafeInteger(number) && number >= 0) return number;
    throw idOutOfRange(field, String(value));
  }
  const high = value.high >>> 0;
  if (high > MAX_SAFE_HIGH_WORD) throw idOutOfRange(field, value.toString());
  return high * TWO_POW_32 + (value.low >>> 0);
}

/** uint64ToNumber for a uint64 read as two unsigned 32-bit words. */
export function uint64WordsToNumber(low: number, high: number, field: string): number {
  if (high > MAX_SAFE_HIGH_WORD) throw idOutOfRange(field, ((BigInt(high) << 32n) | BigInt(low)).toString());
  return high * TWO_POW_32 + low;
}

function idOutOfRange(field: string, value: string): InputError {
  return new InputError('id_out_of_range', `${field} ${value} is above 2^53-1 and cannot be represented exactly`);
}

/**
 * For bytes that passed checkWire: the last value of length-delimited field `idField` at the message's top level
 * (the one a decoder keeps; a view into `message`, or null) and whether varint field `flagField` was last set
 * non-zero. What a shed answer needs, without decoding; also the raw bytes of an id protobufjs could not read as text.
 */
export function scanIdAndFlag(message: Uint8Array, idField: number, flagField: number): { id: Uint8Array | null; flag: boolean } {
  let id: Uint8Array | null = null;
  let flag = false;
  const reader = protobuf.Reader.create(message);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === ((idField << 3) | 2)) id = reader.bytes();
    else if (tag === flagField << 3) flag = reader.bool();
    else reader.skipType(tag & 7);
  }
  return { id, flag };
}
