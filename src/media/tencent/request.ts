import { DeviceIdKind, Os, type BidContext, type CandidateAd, type CandidateCreative, type DeviceId } from '../../engine/types.js';
import { addDeviceIdHex } from '../device-ids.js';
import { uint64WordsToNumber } from '../protobuf.js';
import { protobufString, WireReader } from '../wire-reader.js';

/**
 * What the engine uses of an RtaRequest (proto/tencent/rta.proto), read in one pass over bytes that passed
 * checkWire: no message objects, device ids parsed from their hex bytes into keys without becoming strings. It
 * decodes as protobufjs does (the last of a repeated singular field wins, a message field that comes twice is
 * merged, packed and unpacked repeated enums are both read); test/media/tencent-request.test.ts checks it, and
 * the enum numbers below, against protobufjs's decoding on seeded random and mutated requests.
 */

/** Field numbers used here; every other field is skipped. */
const enum Request {
  ID = 1,
  IS_PING = 2,
  IS_TEST = 3,
  DEVICE = 5,
  REQUEST_INFO = 8,
  EXPS = 9,
  AD_INFOS = 11,
}
const enum Device {
  OS = 1,
  IDFA_MD5 = 2,
  IMEI_MD5 = 3,
  ANDROID_ID_MD5 = 4,
  MAC_MD5 = 5,
  OAID_MD5 = 6,
  DOUBTFUL_IDS = 9,
  QAID_INFOS = 13,
}
const QAID_VERSION = 1;
const QAID_MD5 = 4;
const REQUEST_TYPE = 1;
const EXP_ID = 1;
const enum AdInfo {
  ADGROUP_ID = 1,
  CREATIVE_INFOS = 2,
  ADVERTISER_ID = 4,
  OUT_TARGET_ID = 5,
}
const CREATIVE_ID = 1;
const CRT_TEMPLATE_ID = 2;

/**
 * Enum numbers of tencent.ad.rta. Its enums are closed (proto2): a number the enum does not have leaves the field
 * as it was, and is not added to a repeated one.
 */
const OS_IOS = 1;
const OS_ANDROID = 2;
const LAST_OS = 5;
const NORMAL_REQUEST = 0;
const ADLIST_REQUEST = 2;
const Doubtful = { IDFA_MD5: 0, IMEI_MD5: 1, ANDROIDID_MD5: 2, MAC_MD5: 3, OAID_MD5: 4, OAID: 5, QAID: 6 } as const;
const LAST_DOUBTFUL = Doubtful.QAID;

/** The device's id fields in the order they are tried, each with the doubtful bits that forbid it. */
const DEVICE_IDS: ReadonlyArray<{ field: Device; kind: DeviceIdKind; doubtful: number }> = [
  { field: Device.OAID_MD5, kind: DeviceIdKind.OAID_MD5, doubtful: (1 << Doubtful.OAID_MD5) | (1 << Doubtful.OAID) },
  { field: Device.IMEI_MD5, kind: DeviceIdKind.IMEI_MD5, doubtful: 1 << Doubtful.IMEI_MD5 },
  { field: Device.IDFA_MD5, kind: DeviceIdKind.IDFA_MD5, doubtful: 1 << Doubtful.IDFA_MD5 },
  { field: Device.ANDROID_ID_MD5, kind: DeviceIdKind.ANDROID_ID_MD5, doubtful: 1 << Doubtful.ANDROIDID_MD5 },
  { field: Device.MAC_MD5, kind: DeviceIdKind.MAC_MD5, doubtful: 1 << Doubtful.MAC_MD5 },
];
const DOUBTFUL_QAID = 1 << Doubtful.QAID;

/** The request's device, its occurrences merged: where each id's hex lies in the body (start -1: absent). */
const device = {
  present: false,
  os: 0,
  doubtful: 0,
  idStart: new Int32Array(Device.OAID_MD5 + 1),
  idEnd: new Int32Array(Device.OAID_MD5 + 1),
  qaids: [] as Array<{ version: number; start: number; end: number }>,
};

export function readRequest(body: Uint8Array): BidContext {
  const r = new WireReader(body);
  let idStart = 0;
  let idEnd = 0;
  let isPing = false;
  let isTest = false;
  let requestInfo = false;
  let requestType = 0;
  const platformExperimentIds: number[] = [];
  const candidateAds: CandidateAd[] = [];
  resetDevice();
  while (r.pos < body.length) {
    const tag = r.uint32();
    switch (tag) {
      case (Request.ID << 3) | 2:
        idEnd = r.delimited();
        idStart = r.pos;
        r.pos = idEnd;
        break;
      case Request.IS_PING << 3:
        isPing = r.bool();
        break;
      case Request.IS_TEST << 3:
        isTest = r.bool();
        break;
      case (Request.DEVICE << 3) | 2:
        readDevice(r, r.delimited());
        break;
      case (Request.REQUEST_INFO << 3) | 2: {
        const end = r.delimited();
        requestInfo = true;
        while (r.pos < end) {
          const inner = r.uint32();
          if (inner !== REQUEST_TYPE << 3) {
            r.skip(inner & 7);
            continue;
          }
          const type = r.uint32() | 0;
          if (type === NORMAL_REQUEST || type === ADLIST_REQUEST) requestType = type;
        }
        break;
      }
      case (Request.EXPS << 3) | 2: {
        const end = r.delimited();
        let expId = -1;
        while (r.pos < end) {
          const inner = r.uint32();
          if (inner === EXP_ID << 3) expId = r.uint32();
          else r.skip(inner & 7);
        }
        // An Experiment without exp_id names no bucket; reading it as bucket 0 would put the device in one.
        if (expId >= 0) platformExperimentIds.push(expId);
        break;
      }
      case (Request.AD_INFOS << 3) | 2:
        candidateAds.push(readAd(r, r.delimited()));
        break;
      default:
        r.skip(tag & 7);
    }
  }
  const requestId = protobufString(body, idStart, idEnd);
  const deviceIds: DeviceId[] = [];
  let refusedDeviceIds = 0;
  let os: Os = Os.UNKNOWN;
  if (device.present) {
    os = toOs(device.os);
    for (const { field, kind, doubtful } of DEVICE_IDS) refusedDeviceIds += take(deviceIds, kind, body, device.idStart[field]!, device.idEnd[field]!, device.doubtful & doubtful);
    // CAIDs of several versions may come together; the newest version is the one a profile is most likely under.
    const qaids = device.qaids.length > 1 ? [...device.qaids].sort((a, b) => b.version - a.version) : device.qaids;
    for (const qaid of qaids) refusedDeviceIds += take(deviceIds, DeviceIdKind.CAID_MD5, body, qaid.start, qaid.end, device.doubtful & DOUBTFUL_QAID);
  }
  return {
    media: 'tencent',
    requestId,
    // protobufjs reads invalid UTF-8 as U+FFFD: only then are the id's own bytes kept (a copy: the body is reused).
    requestIdBytes: requestId.includes('\uFFFD') ? new Uint8Array(body.subarray(idStart, idEnd)) : null,
    isPing,
    isTest,
    os,
    deviceIds,
    refusedDeviceIds,
    platformExperimentIds,
    secondRequest: requestInfo && requestType === ADLIST_REQUEST,
    candidateAds,
    askedStrategyIds: null,
    wantsJson: false,
  };
}

function resetDevice(): void {
  device.present = false;
  device.os = 0;
  device.doubtful = 0;
  // Not fill(): a call into the runtime costs more than these few stores.
  for (let field = 0; field < device.idStart.length; field++) device.idStart[field] = device.idEnd[field] = -1;
  device.qaids = [];
}

/** A device that comes again is merged into the one before, as protobufjs merges a message field. */
function readDevice(r: WireReader, end: number): void {
  device.present = true;
  while (r.pos < end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field >= Device.IDFA_MD5 && field <= Device.OAID_MD5 && wireType === 2) {
      device.idEnd[field] = r.delimited();
      device.idStart[field] = r.pos;
      r.pos = device.idEnd[field]!;
    } else if (tag === Device.OS << 3) {
      const os = r.uint32() | 0;
      if (os >= 0 && os <= LAST_OS) device.os = os;
    } else if (tag === Device.DOUBTFUL_IDS << 3) addDoubtful(r.uint32() | 0);
    else if (tag === ((Device.DOUBTFUL_IDS << 3) | 2)) {
      const packedEnd = r.delimited();
      while (r.pos < packedEnd) addDoubtful(r.uint32() | 0);
    } else if (tag === ((Device.QAID_INFOS << 3) | 2)) device.qaids.push(readQaid(r, r.delimited()));
    else r.skip(wireType);
  }
}

function addDoubtful(type: number): void {
  if (type >= 0 && type <= LAST_DOUBTFUL) device.doubtful |= 1 << type;
}

function readQaid(r: WireReader, end: number): { version: number; start: number; end: number } {
  const qaid = { version: 0, start: -1, end: -1 };
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === QAID_VERSION << 3) qaid.version = r.uint32();
    else if (tag === ((QAID_MD5 << 3) | 2)) {
      qaid.end = r.delimited();
      qaid.start = r.pos;
      r.pos = qaid.end;
    } else r.skip(tag & 7);
  }
  return qaid;
}

function readAd(r: WireReader, end: number): CandidateAd {
  let groupLow = 0;
  let groupHigh = 0;
  let advertiserId = 0;
  let outTargetId = '';
  const creatives: CandidateCreative[] = [];
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === AdInfo.ADGROUP_ID << 3) {
      r.uint64();
      groupLow = r.low;
      groupHigh = r.high;
    } else if (tag === ((AdInfo.CREATIVE_INFOS << 3) | 2)) creatives.push(readCreative(r, r.delimited()));
    else if (tag === AdInfo.ADVERTISER_ID << 3) advertiserId = r.uint32();
    else if (tag === ((AdInfo.OUT_TARGET_ID << 3) | 2)) outTargetId = r.string();
    else r.skip(tag & 7);
  }
  return { adGroupId: uint64WordsToNumber(groupLow, groupHigh, 'ad_infos.adgroup_id'), advertiserId, outTargetId, creatives };
}

/** The creative's id is checked as it is read: the original mapping refused creatives before their ad's group id. */
function readCreative(r: WireReader, end: number): CandidateCreative {
  let low = 0;
  let high = 0;
  let templateId = 0;
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === CREATIVE_ID << 3) {
      r.uint64();
      low = r.low;
      high = r.high;
    } else if (tag === CRT_TEMPLATE_ID << 3) templateId = r.uint32();
    else r.skip(tag & 7);
  }
  return { creativeId: uint64WordsToNumber(low, high, 'ad_infos.creative_infos.creative_id'), templateId };
}

/** Returns 1 when the id is refused: flagged doubtful by the platform, malformed or a placeholder. Absent or empty is not an id. */
function take(ids: DeviceId[], kind: DeviceIdKind, body: Uint8Array, start: number, end: number, doubtful: number): number {
  if (start < 0 || end === start) return 0;
  return doubtful !== 0 || !addDeviceIdHex(ids, kind, body, start, end) ? 1 : 0;
}

function toOs(os: number): Os {
  if (os === OS_IOS) return Os.IOS;
  if (os === OS_ANDROID) return Os.ANDROID;
  return os === 0 ? Os.UNKNOWN : Os.OTHER;
}
