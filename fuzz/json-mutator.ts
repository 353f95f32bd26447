import protobuf from 'protobufjs';
import type { Corpus } from './corpus.js';
import { chance, int, pick, randomBytes, type Rng } from './random.js';
import { jsonName, NATIVE_REQUEST } from './reference.js';

/**
 * Hostile JSON for the native route: a seed (or a schema-random request) as a tree whose objects may repeat a key
 * and whose numbers may be tokens JSON.stringify cannot write, mutated in its structure (keys dropped, renamed,
 * repeated or unknown; values of the wrong type, huge, out of range, nested thousands of levels deep) and then,
 * sometimes, in its text and bytes (truncated, spliced, a byte order mark, invalid UTF-8).
 */

type Json = null | boolean | number | string | Token | Json[] | JsonObject;

class JsonObject {
  constructor(readonly entries: Array<[string, Json]>) {}
}

/** Text written as is: number tokens like 1e400 or -0, and nesting too deep to build as a tree. */
class Token {
  constructor(readonly text: string) {}
}

function fromParsed(value: unknown): Json {
  if (Array.isArray(value)) return value.map(fromParsed);
  if (value !== null && typeof value === 'object') return new JsonObject(Object.entries(value).map(([k, v]) => [k, fromParsed(v)]));
  return value as Json;
}

function render(value: Json): string {
  if (value instanceof Token) return value.text;
  if (value instanceof JsonObject) return `{${value.entries.map(([k, v]) => `${JSON.stringify(k)}:${render(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(render).join(',')}]`;
  return JSON.stringify(value);
}

function cloneJson(value: Json): Json {
  if (value instanceof JsonObject) return new JsonObject(value.entries.map(([k, v]) => [k, cloneJson(v)]));
  if (Array.isArray(value)) return value.map(cloneJson);
  return value;
}

const ID_KEYS = new Set(['adGroupId', 'advertiserId', 'creativeId', 'ad_group_id', 'advertiser_id', 'creative_id']);
const ENUM_KEYS = new Set(['os', 'type']);

const ODD_NUMBERS: Json[] = [
  0, -1, 1.5, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 1e20, 1e300, -(2 ** 31), -(2 ** 31) - 1,
  new Token('-0'), new Token('1e400'), new Token('-1e400'), new Token('1.0'), new Token('1E2'), new Token('9007199254740993'),
];
const ODD_ID_STRINGS = ['0', '00012', '9007199254740991', '9007199254740992', '18446744073709551615', '99999999999999999999', '123456789012345678901', '-1', ' 1', '1 ', '1e3', '0x10', '', '١٢'];
const ODD_KEYS = ['foo', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'RequestId', 'requestID', 'request-id', 'REQUEST_ID', 'request__id', '', ' requestId', 'requestId\u0000'];

function hostileValue(r: Rng, corpus: Corpus): Json {
  const roll = r();
  if (roll < 0.3) return pick(r, ODD_NUMBERS);
  if (roll < 0.45) return pick(r, [null, true, false, [], new JsonObject([]), [1, 'a'], new JsonObject([['a', 1]])]);
  if (roll < 0.6) return pick(r, ODD_ID_STRINGS);
  if (roll < 0.65) return pick(r, ['\ud800', '\udfff', 'a\ud83d', '\u2028', '"\\']);
  if (roll < 0.75) return 'x'.repeat(pick(r, [10, 1000, 30_000, 60_000, 66_000]));
  return pick(r, corpus.strings);
}

/** `depth` containers around a value, as text: a tree this deep would overflow the stack while rendering. */
function deepNesting(r: Rng): Token {
  const depth = pick(r, [14, 15, 16, 17, 50, 1000, 20_000]);
  if (chance(r, 0.5)) return new Token(`${'['.repeat(depth)}1${']'.repeat(depth)}`);
  return new Token(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
}

/** A random request of the schema in JSON, keys in either naming, values mostly of the right type. */
function generateJson(r: Rng, type: protobuf.Type, corpus: Corpus, depth: number): JsonObject {
  const entries: Array<[string, Json]> = [];
  const count = int(r, 7);
  for (let i = 0; i < count; i++) {
    const field = pick(r, type.fieldsArray);
    const key = chance(r, 0.7) ? jsonName(field.name) : field.name;
    const value = () => generateValue(r, field, corpus, depth);
    entries.push([key, field.repeated ? Array.from({ length: int(r, 4) }, value) : value()]);
  }
  return new JsonObject(entries);
}

function generateValue(r: Rng, field: protobuf.Field, corpus: Corpus, depth: number): Json {
  const type = field.resolvedType;
  if (chance(r, 0.05)) return hostileValue(r, corpus);
  if (type instanceof protobuf.Type) return depth < 3 ? generateJson(r, type, corpus, depth + 1) : new JsonObject([]);
  if (type instanceof protobuf.Enum) return chance(r, 0.6) ? pick(r, Object.keys(type.values)) : pick(r, [0, 1, 2, 3, 6, 7, -1, 2 ** 31 - 1]);
  switch (field.type) {
    case 'string':
      return field.name === 'md5' ? pick(r, corpus.md5s) : pick(r, corpus.strings);
    case 'bool':
      return chance(r, 0.5);
    case 'uint64':
      return chance(r, 0.5) ? int(r, 2 ** 40) : String(int(r, 2 ** 40));
    default:
      return int(r, 100_000);
  }
}

/** Every object and array in the tree: where a mutation may land. */
function containers(root: Json): Array<JsonObject | Json[]> {
  const found: Array<JsonObject | Json[]> = [];
  const visit = (value: Json) => {
    if (value instanceof JsonObject) {
      found.push(value);
      for (const [, inner] of value.entries) visit(inner);
    } else if (Array.isArray(value)) {
      found.push(value);
      value.forEach(visit);
    }
  };
  visit(root);
  return found;
}

type JsonOp = (r: Rng, target: JsonObject | Json[], corpus: Corpus) => void;

/** Applies `change` to one entry of an object, or to one element of an array. */
function onEntry(r: Rng, target: JsonObject | Json[], change: (key: string, value: Json) => [string, Json] | null): void {
  if (target instanceof JsonObject) {
    if (target.entries.length === 0) return;
    const at = int(r, target.entries.length);
    const [key, value] = target.entries[at]!;
    const changed = change(key, value);
    if (changed === null) target.entries.splice(at, 1);
    else target.entries[at] = changed;
  } else {
    if (target.length === 0) return;
    const at = int(r, target.length);
    const changed = change('', target[at]!);
    if (changed === null) target.splice(at, 1);
    else target[at] = changed[1];
  }
}

const JSON_OPS: Record<string, JsonOp> = {
  drop: (r, target) => onEntry(r, target, () => null),
  'unknown-key'(r, target, corpus) {
    if (target instanceof JsonObject) target.entries.splice(int(r, target.entries.length + 1), 0, [pick(r, ODD_KEYS), hostileValue(r, corpus)]);
    else target.push(hostileValue(r, corpus));
  },
  rename: (r, target) =>
    onEntry(r, target, (key, value) => {
      const snake = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      return [snake !== key ? snake : jsonName(key) !== key ? jsonName(key) : key.toUpperCase(), value];
    }),
  'repeat-key'(r, target, corpus) {
    if (!(target instanceof JsonObject) || target.entries.length === 0) return;
    const [key, value] = pick(r, target.entries);
    target.entries.push([key, chance(r, 0.5) ? cloneJson(value) : hostileValue(r, corpus)]);
  },
  'wrong-value': (r, target, corpus) => onEntry(r, target, (key) => [key, hostileValue(r, corpus)]),
  'typed-value': (r, target, corpus) =>
    onEntry(r, target, (key, value) => {
      if (ID_KEYS.has(key)) return [key, chance(r, 0.5) ? pick(r, ODD_ID_STRINGS) : pick(r, ODD_NUMBERS)];
      if (ENUM_KEYS.has(key)) return [key, chance(r, 0.5) ? pick(r, ['OS_IOS', 'OS_ANDROID', 'OAID_MD5', 'CAID_MD5', 'os_ios', 'OS_WINDOWS', '1']) : pick(r, ODD_NUMBERS)];
      if (key === 'md5') return [key, pick(r, corpus.md5s)];
      return [key, typeof value === 'string' ? pick(r, corpus.strings) : hostileValue(r, corpus)];
    }),
  'deep-nesting': (r, target) => onEntry(r, target, (key) => [key, deepNesting(r)]),
  'many-elements'(r, target) {
    if (!Array.isArray(target) || target.length === 0) return;
    const element = pick(r, target);
    // Up to about the body limit, as for protobuf.
    const copies = Math.min(pick(r, [100, 1000, 3000]), Math.floor(60_000 / (render(element).length + 1)));
    for (let i = 0; i < copies; i++) target.push(cloneJson(element));
  },
  'schema-field'(r, target, corpus) {
    if (target instanceof JsonObject) target.entries.push(...generateJson(r, NATIVE_REQUEST, corpus, 0).entries);
  },
};
/** Bodies of tens of kilobytes cost the fuzzer and the engine the most per input: picked a quarter as often. */
const JSON_OP_NAMES = Object.keys(JSON_OPS).flatMap((name) => (name === 'many-elements' || name === 'deep-nesting' ? [name] : [name, name, name, name]));

const JSON_NOISE = ['{', '}', '[', ']', '"', ',', ':', '\\', '0', '-', 'e', '.', ' ', '\n', 'null', 'tru', '//', '/*', '\u0000', 'NaN', 'Infinity'];

type TextOp = (r: Rng, bytes: Uint8Array) => Uint8Array;

const TEXT_OPS: Record<string, TextOp> = {
  'insert-token'(r, bytes) {
    const at = int(r, bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), Buffer.from(pick(r, JSON_NOISE)), bytes.subarray(at)]);
  },
  delete(r, bytes) {
    const at = int(r, bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + 1 + int(r, 4))]);
  },
  truncate: (r, bytes) => bytes.subarray(0, int(r, bytes.length + 1)),
  'trailing-garbage': (r, bytes) => Buffer.concat([bytes, Buffer.from(pick(r, JSON_NOISE))]),
  'byte-order-mark': (_r, bytes) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes]),
  'invalid-utf8'(r, bytes) {
    const at = int(r, bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), Uint8Array.from(pick(r, [[0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82]])), bytes.subarray(at)]);
  },
  'flip-bit'(r, bytes) {
    if (bytes.length === 0) return bytes;
    const out = Buffer.from(bytes);
    out[int(r, out.length)]! ^= 1 << int(r, 8);
    return out;
  },
  whitespace(r, bytes) {
    const at = int(r, bytes.length + 1);
    return Buffer.concat([bytes.subarray(0, at), Buffer.from(pick(r, [' ', '\t', '\r\n', '\u00a0'])), bytes.subarray(at)]);
  },
};
const TEXT_OP_NAMES = Object.keys(TEXT_OPS);

export function jsonBody(r: Rng, corpus: Corpus, trees: Json[], steps: string[]): { body: Uint8Array; mutation: string } {
  const roll = r();
  if (roll < 0.05) {
    steps.push('seed');
    return { body: Buffer.from(render(pick(r, trees))), mutation: 'seed' };
  }
  if (roll < 0.08) {
    steps.push('random-bytes');
    return { body: randomBytes(r, int(r, 64)), mutation: 'random-bytes' };
  }
  const fromSchema = roll < 0.25;
  const tree = fromSchema ? generateJson(r, NATIVE_REQUEST, corpus, 0) : cloneJson(pick(r, trees));
  steps.push(fromSchema ? 'schema' : 'structure');
  const count = fromSchema && chance(r, 0.5) ? 0 : 1 + int(r, 3);
  for (let i = 0; i < count; i++) {
    const name = pick(r, JSON_OP_NAMES);
    steps.push(name);
    JSON_OPS[name]!(r, pick(r, containers(tree)), corpus);
  }
  let body: Uint8Array = Buffer.from(render(tree));
  if (!chance(r, 0.25)) return { body, mutation: fromSchema ? 'schema' : 'structure' };
  const edits = 1 + int(r, 2);
  for (let i = 0; i < edits; i++) {
    const name = pick(r, TEXT_OP_NAMES);
    steps.push(name);
    body = TEXT_OPS[name]!(r, body);
  }
  return { body, mutation: fromSchema ? 'schema+text' : 'structure+text' };
}

export function jsonTrees(corpus: Corpus): Json[] {
  return corpus.json.map((text) => fromParsed(JSON.parse(text)));
}
