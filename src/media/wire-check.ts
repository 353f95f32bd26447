import protobuf from 'protobufjs';
import { InputError } from '../engine/errors.js';

/**
 * Strict structural check of protobuf bytes against a message type, run before protobufjs decodes them.
 * protobufjs skips a known field sent with the wrong wire type, skips groups, accepts varints of any length in
 * unknown fields and reports truncation as a bare RangeError; a media's bytes that are not exactly what the
 * schema says must instead be refused with a reason and a byte offset. One pass, no allocation unless it fails.
 */

/** What the wire may carry for a declared field; indexes WireRule.kinds by field number (0 = not declared). */
const NOT_DECLARED = 0;
const VARINT = 1;
const FIXED64 = 2;
const FIXED32 = 3;
const BYTES = 4;
const UTF8 = 5;
const MESSAGE = 6;
const PACKABLE_VARINT = 7;
const PACKABLE_FIXED64 = 8;
const PACKABLE_FIXED32 = 9;

/** Deep enough for any schema we speak (Tencent nests 3 levels); shallow enough to stop a stack-exhaustion attempt. */
export const MAX_NESTING_DEPTH = 32;

/** A message type compiled for checking: per field number, the expected encoding and, for messages, their rule. */
export interface WireRule {
  readonly typeName: string;
  readonly kinds: Uint8Array;
  readonly fieldNames: ReadonlyArray<string | undefined>;
  readonly nested: ReadonlyArray<WireRule | undefined>;
}

const SCALAR_KINDS: Record<string, number> = {
  int32: VARINT,
  uint32: VARINT,
  sint32: VARINT,
  int64: VARINT,
  uint64: VARINT,
  sint64: VARINT,
  bool: VARINT,
  double: FIXED64,
  fixed64: FIXED64,
  sfixed64: FIXED64,
  float: FIXED32,
  fixed32: FIXED32,
  sfixed32: FIXED32,
};
const PACKABLE: Record<number, number> = {
  [VARINT]: PACKABLE_VARINT,
  [FIXED64]: PACKABLE_FIXED64,
  [FIXED32]: PACKABLE_FIXED32,
};

/** Compiles a resolved protobufjs type (call root.resolveAll() first); recursive types are supported. */
export function compileWireRule(type: protobuf.Type): WireRule {
  return compile(type, new Map());
}

function compile(type: protobuf.Type, seen: Map<protobuf.Type, WireRule>): WireRule {
  const known = seen.get(type);
  if (known) return known;
  const maxId = type.fieldsArray.reduce((max, field) => Math.max(max, field.id), 0);
  const kinds = new Uint8Array(maxId + 1);
  const fieldNames: Array<string | undefined> = [];
  const nested: Array<WireRule | undefined> = [];
  // Registered before the fields are compiled, so that a type reaching itself finds its own rule.
  const rule: WireRule = { typeName: type.fullName.replace(/^\./, ''), kinds, fieldNames, nested };
  seen.set(type, rule);
  for (const field of type.fieldsArray) {
    field.resolve();
    fieldNames[field.id] = field.name;
    if (field instanceof protobuf.MapField) {
      kinds[field.id] = MESSAGE;
      nested[field.id] = mapEntryRule(field, rule.typeName, seen);
      continue;
    }
    kinds[field.id] = fieldKind(field);
    if (field.resolvedType instanceof protobuf.Type) nested[field.id] = compile(field.resolvedType, seen);
  }
  return rule;
}

/** A map travels as repeated entries, each a message { 1: key, 2: value } (both optional on the wire). */
function mapEntryRule(field: protobuf.MapField, typeName: string, seen: Map<protobuf.Type, WireRule>): WireRule {
  const utf8 = verifiesUtf8(field);
  const value = field.resolvedType instanceof protobuf.Type ? compile(field.resolvedType, seen) : undefined;
  return {
    typeName: `${typeName}.${field.name} entry`,
    kinds: Uint8Array.of(NOT_DECLARED, singleKind(field, field.keyType, null, utf8), value ? MESSAGE : singleKind(field, field.type, field.resolvedType, utf8)),
    fieldNames: [undefined, 'key', 'value'],
    nested: [undefined, undefined, value],
  };
}

function fieldKind(field: protobuf.Field): number {
  if (field.delimited) throw new Error(`wire-check: ${field.fullName} is a group field, which our protocols do not use`);
  if (field.resolvedType instanceof protobuf.Type) return MESSAGE;
  const kind = singleKind(field, field.type, field.resolvedType, verifiesUtf8(field));
  // Parsers must accept both packed and unpacked encodings of a repeated scalar, whatever the schema prefers.
  return field.repeated && kind in PACKABLE ? PACKABLE[kind]! : kind;
}

/** The encoding of one value that is not a message: a scalar, an enum, bytes or a string. */
function singleKind(field: protobuf.FieldBase, type: string, resolved: protobuf.ReflectionObject | null, utf8: boolean): number {
  if (type === 'bytes') return BYTES;
  if (type === 'string') return utf8 ? UTF8 : BYTES;
  const scalar = resolved instanceof protobuf.Enum ? VARINT : SCALAR_KINDS[type];
  if (scalar === undefined) throw new Error(`wire-check: ${field.fullName} has unsupported type ${type}`);
  return scalar;
}

/**
 * proto3 strings must be valid UTF-8 and protobufjs enforces it while decoding; checking here gives the offset.
 * protobufjs keeps the resolved feature in a private field, the same one its own decoder generator reads.
 */
function verifiesUtf8(field: protobuf.FieldBase): boolean {
  const features = (field as unknown as { _features?: { utf8_validation?: string } })._features;
  return features?.utf8_validation === 'VERIFY';
}

const TRUNCATED = -1;
const TOO_LONG = -2;
/** Value of the last varint read by readVarint; exact up to 2^53, which is all a tag or a length needs. */
let lastVarint = 0;

/** Reads a varint of at most maxBytes that must end before `end`: the position after it, TRUNCATED or TOO_LONG. */
function readVarint(buf: Uint8Array, pos: number, end: number, maxBytes: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < maxBytes; i++) {
    if (pos >= end) return TRUNCATED;
    const byte = buf[pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      lastVarint = value;
      return pos;
    }
    scale *= 128;
  }
  return TOO_LONG;
}

/** Throws InputError('malformed_protobuf') unless `bytes` is a well-formed encoding of the rule's message type. */
export function checkWire(rule: WireRule, bytes: Uint8Array, maxDepth = MAX_NESTING_DEPTH): void {
  checkMessage(rule, bytes, 0, bytes.length, 0, maxDepth);
}

function checkMessage(rule: WireRule, buf: Uint8Array, start: number, end: number, depth: number, maxDepth: number) {
  let pos = start;
  while (pos < end) {
    const tagAt = pos;
    pos = readVarint(buf, pos, end, 5);
    if (pos === TRUNCATED) fail(rule, 0, tagAt, 'truncated tag');
    if (pos === TOO_LONG || lastVarint > 0xffffffff) fail(rule, 0, tagAt, 'tag longer than 32 bits');
    const wireType = lastVarint % 8;
    const field = (lastVarint - wireType) / 8;
    if (field === 0) fail(rule, 0, tagAt, 'field number 0');
    const kind = field < rule.kinds.length ? rule.kinds[field]! : NOT_DECLARED;
    switch (wireType) {
      case 0:
        if (kind !== NOT_DECLARED && kind !== VARINT && kind !== PACKABLE_VARINT) wrongWireType(rule, field, tagAt, 0);
        pos = readVarint(buf, pos, end, 10);
        if (pos === TRUNCATED) fail(rule, field, tagAt, 'truncated varint');
        if (pos === TOO_LONG) fail(rule, field, tagAt, 'varint longer than 10 bytes');
        break;
      case 1:
        if (kind !== NOT_DECLARED && kind !== FIXED64 && kind !== PACKABLE_FIXED64) wrongWireType(rule, field, tagAt, 1);
        if (end - pos < 8) fail(rule, field, tagAt, `truncated 64-bit value (${end - pos} bytes left)`);
        pos += 8;
        break;
      case 5:
        if (kind !== NOT_DECLARED && kind !== FIXED32 && kind !== PACKABLE_FIXED32) wrongWireType(rule, field, tagAt, 5);
        if (end - pos < 4) fail(rule, field, tagAt, `truncated 32-bit value (${end - pos} bytes left)`);
        pos += 4;
        break;
      case 2: {
        if (kind === VARINT || kind === FIXED64 || kind === FIXED32) wrongWireType(rule, field, tagAt, 2);
        pos = readVarint(buf, pos, end, 5);
        if (pos === TRUNCATED) fail(rule, field, tagAt, 'truncated length prefix');
        if (pos === TOO_LONG || lastVarint >= 0x80000000) fail(rule, field, tagAt, 'length prefix of 2^31 or more');
        const length = lastVarint;
        if (length > end - pos) fail(rule, field, tagAt, `length ${length} overruns the ${end - pos} bytes left`);
        const valueEnd = pos + length;
        if (kind === MESSAGE) {
          if (depth >= maxDepth) fail(rule, field, tagAt, `messages nested deeper than ${maxDepth} levels`);
          checkMessage(rule.nested[field]!, buf, pos, valueEnd, depth + 1, maxDepth);
        } else if (kind === UTF8) {
          const badAt = invalidUtf8At(buf, pos, valueEnd);
          if (badAt >= 0) fail(rule, field, tagAt, `invalid UTF-8 at byte ${badAt}`);
        } else if (kind === PACKABLE_VARINT) {
          checkPackedVarints(rule, field, tagAt, buf, pos, valueEnd);
        } else if (kind === PACKABLE_FIXED64 && length % 8 !== 0) {
          fail(rule, field, tagAt, `packed 64-bit values of ${length} bytes, not a multiple of 8`);
        } else if (kind === PACKABLE_FIXED32 && length % 4 !== 0) {
          fail(rule, field, tagAt, `packed 32-bit values of ${length} bytes, not a multiple of 4`);
        }
        pos = valueEnd;
        break;
      }
      case 3:
      case 4:
        fail(rule, field, tagAt, `group wire type ${wireType} is not supported`);
      default:
        fail(rule, field, tagAt, `invalid wire type ${wireType}`);
    }
  }
}

function checkPackedVarints(rule: WireRule, field: number, tagAt: number, buf: Uint8Array, pos: number, end: number) {
  while (pos < end) {
    pos = readVarint(buf, pos, end, 10);
    if (pos === TRUNCATED) fail(rule, field, tagAt, 'packed varint runs past its length');
    if (pos === TOO_LONG) fail(rule, field, tagAt, 'packed varint longer than 10 bytes');
  }
}

/** Offset of the first byte that breaks UTF-8 (overlongs, surrogates and code points above U+10FFFF included), or -1. */
function invalidUtf8At(buf: Uint8Array, pos: number, end: number): number {
  while (pos < end) {
    const lead = buf[pos]!;
    if (lead < 0x80) {
      pos++;
      continue;
    }
    let continuation: number;
    let low = 0x80;
    let high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) continuation = 1;
    else if (lead >= 0xe0 && lead <= 0xef) {
      continuation = 2;
      if (lead === 0xe0) low = 0xa0;
      else if (lead === 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      continuation = 3;
      if (lead === 0xf0) low = 0x90;
      else if (lead === 0xf4) high = 0x8f;
    } else return pos;
    if (end - pos <= continuation) return pos;
    const second = buf[pos + 1]!;
    if (second < low || second > high) return pos;
    for (let i = 2; i <= continuation; i++) {
      const next = buf[pos + i]!;
      if (next < 0x80 || next > 0xbf) return pos;
    }
    pos += continuation + 1;
  }
  return -1;
}

const EXPECTED_WIRE_TYPES: Record<number, string> = {
  [VARINT]: '0',
  [FIXED64]: '1',
  [FIXED32]: '5',
  [BYTES]: '2',
  [UTF8]: '2',
  [MESSAGE]: '2',
  [PACKABLE_VARINT]: '0 or 2',
  [PACKABLE_FIXED64]: '1 or 2',
  [PACKABLE_FIXED32]: '5 or 2',
};

function wrongWireType(rule: WireRule, field: number, at: number, wireType: number): never {
  const expected = EXPECTED_WIRE_TYPES[rule.kinds[field]!];
  fail(rule, field, at, `wire type ${wireType} where the schema needs ${expected}`);
}

function fail(rule: WireRule, field: number, at: number, what: string): never {
  const name = rule.fieldNames[field];
  const where = field === 0 ? '' : name === undefined ? ` field ${field}` : ` field ${field} (${name})`;
  throw new InputError('malformed_protobuf', `${rule.typeName}${where} at byte ${at}: ${what}`);
}
