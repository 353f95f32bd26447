import protobuf from 'protobufjs';
import { z } from 'zod';
import { InputError } from '../../engine/errors.js';
import {
  DecisionCode,
  DEVICE_ID_KIND_NAMES,
  Os,
  SHED_REASON,
  mediaIdOf,
  type BidContext,
  type CandidateAd,
  type CandidateCreative,
  type Decision,
  type DeviceId,
  type DeviceIdKind,
  type EncodedReply,
  type MediaAdapter,
  type StrategyDecision,
} from '../../engine/types.js';
import { addDeviceId } from '../device-ids.js';
import { decodeStrict, loadProto, scanIdAndFlag, strictType, uint64ToNumber, type Uint64 } from '../protobuf.js';
import { encodeReply, finiteOr0, wholeMicroseconds } from './reply.js';
import { checkWire } from '../wire-check.js';

/**
 * Our own protocol (proto/rta/v1/native.proto) for every media other than Tencent and for tools. Protobuf by
 * default; JSON in the proto3 mapping when the Content-Type says so, answered in JSON, for humans debugging.
 */

const root = loadProto(new URL('../../../proto/rta/v1/native.proto', import.meta.url));
const NativeRequest = strictType(root, 'rta.v1.NativeRequest');
const OsValues = root.lookupEnum('rta.v1.NativeRequest.OS').values;
const IdTypeValues = root.lookupEnum('rta.v1.NativeRequest.IdType').values;

const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';
const JSON_CONTENT_TYPE = 'application/json';
const IS_JSON = /^application\/json/i;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The request as protobufjs decodes it (proto names, defaults for absent fields); the JSON path builds the same. */
interface NativeRequestMessage {
  request_id: string;
  is_ping: boolean;
  is_test: boolean;
  os: number;
  device_ids: Array<{ type: number; md5: string }>;
  experiment_ids: number[];
  second_request: boolean;
  candidate_ads: CandidateAdMessage[];
}

interface CandidateAdMessage {
  ad_group_id: Uint64;
  advertiser_id: Uint64;
  strategy_id: string;
  creatives: Array<{ creative_id: Uint64; template_id: number }>;
}

export const nativeAdapter: MediaAdapter = {
  name: 'native',

  decode(body: Uint8Array, contentType: string): BidContext {
    if (IS_JSON.test(contentType)) return toBidContext(parseJsonRequest(body), true);
    return toBidContext(decodeStrict<NativeRequestMessage>(NativeRequest, body), false);
  },

  /** Protobuf only: a JSON body is text that must be parsed to find its id, so it is shed through a decode. */
  shed(body: Uint8Array, contentType: string, cacheTtlSeconds: number): EncodedReply | null {
    if (IS_JSON.test(contentType)) return null;
    checkWire(NativeRequest.rule, body);
    // NativeRequest: request_id 1, is_ping 3; NativeResponse: request_id 1, code 2, reason 3, cache_ttl_seconds 6.
    const { id, flag: isPing } = scanIdAndFlag(body, 1, 3);
    const writer = protobuf.Writer.create();
    if (id !== null) writer.uint32((1 << 3) | 2).bytes(id);
    if (!isPing) {
      writer.uint32(2 << 3).uint32(DecisionCode.DEADLINE_FALLBACK);
      writer.uint32((3 << 3) | 2).string(SHED_REASON);
      writer.uint32(6 << 3).uint32(cacheTtlSeconds);
    }
    return { body: writer.finish(), contentType: PROTOBUF_CONTENT_TYPE };
  },

  encode(context: BidContext, decision: Decision): EncodedReply {
    if (context.wantsJson) return { body: JSON.stringify(toJsonReply(context, decision)), contentType: JSON_CONTENT_TYPE };
    return { body: encodeReply(context, decision), contentType: PROTOBUF_CONTENT_TYPE };
  },
};

/** The device kind for each IdType number; ID_TYPE_UNSPECIFIED and numbers we do not know are not kinds. */
function toDeviceIdKind(type: number): DeviceIdKind | undefined {
  return type in DEVICE_ID_KIND_NAMES ? (type as DeviceIdKind) : undefined;
}

function toOs(os: number): Os {
  if (os === OsValues.OS_IOS) return Os.IOS;
  if (os === OsValues.OS_ANDROID) return Os.ANDROID;
  return os === OsValues.OS_OTHER ? Os.OTHER : Os.UNKNOWN;
}

function toBidContext(request: NativeRequestMessage, wantsJson: boolean): BidContext {
  const deviceIds: DeviceId[] = [];
  let refusedDeviceIds = 0;
  for (const id of request.device_ids) {
    const kind = toDeviceIdKind(id.type);
    if (kind === undefined || !addDeviceId(deviceIds, kind, id.md5)) refusedDeviceIds++;
  }
  const candidateAds: CandidateAd[] = [];
  for (const ad of request.candidate_ads) candidateAds.push(toCandidateAd(ad));
  return {
    // Always 'native', never the request's own media name: the metric label must keep a bounded set of values.
    media: 'native',
    requestId: request.request_id,
    // proto3 strings and JSON strings are text: invalid UTF-8 is refused before it gets here.
    requestIdBytes: null,
    isPing: request.is_ping,
    isTest: request.is_test,
    os: toOs(request.os),
    deviceIds,
    refusedDeviceIds,
    // A copy: for an absent field protobufjs hands out its one shared, frozen empty array.
    platformExperimentIds: request.experiment_ids.slice(),
    secondRequest: request.second_request,
    candidateAds,
    askedStrategyIds: null,
    wantsJson,
  };
}

function toCandidateAd(ad: CandidateAdMessage): CandidateAd {
  const creatives: CandidateCreative[] = [];
  for (const creative of ad.creatives) {
    creatives.push({
      creativeId: uint64ToNumber(creative.creative_id, 'candidate_ads.creatives.creative_id'),
      templateId: creative.template_id,
    });
  }
  return {
    adGroupId: uint64ToNumber(ad.ad_group_id, 'candidate_ads.ad_group_id'),
    advertiserId: uint64ToNumber(ad.advertiser_id, 'candidate_ads.advertiser_id'),
    outTargetId: ad.strategy_id,
    creatives,
  };
}

// JSON request: the proto3 JSON mapping (lowerCamelCase names, enums by name or number, uint64 as number or string).

const uint32Json = z.number().int().min(0).max(0xffff_ffff);
/** Range beyond 2^53 is left to uint64ToNumber, which refuses it as id_out_of_range like the protobuf path. */
const uint64Json = z.union(
  [z.number().nonnegative().refine(Number.isInteger, 'expected an integer'), z.string().regex(/^[0-9]{1,20}$/)],
  { error: 'expected a uint64: a non-negative integer or a string of decimal digits' },
);

function enumJson(values: Record<string, number>) {
  const names = Object.keys(values) as [string, ...string[]];
  return z.union([z.enum(names).transform((name) => values[name]!), z.number().int().min(-0x8000_0000).max(0x7fff_ffff)], {
    error: `expected one of ${names.join(', ')} or an enum number`,
  });
}

const NativeRequestJson = z.strictObject({
  requestId: z.string().optional(),
  media: z.string().optional(),
  isPing: z.boolean().optional(),
  isTest: z.boolean().optional(),
  os: enumJson(OsValues).optional(),
  deviceIds: z.array(z.strictObject({ type: enumJson(IdTypeValues).optional(), md5: z.string().optional() })).optional(),
  experimentIds: z.array(uint32Json).optional(),
  secondRequest: z.boolean().optional(),
  candidateAds: z
    .array(
      z.strictObject({
        adGroupId: uint64Json.optional(),
        advertiserId: uint64Json.optional(),
        strategyId: z.string().optional(),
        creatives: z.array(z.strictObject({ creativeId: uint64Json.optional(), templateId: uint32Json.optional() })).optional(),
      }),
    )
    .optional(),
});
type NativeRequestJson = z.infer<typeof NativeRequestJson>;

function parseJsonRequest(body: Uint8Array): NativeRequestMessage {
  let json: unknown;
  try {
    json = JSON.parse(UTF8.decode(body));
  } catch (error) {
    throw new InputError('invalid_json', `request body is not JSON: ${(error as Error).message}`);
  }
  const parsed = NativeRequestJson.safeParse(camelCaseKeys(json, 0));
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError('invalid_request', `${jsonPath(issue.path)}: ${issue.message}`);
  }
  return fromJson(parsed.data);
}

/**
 * A request nests five levels at most (request, candidate_ads, ad, creatives, creative); deeper JSON is refused
 * here rather than recursed into until the stack runs out.
 */
const MAX_JSON_DEPTH = 16;

/** The proto3 JSON mapping lets a parser take the proto field names (snake_case) as well as lowerCamelCase. */
function camelCaseKeys(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_JSON_DEPTH) throw new InputError('invalid_json', `request body nests deeper than ${MAX_JSON_DEPTH} levels`);
  if (Array.isArray(value)) return value.map((inner) => camelCaseKeys(inner, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) out[key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())] = camelCaseKeys(inner, depth + 1);
  return out;
}

function jsonPath(path: ReadonlyArray<PropertyKey>): string {
  let text = '';
  for (const key of path) text += typeof key === 'number' ? `[${key}]` : text === '' ? String(key) : `.${String(key)}`;
  return text === '' ? 'request' : text;
}

function fromJson(json: NativeRequestJson): NativeRequestMessage {
  return {
    request_id: json.requestId ?? '',
    is_ping: json.isPing ?? false,
    is_test: json.isTest ?? false,
    os: json.os ?? OsValues.OS_UNKNOWN!,
    device_ids: (json.deviceIds ?? []).map((id) => ({ type: id.type ?? IdTypeValues.ID_TYPE_UNSPECIFIED!, md5: id.md5 ?? '' })),
    experiment_ids: json.experimentIds ?? [],
    second_request: json.secondRequest ?? false,
    candidate_ads: (json.candidateAds ?? []).map((ad) => ({
      ad_group_id: ad.adGroupId ?? 0,
      advertiser_id: ad.advertiserId ?? 0,
      strategy_id: ad.strategyId ?? '',
      creatives: (ad.creatives ?? []).map((creative) => ({
        creative_id: creative.creativeId ?? 0,
        template_id: creative.templateId ?? 0,
      })),
    })),
  };
}

// Replies. Non-finite floats are never written: they are left at the proto3 default instead.

function toStrategyMessage(decision: Decision, strategy: StrategyDecision) {
  return {
    strategy_id: mediaIdOf(decision, strategy),
    coefficient: finiteOr0(strategy.coefficient),
    creative_id: strategy.creativeId,
    cpa_price_fen: strategy.cpaPriceFen,
    cpc_price_fen: strategy.cpcPriceFen,
    experiment_tag: strategy.experimentTag,
    experiment_tag_name: strategy.experimentTagName,
    pcvr: finiteOr0(strategy.pcvr),
  };
}

/** The proto3 JSON form of the reply, every field written (defaults included) so a human sees the whole answer. */
function toJsonReply(context: BidContext, decision: Decision) {
  if (context.isPing) return { requestId: context.requestId, code: 0 };
  return {
    requestId: context.requestId,
    code: decision.code,
    reason: decision.reason,
    decisions: decision.strategies.map((strategy) => {
      const message = toStrategyMessage(decision, strategy);
      return {
        strategyId: message.strategy_id,
        coefficient: message.coefficient,
        creativeId: String(strategy.creativeId),
        cpaPriceFen: strategy.cpaPriceFen,
        cpcPriceFen: message.cpc_price_fen,
        experimentTag: String(strategy.experimentTag),
        experimentTagName: strategy.experimentTagName,
        pcvr: message.pcvr,
      };
    }),
    adResults: decision.adResults.map((ad) => ({
      adGroupId: String(ad.adGroupId),
      ignore: ad.ignore,
      creatives: ad.creatives.map((creative) => ({
        creativeId: String(creative.creativeId),
        raiseFactor: finiteOr0(creative.raiseFactor),
      })),
    })),
    cacheTtlSeconds: decision.cacheTtlSeconds,
    processingTimeUs: wholeMicroseconds(decision.processingTimeUs),
    modelVersion: decision.modelVersion,
    experimentTag: String(decision.experimentTag),
    experimentTagName: decision.experimentTagName,
    bookVersion: decision.bookVersion,
  };
}
