import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';
import { loadProto } from '../src/media/protobuf.js';

/**
 * The fuzzer's own idea of what an input must get, written apart from the engine so the two can disagree: a
 * protobuf reader driven by the .proto reflection alone (BigInt varints, no compiled rules, none of
 * src/media/wire-check.ts) and a JSON checker that walks the schema instead of zod. Both apply the engine's
 * documented input contract (README, "Bad input"):
 *
 * - protobuf is refused as `malformed_protobuf` unless it is exactly what the schema says: tags and length prefixes
 *   of at most 5 bytes (tags below 2^32, lengths below 2^31 and inside the message), varints of at most 10 bytes,
 *   no field number 0, no wire types 3, 4 (groups, which none of our schemas use), 6 or 7, every declared field in
 *   its own wire type (repeated scalars packed or not), proto3 strings valid UTF-8 (proto2 strings need not be);
 *   a uint64 id above 2^53-1 is `id_out_of_range`. Values read as protobuf defines: the last of a singular field
 *   wins, a singular message seen twice merges, a proto2 (closed) enum ignores numbers it does not list.
 * - JSON must be UTF-8 and parse (`invalid_json`), nest at most 16 levels (`invalid_json`), then match the proto3
 *   JSON mapping of the request with the engine's stated strictness (`invalid_request`): field names in
 *   lowerCamelCase or as in the .proto (the later of the two wins), nothing unknown, no nulls, 32-bit integers as
 *   numbers, uint64 as an integer number or a string of 1 to 20 decimal digits, enums by name or int32 number.
 *
 * Where the contract leaves the answer open (a UTF-8 byte order mark before JSON, which RFC 8259 lets a parser
 * either skip or refuse) the prediction lists every acceptable outcome.
 */

export type Decoder = 'tencent' | 'tencent-sp' | 'ocean' | 'native' | 'native-json';
export type ProtobufDecoder = Exclude<Decoder, 'native-json'>;

export type Expected =
  | {
      status: 200;
      /** Raw bytes for proto2 (so the echo can be checked byte for byte), the text for proto3 and JSON. */
      requestId: Uint8Array | string;
      ping: boolean;
      /** Tencent: request_info.request_type is ADLIST_REQUEST; native: second_request. */
      secondRequest: boolean;
      ads: CandidateAd[];
    }
  | { status: 400 | 413; reason: string };

/** A candidate ad of a second request, ids in decimal. */
export interface CandidateAd {
  group: string;
  /** The strategy the media bound it to; '' when none. */
  strategy: string;
  creatives: string[];
}

/** A protobuf protocol: its messages, and where the fields the judgement needs live in them. */
export interface ProtobufSpec {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
  /** proto3 requires strings to be UTF-8 and keeps unknown enum numbers; proto2 does neither. */
  readonly syntax: 'proto2' | 'proto3';
  readonly requestIdField: string;
  /** null: the protocol has no ping. */
  readonly pingField: string | null;
  secondRequest(request: Message): boolean;
  readonly replyRequestIdField: string;
  /** The candidate ads of a decoded request, with every uint64 id that must fit 2^53. */
  ads(request: Message): Array<{ ids: bigint[]; ad: CandidateAd }>;
}

const tencentRoot = loadProto(new URL('../proto/tencent/rta.proto', import.meta.url));
const nativeRoot = loadProto(new URL('../proto/rta/v1/native.proto', import.meta.url));
export const NATIVE_REQUEST = nativeRoot.lookupType('rta.v1.NativeRequest');

const tencentSpRoot = loadProto(new URL('../proto/tencent/rtasp.proto', import.meta.url));
const oceanRoot = loadProto(new URL('../proto/ocean/rta.proto', import.meta.url));

export const PROTOBUF_SPECS: Record<ProtobufDecoder, ProtobufSpec> = {
  tencent: {
    request: tencentRoot.lookupType('tencent.ad.rta.RtaRequest'),
    response: tencentRoot.lookupType('tencent.ad.rta.RtaResponse'),
    syntax: 'proto2',
    requestIdField: 'id',
    pingField: 'is_ping',
    secondRequest: (request) => integer((request.request_info as Message | undefined)?.request_type) === ADLIST_REQUEST,
    replyRequestIdField: 'request_id',
    ads: (request) =>
      messages(request.ad_infos).map((ad) => {
        const creatives = messages(ad.creative_infos).map((creative) => integer(creative.creative_id));
        return { ids: [integer(ad.adgroup_id), ...creatives], ad: candidateAd(ad.adgroup_id, ad.out_target_id, creatives) };
      }),
  },
  // Neither has pings, second requests or candidate ads.
  'tencent-sp': {
    request: tencentSpRoot.lookupType('tencent.ad.rtasp.RTASPRequest'),
    response: tencentSpRoot.lookupType('tencent.ad.rtasp.RTASPResponse'),
    syntax: 'proto3',
    requestIdField: 'id',
    pingField: null,
    secondRequest: () => false,
    replyRequestIdField: 'id',
    ads: () => [],
  },
  ocean: {
    request: oceanRoot.lookupType('ocean.rta.Req'),
    response: oceanRoot.lookupType('ocean.rta.Rsp'),
    syntax: 'proto3',
    requestIdField: 'req_id',
    pingField: null,
    secondRequest: () => false,
    replyRequestIdField: 'req_id',
    ads: () => [],
  },
  native: {
    request: NATIVE_REQUEST,
    response: nativeRoot.lookupType('rta.v1.NativeResponse'),
    syntax: 'proto3',
    requestIdField: 'request_id',
    pingField: 'is_ping',
    secondRequest: (request) => integer(request.second_request) !== 0n,
    replyRequestIdField: 'request_id',
    ads: (request) =>
      messages(request.candidate_ads).map((ad) => {
        const creatives = messages(ad.creatives).map((creative) => integer(creative.creative_id));
        return { ids: [integer(ad.ad_group_id), integer(ad.advertiser_id), ...creatives], ad: candidateAd(ad.ad_group_id, ad.strategy_id, creatives) };
      }),
  },
};

const ADLIST_REQUEST = BigInt(tencentRoot.lookupEnum('tencent.ad.rta.RtaRequest.RequestInfo.RequestType').values.ADLIST_REQUEST!);

function candidateAd(group: Message[string], strategy: Message[string], creatives: bigint[]): CandidateAd {
  // A proto2 string that is not UTF-8 cannot name one of our strategies, whatever a reader makes of it.
  const name = strategy instanceof Uint8Array ? Buffer.from(strategy).toString('utf8') : '';
  return { group: integer(group).toString(), strategy: name, creatives: creatives.map(String) };
}

/** Which decoder a route uses: the native route speaks JSON when the Content-Type says application/json. */
export function decoderFor(path: string, contentType: string): Decoder {
  if (path === '/rta/tencent') return 'tencent';
  if (path === '/rta/tencent-sp') return 'tencent-sp';
  if (path === '/rta/ocean') return 'ocean';
  return /^application\/json/i.test(contentType) ? 'native-json' : 'native';
}

export function predict(decoder: Decoder, body: Uint8Array, maxBodyBytes: number): Expected[] {
  if (body.length > maxBodyBytes) return [{ status: 413, reason: 'body_too_large' }];
  if (decoder === 'native-json') return predictJson(body);
  return [predictProtobuf(PROTOBUF_SPECS[decoder], body)];
}

// ---- protobuf ----

/** A decoded message: per field name the value (last one wins) or, for repeated fields, every value. */
export interface Message {
  [field: string]: Value | Value[] | undefined;
}
type Value = bigint | Uint8Array | Message;

/** Not an Error: inputs are refused by the hundred thousand, and capturing a stack trace for each costs. */
export class Malformed {
  constructor(readonly message: string) {}
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

function predictProtobuf(spec: ProtobufSpec, body: Uint8Array): Expected {
  let request: Message;
  try {
    request = parseMessage(spec.request, body, spec.syntax);
  } catch (error) {
    if (error instanceof Malformed) return { status: 400, reason: 'malformed_protobuf' };
    throw error;
  }
  const ads: CandidateAd[] = [];
  for (const { ids, ad } of spec.ads(request)) {
    if (ids.some((id) => id > MAX_SAFE)) return { status: 400, reason: 'id_out_of_range' };
    ads.push(ad);
  }
  const field = request[spec.requestIdField];
  const requestId = field instanceof Uint8Array ? field : new Uint8Array(0);
  return {
    status: 200,
    // proto3 strings were checked to be UTF-8 above.
    requestId: spec.syntax === 'proto3' ? Buffer.from(requestId).toString('utf8') : requestId,
    ping: spec.pingField !== null && integer(request[spec.pingField]) !== 0n,
    secondRequest: spec.secondRequest(request),
    ads,
  };
}

const WIRE_TYPE_OF_SCALAR: Record<string, number> = {
  int32: 0, uint32: 0, sint32: 0, int64: 0, uint64: 0, sint64: 0, bool: 0,
  fixed64: 1, sfixed64: 1, double: 1,
  fixed32: 5, sfixed32: 5, float: 5,
};

/** Decodes `bytes` as `type` by the rules above; singular messages seen twice merge, as the protobuf spec says. */
export function parseMessage(type: protobuf.Type, bytes: Uint8Array, syntax: 'proto2' | 'proto3', into: Message = {}): Message {
  const reader = new ByteReader(bytes);
  while (!reader.done()) {
    const tag = reader.varint(5);
    if (tag > 0xffff_ffffn) throw new Malformed('tag above 32 bits');
    const wireType = Number(tag & 7n);
    const number = Number(tag >> 3n);
    if (number === 0) throw new Malformed('field number 0');
    if (wireType === 3 || wireType === 4) throw new Malformed('group');
    if (wireType > 5) throw new Malformed(`wire type ${wireType}`);
    const field = type.fieldsById[number];
    if (field === undefined) {
      reader.skip(wireType);
      continue;
    }
    field.resolve();
    const scalarWireType = field.resolvedType instanceof protobuf.Enum ? 0 : WIRE_TYPE_OF_SCALAR[field.type];
    if (scalarWireType === undefined) {
      if (wireType !== 2) throw new Malformed(`${field.name}: wire type ${wireType} for a length-delimited field`);
      const payload = reader.lengthDelimited();
      if (field.resolvedType instanceof protobuf.Type) {
        const existing = into[field.name];
        if (field.repeated) append(into, field.name, parseMessage(field.resolvedType, payload, syntax));
        else into[field.name] = parseMessage(field.resolvedType, payload, syntax, (existing as Message | undefined) ?? {});
      } else if (field.type === 'string' || field.type === 'bytes') {
        if (field.type === 'string' && syntax === 'proto3' && !isUtf8(payload)) throw new Malformed(`${field.name}: not UTF-8`);
        if (field.repeated) append(into, field.name, payload);
        else into[field.name] = payload;
      } else {
        throw new Error(`reference: field ${field.fullName} has type ${field.type}, which it does not know`);
      }
    } else if (wireType === scalarWireType) {
      keep(into, field, reader.scalar(wireType), syntax);
    } else if (wireType === 2 && field.repeated) {
      const packed = new ByteReader(reader.lengthDelimited());
      while (!packed.done()) keep(into, field, packed.scalar(scalarWireType), syntax);
    } else {
      throw new Malformed(`${field.name}: wire type ${wireType} where the schema needs ${scalarWireType}`);
    }
  }
  return into;
}

function keep(message: Message, field: protobuf.Field, value: bigint, syntax: 'proto2' | 'proto3'): void {
  const values = field.resolvedType instanceof protobuf.Enum ? field.resolvedType.valuesById : null;
  // An enum number is an int32 on the wire, whatever the varint's length.
  if (values !== null && syntax === 'proto2' && values[Number(BigInt.asIntN(32, value))] === undefined) return;
  if (field.repeated) append(message, field.name, value);
  else message[field.name] = value;
}

function append(message: Message, name: string, value: Value): void {
  ((message[name] ??= []) as Value[]).push(value);
}

function messages(value: Message[string]): Message[] {
  return (value ?? []) as Message[];
}

/** An absent scalar reads as 0, as protobuf defines. */
function integer(value: Message[string]): bigint {
  return typeof value === 'bigint' ? value : 0n;
}

class ByteReader {
  private at = 0;

  constructor(private readonly bytes: Uint8Array) {}

  done(): boolean {
    return this.at >= this.bytes.length;
  }

  varint(maxBytes: number): bigint {
    // Up to 4 bytes (28 bits) in a plain number, which is exact; BigInt for the rest.
    let small = 0;
    for (let i = 0; i < Math.min(4, maxBytes); i++) {
      if (this.done()) throw new Malformed('truncated varint');
      const byte = this.bytes[this.at++]!;
      small |= (byte & 0x7f) << (7 * i);
      if (byte < 0x80) return BigInt(small);
    }
    let value = BigInt(small);
    for (let i = 4; i < maxBytes; i++) {
      if (this.done()) throw new Malformed('truncated varint');
      const byte = this.bytes[this.at++]!;
      value |= BigInt(byte & 0x7f) << BigInt(7 * i);
      // Bits past 64 are dropped, as every protobuf implementation reads a 10-byte varint.
      if (byte < 0x80) return BigInt.asUintN(64, value);
    }
    throw new Malformed(`varint longer than ${maxBytes} bytes`);
  }

  lengthDelimited(): Uint8Array {
    const length = this.varint(5);
    if (length >= 0x8000_0000n) throw new Malformed('length of 2^31 or more');
    if (length > BigInt(this.bytes.length - this.at)) throw new Malformed('length past the end');
    return this.take(Number(length));
  }

  scalar(wireType: number): bigint {
    if (wireType === 0) return this.varint(10);
    const bytes = this.take(wireType === 1 ? 8 : 4);
    return bytes.reduceRight((value, byte) => (value << 8n) | BigInt(byte), 0n);
  }

  skip(wireType: number): void {
    if (wireType === 2) this.lengthDelimited();
    else this.scalar(wireType);
  }

  private take(length: number): Uint8Array {
    if (length > this.bytes.length - this.at) throw new Malformed('truncated value');
    const bytes = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return bytes;
  }
}

// ---- JSON ----

const MAX_JSON_DEPTH = 16;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const UINT32_MAX = 0xffff_ffff;

/** Not an Error, like Malformed. */
class InvalidRequest {
  constructor(readonly message: string) {}
}

function predictJson(body: Uint8Array): Expected[] {
  if (!isUtf8(body)) return [{ status: 400, reason: 'invalid_json' }];
  const text = Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8');
  if (text.startsWith('\ufeff')) return [predictJsonText(text.slice(1)), { status: 400, reason: 'invalid_json' }];
  return [predictJsonText(text)];
}

function predictJsonText(text: string): Expected {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { status: 400, reason: 'invalid_json' };
  }
  if (nestsDeeperThan(json, MAX_JSON_DEPTH)) return { status: 400, reason: 'invalid_json' };
  let request: JsonMessage;
  try {
    request = checkJsonMessage(NATIVE_REQUEST, json);
  } catch (error) {
    if (error instanceof InvalidRequest) return { status: 400, reason: 'invalid_request' };
    throw error;
  }
  const ads: CandidateAd[] = [];
  for (const ad of (request.candidate_ads ?? []) as JsonMessage[]) {
    const creatives = ((ad.creatives ?? []) as JsonMessage[]).map((creative) => BigInt((creative.creative_id ?? 0) as number | string));
    const ids = [ad.ad_group_id ?? 0, ad.advertiser_id ?? 0].map((id) => BigInt(id as number | string)).concat(creatives);
    if (ids.some((id) => id > MAX_SAFE)) return { status: 400, reason: 'id_out_of_range' };
    ads.push({ group: ids[0]!.toString(), strategy: (ad.strategy_id as string | undefined) ?? '', creatives: creatives.map(String) });
  }
  return {
    status: 200,
    requestId: (request.request_id as string | undefined) ?? '',
    ping: request.is_ping === true,
    secondRequest: request.second_request === true,
    ads,
  };
}

/** True when some object or array sits `limit` or more containers below the root (the root being level 0). */
function nestsDeeperThan(root: unknown, limit: number): boolean {
  // Iterative: the inputs under test nest tens of thousands of levels.
  const stack: Array<[unknown, number]> = [[root, 0]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (depth >= limit) return true;
    for (const inner of Object.values(value)) stack.push([inner, depth + 1]);
  }
  return false;
}

/** A checked JSON message by proto field name. */
type JsonMessage = Record<string, unknown>;

/** protoc's lowerCamelCase json_name of a field. */
export function jsonName(protoName: string): string {
  return protoName.replace(/_(.)/g, (_, c: string) => c.toUpperCase());
}

const fieldsByJsonKey = new Map<protobuf.Type, Map<string, protobuf.Field>>();

function jsonKeys(type: protobuf.Type): Map<string, protobuf.Field> {
  let keys = fieldsByJsonKey.get(type);
  if (keys === undefined) {
    keys = new Map();
    for (const field of type.fieldsArray) {
      field.resolve();
      keys.set(field.name, field).set(jsonName(field.name), field);
    }
    fieldsByJsonKey.set(type, keys);
  }
  return keys;
}

function checkJsonMessage(type: protobuf.Type, value: unknown): JsonMessage {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidRequest(`${type.name}: not an object`);
  const keys = jsonKeys(type);
  // A field given under both its names takes the later value, as JSON.parse does for a repeated key; the earlier
  // one is dropped unread.
  const given = new Map<protobuf.Field, unknown>();
  for (const [key, inner] of Object.entries(value)) {
    const field = keys.get(key);
    if (field === undefined) throw new InvalidRequest(`${type.name}: unknown key ${key}`);
    given.set(field, inner);
  }
  const message: JsonMessage = {};
  for (const [field, inner] of given) {
    if (field.repeated) {
      if (!Array.isArray(inner)) throw new InvalidRequest(`${field.name}: not an array`);
      message[field.name] = inner.map((element) => checkJsonValue(field, element));
    } else {
      message[field.name] = checkJsonValue(field, inner);
    }
  }
  return message;
}

function checkJsonValue(field: protobuf.Field, value: unknown): unknown {
  const type = field.resolvedType;
  if (type instanceof protobuf.Type) return checkJsonMessage(type, value);
  if (type instanceof protobuf.Enum) {
    if (typeof value === 'string' && Object.hasOwn(type.values, value)) return type.values[value];
    if (Number.isInteger(value) && (value as number) >= INT32_MIN && (value as number) <= INT32_MAX) return value;
    throw new InvalidRequest(`${field.name}: not an enum name or int32`);
  }
  switch (field.type) {
    case 'string':
      if (typeof value === 'string') return value;
      break;
    case 'bool':
      if (typeof value === 'boolean') return value;
      break;
    case 'uint32':
      if (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= UINT32_MAX) return value;
      break;
    case 'uint64':
      if (Number.isInteger(value) && (value as number) >= 0) return value;
      if (typeof value === 'string' && /^[0-9]{1,20}$/.test(value)) return value;
      break;
    default:
      throw new Error(`reference: field ${field.fullName} has type ${field.type}, which it does not know`);
  }
  throw new InvalidRequest(`${field.name}: not a ${field.type}`);
}
