import { loadProto } from '../protobuf.js';
import type { MediaClient, SimulatedRequest } from '../simulated-request.js';
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
};
