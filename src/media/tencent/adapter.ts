import protobuf from 'protobufjs';
import {
  DecisionCode,
  DeviceIdKind,
  Os,
  type BidContext,
  type CandidateAd,
  type CandidateCreative,
  type Decision,
  type DeviceId,
  type EncodedReply,
  type MediaAdapter,
} from '../../engine/types.js';
import { addDeviceId } from '../device-ids.js';
import { decodeStrict, loadProto, scanIdAndFlag, strictType, uint64ToNumber, type Uint64 } from '../protobuf.js';
import { encodeReply } from './reply.js';
import { checkWire } from '../wire-check.js';

/** Tencent Ads RTA (shared/protocols/tencent-rta.md): proto2 `tencent.ad.rta` over a plain POST body. */

const root = loadProto(new URL('../../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = strictType(root, 'tencent.ad.rta.RtaRequest');

const OsValues = root.lookupEnum('tencent.ad.rta.RtaRequest.Device.OperatingSystem').values;
const Doubtful = root.lookupEnum('tencent.ad.rta.RtaRequest.Device.DoubtfulIdType').values;
const ADLIST_REQUEST = root.lookupEnum('tencent.ad.rta.RtaRequest.RequestInfo.RequestType').values.ADLIST_REQUEST!;

/** Bits of a device's doubtful_ids_list that forbid each id. A doubtful raw OAID makes its MD5 doubtful too. */
const DOUBTFUL_OAID = (1 << Doubtful.OAID_MD5_DOUBTFUL!) | (1 << Doubtful.OAID_DOUBTFUL!);
const DOUBTFUL_IMEI = 1 << Doubtful.IMEI_MD5_DOUBTFUL!;
const DOUBTFUL_IDFA = 1 << Doubtful.IDFA_MD5_DOUBTFUL!;
const DOUBTFUL_ANDROID_ID = 1 << Doubtful.ANDROIDID_MD5_DOUBTFUL!;
const DOUBTFUL_MAC = 1 << Doubtful.MAC_MD5_DOUBTFUL!;
const DOUBTFUL_QAID = 1 << Doubtful.QAID_DOUBTFUL!;

const CONTENT_TYPE = 'application/x-protobuf';

/** The decoded request fields the engine uses (protobufjs message, proto names; absent fields read as defaults). */
interface RtaRequestMessage {
  id: string;
  is_ping: boolean;
  is_test: boolean;
  device: DeviceMessage | null;
  request_info: { request_type: number } | null;
  exps: ExperimentMessage[];
  ad_infos: AdInfoMessage[];
}

interface DeviceMessage {
  os: number;
  idfa_md5sum: string;
  imei_md5sum: string;
  android_id_md5sum: string;
  mac_md5sum: string;
  oaid_md5sum: string;
  doubtful_ids_list: number[];
  qaid_infos: Array<{ version: number; qaid_md5sum: string }>;
}

interface ExperimentMessage {
  exp_id: number;
}

interface AdInfoMessage {
  adgroup_id: Uint64;
  advertiser_id: number;
  out_target_id: string;
  creative_infos: Array<{ creative_id: Uint64; crt_template_id: number }>;
}

export const tencentAdapter: MediaAdapter = {
  name: 'tencent',

  decode(body: Uint8Array): BidContext {
    const request = decodeStrict<RtaRequestMessage>(RtaRequest, body);
    const deviceIds: DeviceId[] = [];
    const device = request.device;
    let refusedDeviceIds = 0;
    let os: Os = Os.UNKNOWN;
    if (device !== null) {
      os = toOs(device.os);
      let doubtful = 0;
      for (const id of device.doubtful_ids_list) doubtful |= 1 << id;
      refusedDeviceIds += take(deviceIds, DeviceIdKind.OAID_MD5, device.oaid_md5sum, doubtful & DOUBTFUL_OAID);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.IMEI_MD5, device.imei_md5sum, doubtful & DOUBTFUL_IMEI);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.IDFA_MD5, device.idfa_md5sum, doubtful & DOUBTFUL_IDFA);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.ANDROID_ID_MD5, device.android_id_md5sum, doubtful & DOUBTFUL_ANDROID_ID);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.MAC_MD5, device.mac_md5sum, doubtful & DOUBTFUL_MAC);
      // CAIDs of several versions may come together; the newest version is the one a profile is most likely under.
      const caids = device.qaid_infos.length > 1 ? [...device.qaid_infos].sort((a, b) => b.version - a.version) : device.qaid_infos;
      for (const qaid of caids) refusedDeviceIds += take(deviceIds, DeviceIdKind.CAID_MD5, qaid.qaid_md5sum, doubtful & DOUBTFUL_QAID);
    }
    const platformExperimentIds: number[] = [];
    for (const exp of request.exps) {
      // An Experiment without exp_id names no bucket; reading it as bucket 0 would put the device in one.
      if (Object.hasOwn(exp, 'exp_id')) platformExperimentIds.push(exp.exp_id);
    }
    const candidateAds: CandidateAd[] = [];
    for (const ad of request.ad_infos) candidateAds.push(toCandidateAd(ad));
    return {
      media: 'tencent',
      requestId: request.id,
      // protobufjs reads invalid UTF-8 as U+FFFD: only then are the id's bytes looked up again.
      requestIdBytes: request.id.includes('\uFFFD') ? copyOf(scanIdAndFlag(body, REQUEST_ID_FIELD, IS_PING_FIELD).id) : null,
      isPing: request.is_ping,
      isTest: request.is_test,
      os,
      deviceIds,
      refusedDeviceIds,
      platformExperimentIds,
      secondRequest: request.request_info !== null && request.request_info.request_type === ADLIST_REQUEST,
      candidateAds,
      askedStrategyIds: null,
      wantsJson: false,
    };
  },

  shed(body: Uint8Array, _contentType: string, cacheTtlSeconds: number): EncodedReply {
    checkWire(RtaRequest.rule, body);
    const { id, flag: isPing } = scanIdAndFlag(body, REQUEST_ID_FIELD, IS_PING_FIELD);
    const writer = protobuf.Writer.create();
    if (id !== null) writer.uint32(tag(REQUEST_ID_FIELD, 2)).bytes(id);
    writer.uint32(tag(CODE_FIELD, 0)).uint32(isPing ? DecisionCode.TAKE : DecisionCode.DEADLINE_FALLBACK);
    if (!isPing) writer.uint32(tag(CACHE_TIME_FIELD, 0)).uint32(cacheTtlSeconds);
    return { body: writer.finish(), contentType: CONTENT_TYPE };
  },

  encode(context: BidContext, decision: Decision): EncodedReply {
    return { body: encodeReply(context, decision), contentType: CONTENT_TYPE };
  },
};

/** Returns 1 when the id is refused: flagged doubtful by the platform, malformed or a placeholder. "" means absent. */
function take(ids: DeviceId[], kind: DeviceIdKind, hex: string, doubtful: number): number {
  if (hex === '') return 0;
  return doubtful !== 0 || !addDeviceId(ids, kind, hex) ? 1 : 0;
}

function toOs(os: number): Os {
  if (os === OsValues.OS_IOS) return Os.IOS;
  if (os === OsValues.OS_ANDROID) return Os.ANDROID;
  return os === OsValues.OS_UNKNOWN ? Os.UNKNOWN : Os.OTHER;
}

function toCandidateAd(ad: AdInfoMessage): CandidateAd {
  const creatives: CandidateCreative[] = [];
  for (const creative of ad.creative_infos) {
    creatives.push({
      creativeId: uint64ToNumber(creative.creative_id, 'ad_infos.creative_infos.creative_id'),
      templateId: creative.crt_template_id,
    });
  }
  return {
    adGroupId: uint64ToNumber(ad.adgroup_id, 'ad_infos.adgroup_id'),
    advertiserId: ad.advertiser_id,
    outTargetId: ad.out_target_id,
    creatives,
  };
}

/** Field numbers of the shed answer, written by hand (see `shed`): RtaRequest.id and is_ping, RtaResponse's own. */
const REQUEST_ID_FIELD = 1;
const IS_PING_FIELD = 2;
const CODE_FIELD = 2;
const CACHE_TIME_FIELD = 7;
const tag = (field: number, wireType: number) => (field << 3) | wireType;
/** The body's memory may be reused once its callback returns; the context outlives it. */
const copyOf = (bytes: Uint8Array | null) => (bytes === null ? null : new Uint8Array(bytes));
