import { DeviceIdKind } from '../../engine/types.js';
import { loadProto } from '../protobuf.js';
import type { MediaClient, SimulatedRequest } from '../simulated-request.js';

/**
 * Ocean Engine's side of its RTA exchange. Raw OAID, IDFA and CAID travel in the device block, as the platform
 * sends them (from `rta send` with raw ids); an id known only by its md5 goes in `did`, the first such OAID or IDFA.
 */

const root = loadProto(new URL('../../../proto/ocean/rta.proto', import.meta.url));
const Req = root.lookupType('ocean.rta.Req');
const Rsp = root.lookupType('ocean.rta.Rsp');

const RAW_FIELD: Partial<Record<DeviceIdKind, string>> = {
  [DeviceIdKind.OAID_MD5]: 'oaid',
  [DeviceIdKind.IDFA_MD5]: 'idfa',
  [DeviceIdKind.CAID_MD5]: 'caid',
};
const MD5_FIELD: Partial<Record<DeviceIdKind, string>> = {
  [DeviceIdKind.IMEI_MD5]: 'imei_md5',
  [DeviceIdKind.ANDROID_ID_MD5]: 'android_id_md5',
};
const MD5_DID_TYPE: Partial<Record<DeviceIdKind, string>> = {
  [DeviceIdKind.OAID_MD5]: 'OAID_MD5',
  [DeviceIdKind.IDFA_MD5]: 'IDFA_MD5',
};

interface UserInfoReply {
  is_interested?: boolean;
  rta_id?: string;
  user_scores?: Array<{ user_type?: string; quality?: number; pricing_type?: string }>;
}

export const oceanClient: MediaClient = {
  name: 'ocean',
  path: '/rta/ocean',

  encodeRequest(request: SimulatedRequest) {
    const device: Record<string, unknown> = { device_os_type: request.os === 'ios' ? 'DEVICE_IOS' : 'DEVICE_ANDROID' };
    const message: Record<string, unknown> = {
      platform: request.os === 'ios' ? 'IOS' : 'ANDROID',
      req_id: request.requestId,
      source: 'simulator',
      rta_ids: request.askedStrategyIds ?? [],
      vids: request.platformExperimentIds,
      device,
    };
    for (const id of request.ids) {
      const raw = RAW_FIELD[id.kind];
      if (id.raw !== undefined && raw !== undefined) device[raw] = id.raw;
      else if (MD5_FIELD[id.kind] !== undefined) device[MD5_FIELD[id.kind]!] = id.md5;
      else if (MD5_DID_TYPE[id.kind] !== undefined && message.did === undefined) Object.assign(message, { did: id.md5, did_type: MD5_DID_TYPE[id.kind] });
    }
    return { body: Req.encode(Req.fromObject(message)).finish(), contentType: 'application/x-protobuf' };
  },

  decodeReply(body: Uint8Array) {
    return Rsp.toObject(Rsp.decode(body), { longs: String, enums: String });
  },

  readAnswer(body: Uint8Array) {
    const reply = Rsp.toObject(Rsp.decode(body), { longs: String, enums: String }) as {
      status_code?: number;
      req_id?: string;
      cache_time_secs?: number;
      user_infos?: UserInfoReply[];
    };
    const infos = reply.user_infos ?? [];
    const score = (info: UserInfoReply, type: string, pricing?: string) =>
      info.user_scores?.find((s) => s.user_type === type && (pricing === undefined || s.pricing_type === pricing))?.quality;
    const strategies = infos
      .filter((info) => info.is_interested)
      .map((info) => ({
        id: String(info.rta_id ?? '0'),
        coefficient: score(info, 'PRICE_COEF') ?? null,
        cpcPriceFen: score(info, 'PRICE_BID', 'CPC') ?? 0,
        cpaPriceFen: score(info, 'PRICE_BID', 'OCPC') ?? 0,
      }));
    return {
      requestId: reply.req_id ?? null,
      taken: strategies.length > 0,
      code: reply.status_code ?? 0,
      cacheSeconds: reply.cache_time_secs ?? null,
      strategies,
      declined: infos.filter((info) => !info.is_interested).map((info) => String(info.rta_id ?? '0')),
    };
  },
};
