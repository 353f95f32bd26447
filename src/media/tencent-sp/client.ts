import { DeviceIdKind } from '../../engine/types.js';
import { loadProto } from '../protobuf.js';
import { fromFloat32, type MediaClient, type SimulatedRequest } from '../simulated-request.js';

/** Tencent's side of the RTA SP exchange. */

const root = loadProto(new URL('../../../proto/tencent/rtasp.proto', import.meta.url));
const RTASPRequest = root.lookupType('tencent.ad.rtasp.RTASPRequest');
const RTASPResponse = root.lookupType('tencent.ad.rtasp.RTASPResponse');

const DEVICE_FIELD: Record<DeviceIdKind, string> = {
  [DeviceIdKind.OAID_MD5]: 'oaid_md5',
  [DeviceIdKind.IMEI_MD5]: 'imei_md5',
  [DeviceIdKind.IDFA_MD5]: 'idfa_md5',
  [DeviceIdKind.ANDROID_ID_MD5]: 'androidid_md5',
  [DeviceIdKind.MAC_MD5]: 'mac_md5',
  [DeviceIdKind.CAID_MD5]: 'caid',
};
const DID_TYPE: Record<DeviceIdKind, string> = {
  [DeviceIdKind.OAID_MD5]: 'OAID_MD5',
  [DeviceIdKind.IMEI_MD5]: 'IMEI_MD5',
  [DeviceIdKind.IDFA_MD5]: 'IDFA_MD5',
  [DeviceIdKind.ANDROID_ID_MD5]: 'ANDROIDID_MD5',
  [DeviceIdKind.MAC_MD5]: 'MAC_MD5',
  [DeviceIdKind.CAID_MD5]: 'CAID_MD5',
};

interface StrategyReply {
  voting?: string;
  user_weight_factor?: number;
  cpc_price?: number;
  cpa_price?: number;
}

export const tencentSpClient: MediaClient = {
  name: 'tencent-sp',
  path: '/rta/tencent-sp',

  encodeRequest(request: SimulatedRequest) {
    const device: Record<string, unknown> = { os: request.os === 'ios' ? 'OS_IOS' : 'OS_ANDROID' };
    for (const id of request.ids) {
      if (id.kind === DeviceIdKind.CAID_MD5) ((device.caid ??= []) as unknown[]).push({ origin_version: '20230330', caid_md5: id.md5 });
      else device[DEVICE_FIELD[id.kind]] = id.md5;
    }
    // The platform names the id it caches our answer under: the first one it has.
    const cached = request.ids[0];
    if (cached) Object.assign(device, { did_md5: cached.md5, did_type: DID_TYPE[cached.kind] });
    else device.did_type = 'ID_NIL';
    const message = RTASPRequest.fromObject({ id: request.requestId, device, exp_ids: request.platformExperimentIds });
    return { body: RTASPRequest.encode(message).finish(), contentType: 'application/x-protobuf' };
  },

  decodeReply(body: Uint8Array) {
    return RTASPResponse.toObject(RTASPResponse.decode(body), { longs: String, enums: String });
  },

  readAnswer(body: Uint8Array) {
    const reply = RTASPResponse.toObject(RTASPResponse.decode(body), { enums: String }) as { id?: string; strategy_list?: Record<string, StrategyReply> };
    const entries = Object.entries(reply.strategy_list ?? {});
    const strategies = entries
      .filter(([, s]) => s.voting === 'VOTING_YES')
      .map(([id, s]) => ({
        id,
        coefficient: s.user_weight_factor === undefined ? null : fromFloat32(s.user_weight_factor),
        cpcPriceFen: s.cpc_price ?? 0,
        cpaPriceFen: s.cpa_price ?? 0,
      }));
    return {
      requestId: reply.id ?? null,
      taken: strategies.length > 0,
      code: null,
      cacheSeconds: null,
      strategies,
      declined: entries.filter(([, s]) => s.voting === 'VOTING_NO').map(([id]) => id),
    };
  },
};
