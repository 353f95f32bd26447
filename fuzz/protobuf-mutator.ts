import protobuf from 'protobufjs';
import type { Corpus } from './corpus.js';
import { chance, int, pick, randomBytes, type Rng } from './random.js';

/**
 * Structure-aware protobuf mutations: a seed is split into its fields (recursing into the fields the schema
 * declares as messages), the tree is mutated (fields dropped, duplicated, reordered, renumbered, given another wire
 * type, other values, overlong encodings or lying length prefixes, fields of the schema added with random values,
 * unknown fields of every wire type) and written back.
 */

interface WireNode {
  field: number;
  wireType: number;
  /** Wire type 0. */
  varint: bigint;
  /** Wire types 1, 2 (when not a message), 5, and whatever follows the tag of an invalid wire type. */
  bytes: Uint8Array;
  /** Wire type 2 of a field the schema declares as a message: its fields, and their type. */
  children: WireNode[] | null;
  type: protobuf.Type | null;
  /** Extra continuation bytes in the tag, the varint value or the length prefix: overlong but possibly valid. */
  tagPad: number;
  valuePad: number;
  lengthPad: number;
  /** A length prefix that lies about the payload; null writes the true length. */
  length: bigint | null;
}

function node(field: number, wireType: number, value: Partial<WireNode> = {}): WireNode {
  return { field, wireType, varint: 0n, bytes: EMPTY, children: null, type: null, tagPad: 0, valuePad: 0, lengthPad: 0, length: null, ...value };
}

const EMPTY = new Uint8Array(0);

/** Splits valid protobuf bytes into fields; the corpus is built by encoders, so anything else is a bug here. */
export function toTree(type: protobuf.Type, bytes: Uint8Array): WireNode[] {
  const nodes: WireNode[] = [];
  let at = 0;
  const varint = () => {
    let value = 0n;
    for (let shift = 0n; ; shift += 7n) {
      const byte = bytes[at++];
      if (byte === undefined) throw new Error('toTree: truncated varint in a corpus seed');
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    const tag = varint();
    const field = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    if (wireType === 0) {
      nodes.push(node(field, 0, { varint: varint() }));
    } else if (wireType === 2) {
      const length = Number(varint());
      const payload = bytes.subarray(at, (at += length));
      const declared = type.fieldsById[field];
      declared?.resolve();
      const message = declared?.resolvedType instanceof protobuf.Type ? declared.resolvedType : null;
      nodes.push(message ? node(field, 2, { children: toTree(message, payload), type: message }) : node(field, 2, { bytes: payload }));
    } else if (wireType === 1 || wireType === 5) {
      const width = wireType === 1 ? 8 : 4;
      nodes.push(node(field, wireType, { bytes: bytes.subarray(at, (at += width)) }));
    } else {
      throw new Error(`toTree: wire type ${wireType} in a corpus seed`);
    }
  }
  return nodes;
}

/** `written` keeps the payload of each message node met, for the many copies of one node (see many-copies). */
function serialize(nodes: WireNode[], written = new Map<WireNode, Uint8Array>()): Uint8Array {
  const writer = new ByteWriter();
  for (const n of nodes) {
    writer.varint(n.field * 8 + n.wireType, n.tagPad);
    if (n.wireType === 0) {
      writer.varint(n.varint, n.valuePad);
    } else if (n.wireType === 2) {
      let payload = n.children ? written.get(n) : n.bytes;
      if (payload === undefined) written.set(n, (payload = serialize(n.children!, written)));
      writer.varint(n.length ?? payload.length, n.lengthPad);
      writer.write(payload);
    } else {
      writer.write(n.bytes);
    }
  }
  return writer.result();
}

/** One growing buffer: bodies of thousands of fields are written without a buffer per field. */
class ByteWriter {
  private bytes = new Uint8Array(256);
  private length = 0;

  /** Base 128, with `pad` redundant continuation bytes (10 bytes is the most a reader accepts). */
  varint(value: number | bigint, pad: number): void {
    this.reserve(12 + pad);
    if (typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER)) value = Number(value);
    if (typeof value === 'number') {
      while (value >= 0x80) {
        this.bytes[this.length++] = (value % 0x80) | 0x80;
        value = Math.floor(value / 0x80);
      }
      this.bytes[this.length++] = value;
    } else {
      // Values past 2^64 make varints longer than any reader takes.
      this.reserve(Math.ceil(value.toString(2).length / 7));
      while (value >= 0x80n) {
        this.bytes[this.length++] = Number(value & 0x7fn) | 0x80;
        value >>= 7n;
      }
      this.bytes[this.length++] = Number(value);
    }
    if (pad > 0) {
      this.bytes[this.length - 1]! |= 0x80;
      for (let i = 1; i < pad; i++) this.bytes[this.length++] = 0x80;
      this.bytes[this.length++] = 0;
    }
  }

  write(bytes: Uint8Array): void {
    this.reserve(bytes.length);
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }

  result(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  private reserve(more: number): void {
    if (this.length + more <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + more));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
}

function clone(nodes: WireNode[]): WireNode[] {
  return nodes.map((n) => ({ ...n, children: n.children ? clone(n.children) : null }));
}

const BIG_VARINTS = [
  0n, 1n, 2n, 3n, 4n, 5n, 6n, 7n, 127n, 128n, 255n, 311n, 16_383n, 16_384n, 32_768n,
  2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n,
  2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 2n ** 31n,
];

function interestingVarint(r: Rng): bigint {
  const roll = r();
  if (roll < 0.6) return pick(r, BIG_VARINTS);
  if (roll < 0.8) return BigInt(int(r, 100_000));
  // 11 bytes and more: a varint longer than any reader takes.
  if (roll < 0.82) return 2n ** 70n + BigInt(int(r, 1000));
  return BigInt.asUintN(64, (BigInt(int(r, 2 ** 32)) << 32n) | BigInt(int(r, 2 ** 32)));
}

const INVALID_UTF8 = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80], [0xf0, 0x9f, 0x98]];
const HUGE_LENGTHS = [100, 1000, 10_000, 30_000, 60_000, 65_000, 66_000];

/** String or bytes payloads worth trying: planted text, invalid UTF-8, huge, random. */
function interestingBytes(r: Rng, corpus: Corpus): Uint8Array {
  const roll = r();
  if (roll < 0.5) return Buffer.from(pick(r, corpus.strings), 'utf8');
  if (roll < 0.7) return Buffer.concat([Buffer.from(pick(r, corpus.strings), 'utf8'), Uint8Array.from(pick(r, INVALID_UTF8))]);
  if (roll < 0.8) return Buffer.alloc(pick(r, HUGE_LENGTHS), chance(r, 0.5) ? 'x' : '雅');
  return randomBytes(r, int(r, 40));
}

/** A random message of the schema: declared fields with values of their own type, nested up to 3 levels. */
function generateMessage(r: Rng, type: protobuf.Type, corpus: Corpus, depth: number): WireNode[] {
  const nodes: WireNode[] = [];
  const count = int(r, 7);
  for (let i = 0; i < count; i++) nodes.push(...generateField(r, type, corpus, depth));
  return nodes;
}

function generateField(r: Rng, type: protobuf.Type, corpus: Corpus, depth: number): WireNode[] {
  const field = pick(r, type.fieldsArray);
  field.resolve();
  const copies = field.repeated ? 1 + int(r, 3) : 1;
  const nodes: WireNode[] = [];
  for (let i = 0; i < copies; i++) {
    const message = field.resolvedType instanceof protobuf.Type ? field.resolvedType : null;
    if (message) nodes.push(node(field.id, 2, { children: depth < 3 ? generateMessage(r, message, corpus, depth + 1) : [], type: message }));
    else if (field.type === 'string' || field.type === 'bytes') nodes.push(node(field.id, 2, { bytes: interestingBytes(r, corpus) }));
    else if (field.resolvedType instanceof protobuf.Enum) {
      const known = Object.values(field.resolvedType.values);
      nodes.push(node(field.id, 0, { varint: chance(r, 0.7) ? BigInt(pick(r, known)) : interestingVarint(r) }));
    } else if (field.type === 'bool') nodes.push(node(field.id, 0, { varint: chance(r, 0.8) ? BigInt(int(r, 2)) : interestingVarint(r) }));
    else nodes.push(node(field.id, 0, { varint: interestingVarint(r) }));
  }
  return nodes;
}

const ODD_FIELD_NUMBERS = [0, 15, 16, 100, 2047, 2048, 19_000, 2 ** 29 - 1, 2 ** 29];

function unknownNumber(r: Rng, type: protobuf.Type): number {
  for (;;) {
    const number = chance(r, 0.7) ? 1 + int(r, 40) : pick(r, ODD_FIELD_NUMBERS);
    if (type.fieldsById[number] === undefined) return number;
  }
}

/** A node of the given wire type with a payload that fits it (or, for 3, 4, 6 and 7, a few bytes of anything). */
function payloadFor(r: Rng, field: number, wireType: number, corpus: Corpus): WireNode {
  if (wireType === 0) return node(field, 0, { varint: interestingVarint(r) });
  if (wireType === 1) return node(field, 1, { bytes: randomBytes(r, 8) });
  if (wireType === 5) return node(field, 5, { bytes: randomBytes(r, 4) });
  if (wireType === 2) return node(field, 2, { bytes: interestingBytes(r, corpus) });
  return node(field, wireType, { bytes: randomBytes(r, int(r, 9)) });
}

function randomWireType(r: Rng): number {
  return chance(r, 0.9) ? pick(r, [0, 1, 2, 5]) : pick(r, [3, 4, 6, 7]);
}

/** A field list somewhere in the tree, with its message type: the top level, or some nested message's fields. */
function pickList(r: Rng, nodes: WireNode[], type: protobuf.Type): { list: WireNode[]; type: protobuf.Type } {
  let list = nodes;
  let listType = type;
  for (;;) {
    const nested = list.filter((n) => n.children !== null);
    if (nested.length === 0 || chance(r, 0.5)) return { list, type: listType };
    const inner = pick(r, nested);
    list = inner.children!;
    listType = inner.type!;
  }
}

type TreeOp = (r: Rng, list: WireNode[], type: protobuf.Type, corpus: Corpus) => void;

const TREE_OPS: Record<string, TreeOp> = {
  drop(r, list) {
    if (list.length > 0) list.splice(int(r, list.length), 1);
  },
  duplicate(r, list) {
    if (list.length > 0) list.splice(int(r, list.length + 1), 0, clone([pick(r, list)])[0]!);
  },
  swap(r, list) {
    if (list.length < 2) return;
    const a = int(r, list.length);
    const b = int(r, list.length);
    [list[a], list[b]] = [list[b]!, list[a]!];
  },
  'varint-value'(r, list) {
    const varints = list.filter((n) => n.wireType === 0);
    if (varints.length > 0) pick(r, varints).varint = interestingVarint(r);
  },
  'wire-type'(r, list, _type, corpus) {
    if (list.length === 0) return;
    const at = int(r, list.length);
    list[at] = payloadFor(r, list[at]!.field, randomWireType(r), corpus);
  },
  'field-number'(r, list, type) {
    if (list.length === 0) return;
    const target = pick(r, list);
    if (target.children) {
      target.bytes = serialize(target.children);
      target.children = null;
      target.type = null;
    }
    target.field = chance(r, 0.5) ? pick(r, type.fieldsArray).id : unknownNumber(r, type);
  },
  'unknown-field'(r, list, type, corpus) {
    list.splice(int(r, list.length + 1), 0, payloadFor(r, unknownNumber(r, type), randomWireType(r), corpus));
  },
  'string-value'(r, list, _type, corpus) {
    const strings = list.filter((n) => n.wireType === 2 && n.children === null);
    if (strings.length > 0) pick(r, strings).bytes = interestingBytes(r, corpus);
  },
  'schema-field'(r, list, type, corpus) {
    list.splice(int(r, list.length + 1), 0, ...generateField(r, type, corpus, 1));
  },
  packed(r, list, type) {
    const packable = type.fieldsArray.filter((f) => f.repeated && f.resolvedType === null && f.type !== 'string' && f.type !== 'bytes');
    const enums = type.fieldsArray.filter((f) => f.repeated && f.resolvedType instanceof protobuf.Enum);
    const candidates = [...packable, ...enums];
    if (candidates.length === 0) return;
    const values = new ByteWriter();
    for (let i = int(r, 6); i > 0; i--) values.varint(chance(r, 0.7) ? int(r, 8) : interestingVarint(r), 0);
    let bytes = values.result();
    // A packed run whose last varint is cut off.
    if (bytes.length > 0 && chance(r, 0.2)) bytes = bytes.subarray(0, bytes.length - 1);
    list.splice(int(r, list.length + 1), 0, node(pick(r, candidates).id, 2, { bytes }));
  },
  encoding(r, list) {
    if (list.length === 0) return;
    const target = pick(r, list);
    const roll = r();
    if (roll < 0.3) target.tagPad = 1 + int(r, 6);
    else if (roll < 0.5 && target.wireType === 0) target.valuePad = 1 + int(r, 10);
    else if (roll < 0.7 && target.wireType === 2) target.lengthPad = 1 + int(r, 5);
    else if (target.wireType === 2) {
      const length = BigInt(target.children ? serialize(target.children).length : target.bytes.length);
      target.length = pick(r, [length - 1n, length + 1n, length + 3n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 35n]);
      if (target.length < 0n) target.length = 0n;
    }
  },
  'garbage-message'(r, list) {
    const messages = list.filter((n) => n.children !== null);
    if (messages.length === 0) return;
    const target = pick(r, messages);
    target.bytes = randomBytes(r, int(r, 24));
    target.children = null;
    target.type = null;
  },
  'many-copies'(r, list) {
    if (list.length === 0) return;
    const copy = pick(r, list);
    // Up to about the body limit: thousands of ids or ads in one request, not megabytes the engine refuses unread.
    const copies = Math.min(pick(r, [10, 100, 1000, 3000]), Math.floor(COPIES_BUDGET_BYTES / (serialize([copy]).length + 1)));
    // One node shared by every copy: a later mutation of it changes them all, which is as good a mutation.
    for (let i = 0; i < copies; i++) list.push(copy);
  },
};
/** Bodies of tens of kilobytes cost the fuzzer and the engine the most per input: picked a quarter as often. */
const TREE_OP_NAMES = Object.keys(TREE_OPS).flatMap((name) => (name === 'many-copies' ? [name] : [name, name, name, name]));
const COPIES_BUDGET_BYTES = 60_000;

type ByteOp = (r: Rng, bytes: Uint8Array, other: Uint8Array) => Uint8Array;

const INTERESTING_BYTES = [0x00, 0x01, 0x07, 0x08, 0x0a, 0x7f, 0x80, 0xff, 0x12, 0x1a, 0x22, 0x2a];

const BYTE_OPS: Record<string, ByteOp> = {
  'flip-bit'(r, bytes) {
    if (bytes.length === 0) return bytes;
    const out = Buffer.from(bytes);
    out[int(r, out.length)]! ^= 1 << int(r, 8);
    return out;
  },
  'set-byte'(r, bytes) {
    if (bytes.length === 0) return bytes;
    const out = Buffer.from(bytes);
    out[int(r, out.length)] = chance(r, 0.5) ? pick(r, INTERESTING_BYTES) : int(r, 256);
    return out;
  },
  insert(r, bytes) {
    const at = int(r, bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), randomBytes(r, 1 + int(r, 8)), bytes.subarray(at)]);
  },
  delete(r, bytes) {
    const at = int(r, bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + int(r, 8))]);
  },
  'duplicate-range'(r, bytes) {
    const at = int(r, bytes.length + 1);
    const end = Math.min(bytes.length, at + 1 + int(r, 16));
    return Buffer.concat([bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end)]);
  },
  truncate(r, bytes) {
    return bytes.subarray(0, int(r, bytes.length + 1));
  },
  append(r, bytes) {
    return Buffer.concat([bytes, randomBytes(r, 1 + int(r, 8))]);
  },
  // Two messages back to back are one message with both sets of fields: valid, and a merge for the reader.
  concatenate(_r, bytes, other) {
    return Buffer.concat([bytes, other]);
  },
  splice(r, bytes, other) {
    return Buffer.concat([bytes.subarray(0, int(r, bytes.length + 1)), other.subarray(int(r, other.length + 1))]);
  },
};
const BYTE_OP_NAMES = Object.keys(BYTE_OPS);

export function mutateBytes(r: Rng, bytes: Uint8Array, seeds: Uint8Array[], steps: string[]): Uint8Array {
  const count = 1 + int(r, 3);
  let out = bytes;
  for (let i = 0; i < count; i++) {
    const name = pick(r, BYTE_OP_NAMES);
    steps.push(name);
    out = BYTE_OPS[name]!(r, out, pick(r, seeds));
  }
  return out;
}

/** A protobuf body for `type`: a seed or a schema-random message, mutated in its structure, then maybe in its bytes. */
export function protobufBody(r: Rng, type: protobuf.Type, seeds: Uint8Array[], trees: WireNode[][], corpus: Corpus, steps: string[]): { body: Uint8Array; mutation: string } {
  const roll = r();
  if (roll < 0.05) {
    steps.push('seed');
    return { body: pick(r, seeds), mutation: 'seed' };
  }
  if (roll < 0.3) {
    steps.push('bytes');
    return { body: mutateBytes(r, pick(r, seeds), seeds, steps), mutation: 'bytes' };
  }
  const fromSchema = roll < 0.4;
  const tree = fromSchema ? generateMessage(r, type, corpus, 0) : clone(pick(r, trees));
  steps.push(fromSchema ? 'schema' : 'structure');
  const count = fromSchema && chance(r, 0.5) ? 0 : 1 + int(r, 4);
  for (let i = 0; i < count; i++) {
    const { list, type: listType } = pickList(r, tree, type);
    const name = pick(r, TREE_OP_NAMES);
    steps.push(name);
    TREE_OPS[name]!(r, list, listType, corpus);
  }
  const body = serialize(tree);
  if (chance(r, 0.2)) {
    steps.push('bytes');
    return { body: mutateBytes(r, body, seeds, steps), mutation: fromSchema ? 'schema+bytes' : 'structure+bytes' };
  }
  return { body, mutation: fromSchema ? 'schema' : 'structure' };
}
