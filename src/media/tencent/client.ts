import { DeviceIdKind } from '../../engine/types.js';
import { loadProto } from '../protobuf.js';
import { fromFloat32, type MediaClient, type SimulatedRequest } from '../simulated-request.js';

/** Tencent's side of the RTA exchange: requests as the platform encodes them, replies as it reads them. */

const root = loadProto(new URL('../../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = root.lookupType('tencent.ad.rta.RtaRequest');
const RtaResponse = root.lookupType('tencent.ad.rta.RtaResponse');

const DEVICE_FIELD: Record<DeviceIdKind, string> = {
  [DeviceIdKind.OAID_MD5]: 'oaid_md5sum',
  [DeviceIdKind.IMEI_MD5]: 'imei_md5sum',
  [DeviceIdKind.IDFA_MD5]: 'idfa_md5sum',
  [DeviceIdKind.ANDROID_ID_MD5]: 'android_id_md5sum',
  [DeviceIdKind.MAC_MD5]: 'mac_md5sum',
  [DeviceIdKind.CAID_MD5]: 'qaid_infos',
};

export const tencentClient: MediaClient = {
  name: 'tencent',
  path: '/rta/tencent',

  encodeRequest(request: SimulatedRequest) {
    const device: Record<string, unknown> = { os: request.os === 'ios' ? 'OS_IOS' : 'OS_ANDROID' };
    for (const id of request.ids) {
      if (id.kind === DeviceIdKind.CAID_MD5) ((device.qaid_infos ??= []) as unknown[]).push({ version: 1, qaid_md5sum: id.md5 });
      else device[DEVICE_FIELD[id.kind]] = id.md5;
    }
    const message = RtaRequest.fromObject({
      id: request.requestId,
      is_ping: request.isPing,
      is_test: request.isTest,
      device,
      exps: request.platformExperimentIds.map((exp_id) => ({ exp_id })),
      ...(request.secondRequest
        ? {
            request_info: { request_type: 'ADLIST_REQUEST' },
            ad_infos: request.ads.map((ad) => ({
              adgroup_id: ad.adGroupId,
              out_target_id: ad.strategyId,
              creative_infos: ad.creatives.map((c) => ({ creative_id: c.creativeId, crt_template_id: c.templateId })),
            })),
          }
        : {}),
    });
    return { body: RtaRequest.encode(message).finish(), contentType: 'application/x-protobuf' };
  },

  decodeReply(body: Uint8Array) {
    return RtaResponse.toObject(RtaResponse.decode(body), { longs: String, enums: String });
  },

  readAnswer(body: Uint8Array) {
    const reply = RtaResponse.toObject(RtaResponse.decode(body), { longs: Number }) as TencentReply;
    const infos = new Map((reply.target_infos ?? []).map((info) => [info.out_target_id, info]));
    // A non-zero code rejects the device for every strategy, whatever else the reply lists.
    const strategies = reply.code === 0 ? reply.out_target_id ?? [] : [];
    return {
      requestId: reply.request_id ?? null,
      taken: strategies.length > 0,
      code: reply.code,
      cacheSeconds: reply.response_cache_time ?? null,
      strategies: strategies.map((id) => {
        const info = infos.get(id);
        return {
          id,
          coefficient: info?.user_weight_factor === undefined ? null : fromFloat32(info.user_weight_factor),
          cpcPriceFen: info?.cpc_price ?? 0,
          cpaPriceFen: info?.cpa_price ?? 0,
        };
      }),
      declined: [],
    };
  },
};

interface TencentReply {
  request_id?: string;
  code: number;
  response_cache_time?: number;
  out_target_id?: string[];
  target_infos?: Array<{ out_target_id: string; user_weight_factor?: number; cpc_price?: number; cpa_price?: number }>;
}
