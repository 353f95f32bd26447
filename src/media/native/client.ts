import { loadProto } from '../protobuf.js';
import { fromFloat32, type MediaClient, type SimulatedRequest } from '../simulated-request.js';
import { DeviceIdKind } from '../../engine/types.js';

/** A caller of our native protocol: protobuf by default, or JSON for people and debugging. */

const root = loadProto(new URL('../../../proto/rta/v1/native.proto', import.meta.url));
const NativeRequest = root.lookupType('rta.v1.NativeRequest');
const NativeResponse = root.lookupType('rta.v1.NativeResponse');

const ID_TYPE: Record<DeviceIdKind, string> = {
  [DeviceIdKind.OAID_MD5]: 'OAID_MD5',
  [DeviceIdKind.IMEI_MD5]: 'IMEI_MD5',
  [DeviceIdKind.IDFA_MD5]: 'IDFA_MD5',
  [DeviceIdKind.ANDROID_ID_MD5]: 'ANDROID_ID_MD5',
  [DeviceIdKind.MAC_MD5]: 'MAC_MD5',
  [DeviceIdKind.CAID_MD5]: 'CAID_MD5',
};

export const nativeClient: MediaClient = {
  name: 'native',
  path: '/rta/v1',

  encodeRequest(request: SimulatedRequest, options = {}) {
    const message = NativeRequest.fromObject({
      request_id: request.requestId,
      media: 'simulator',
      is_ping: request.isPing,
      is_test: request.isTest,
      os: request.os === 'ios' ? 'OS_IOS' : 'OS_ANDROID',
      device_ids: request.ids.map((id) => ({ type: ID_TYPE[id.kind], md5: id.md5 })),
      experiment_ids: request.platformExperimentIds,
      second_request: request.secondRequest,
      candidate_ads: request.ads.map((ad) => ({
        ad_group_id: ad.adGroupId,
        strategy_id: ad.strategyId,
        creatives: ad.creatives.map((c) => ({ creative_id: c.creativeId, template_id: c.templateId })),
      })),
    });
    if (!options.json) return { body: NativeRequest.encode(message).finish(), contentType: 'application/x-protobuf' };
    const json = NativeRequest.toObject(message, { longs: String, enums: String });
    return { body: new TextEncoder().encode(JSON.stringify(json)), contentType: 'application/json' };
  },

  decodeReply(body: Uint8Array, contentType: string) {
    if (contentType.startsWith('application/json')) return JSON.parse(new TextDecoder().decode(body)) as Record<string, unknown>;
    return NativeResponse.toObject(NativeResponse.decode(body), { longs: String, enums: String });
  },

  readAnswer(body: Uint8Array, contentType: string) {
    const reply = contentType.startsWith('application/json')
      ? (JSON.parse(new TextDecoder().decode(body)) as NativeReply)
      : fromMessage(NativeResponse.toObject(NativeResponse.decode(body), { longs: Number }) as NativeReplyMessage);
    const code = reply.code ?? 0;
    const strategies = (reply.decisions ?? []).map((d) => ({
      id: d.strategyId,
      coefficient: fromFloat32(d.coefficient ?? 0),
      cpcPriceFen: d.cpcPriceFen ?? 0,
      cpaPriceFen: d.cpaPriceFen ?? 0,
    }));
    return {
      requestId: reply.requestId ?? null,
      taken: code === 0 && strategies.length > 0,
      code,
      cacheSeconds: reply.cacheTtlSeconds ?? null,
      strategies,
      declined: [],
    };
  },
};

/** The reply in the proto3 JSON mapping (the JSON body's form). */
interface NativeReply {
  requestId?: string;
  code?: number;
  cacheTtlSeconds?: number;
  decisions?: Array<{ strategyId: string; coefficient?: number; cpcPriceFen?: number; cpaPriceFen?: number }>;
}

/** The decoded message, proto field names (absent fields left out). */
interface NativeReplyMessage {
  request_id?: string;
  code?: number;
  cache_ttl_seconds?: number;
  decisions?: Array<{ strategy_id: string; coefficient?: number; cpc_price_fen?: number; cpa_price_fen?: number }>;
}

function fromMessage(m: NativeReplyMessage): NativeReply {
  return {
    requestId: m.request_id,
    code: m.code,
    cacheTtlSeconds: m.cache_ttl_seconds,
    decisions: m.decisions?.map((d) => ({ strategyId: d.strategy_id, coefficient: d.coefficient, cpcPriceFen: d.cpc_price_fen, cpaPriceFen: d.cpa_price_fen })),
  };
}
