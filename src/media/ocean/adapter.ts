import protobuf from 'protobufjs';
import {
  DecisionCode,
  DeviceIdKind,
  Os,
  mediaIdOf,
  type BidContext,
  type Decision,
  type DeviceId,
  type EncodedReply,
  type MediaAdapter,
  type StrategyDecision,
} from '../../engine/types.js';
import { hashRawDeviceId } from '../../store/device-key.js';
import { addDeviceId } from '../device-ids.js';
import { decodeStrict, loadProto, strictType } from '../protobuf.js';

/**
 * Ocean Engine (ByteDance) RTA, proto3, from a public integration's schema (shared/protocols/ocean-engine-rta.md).
 * The request names the RTA ids it asks about; each is answered with is_interested and, when taken, our
 * coefficient (PRICE_COEF), replacement prices (PRICE_BID) and predicted credit grant (LOAN_CREDIT). Raw OAID,
 * IDFA, IMEI, Android id and CAID are hashed here, as the store's keys are made, and never kept.
 */

const root = loadProto(new URL('../../../proto/ocean/rta.proto', import.meta.url));
const Req = strictType(root, 'ocean.rta.Req');
const Rsp = root.lookupType('ocean.rta.Rsp');
const Platform = root.lookupEnum('ocean.rta.Req.PlatformType').values;
const DidType = root.lookupEnum('ocean.rta.Req.DidType').values;
const DeviceOs = root.lookupEnum('ocean.rta.Req.DeviceOsType').values;
const UserType = root.lookupEnum('ocean.rta.Rsp.UserType').values;
const PricingType = root.lookupEnum('ocean.rta.Rsp.PricingType').values;
const ActionType = root.lookupEnum('ocean.rta.Rsp.ActionType').values;

const CONTENT_TYPE = 'application/x-protobuf';
/** bid_type: the device takes part / does not (an exclusion: not worth asking again within the cache time). */
const BID_TYPE_TAKES_PART = 0;
const BID_TYPE_DEVICE_OUT = 1;
const EXCLUSIONS: ReadonlySet<number> = new Set([DecisionCode.EXISTING_BORROWER, DecisionCode.BLACKLISTED, DecisionCode.HIGH_RISK]);
/** cus_vid has ten values: an experiment tag outside 1..10 is not reported. */
const MAX_CUS_VID = 10;

/** What `did` holds, by did_type: its kind and whether it is raw (hashed here). GAID has no store key. */
const DID: ReadonlyMap<number, { kind: DeviceIdKind; raw: boolean }> = new Map([
  [DidType.IMEI!, { kind: DeviceIdKind.IMEI_MD5, raw: true }],
  [DidType.IMEI_MD5!, { kind: DeviceIdKind.IMEI_MD5, raw: false }],
  [DidType.ANDROID_ID!, { kind: DeviceIdKind.ANDROID_ID_MD5, raw: true }],
  [DidType.ANDROID_ID_MD5!, { kind: DeviceIdKind.ANDROID_ID_MD5, raw: false }],
  [DidType.IDFA!, { kind: DeviceIdKind.IDFA_MD5, raw: true }],
  [DidType.IDFA_MD5!, { kind: DeviceIdKind.IDFA_MD5, raw: false }],
  [DidType.OAID!, { kind: DeviceIdKind.OAID_MD5, raw: true }],
  [DidType.OAID_MD5!, { kind: DeviceIdKind.OAID_MD5, raw: false }],
]);

interface ReqMessage {
  platform: number;
  did: string;
  did_type: number;
  req_id: string;
  rta_ids: Array<protobuf.Long | number>;
  device: DeviceMessage | null;
  vids: number[];
}

interface DeviceMessage {
  imei_md5: string;
  android_id_md5: string;
  oaid: string;
  idfa: string;
  caid1: string;
  caid2: string;
  device_os_type: number;
  caid1_version: string;
  caid2_version: string;
  caid: string;
}

interface UserInfoFields {
  is_interested: boolean;
  rta_id: string;
  user_scores?: Array<{ user_type: number; quality: number; pricing_type?: number }>;
  action_scores?: Array<{ action_type: number; quality: number }>;
  cus_vid?: number;
}

export const oceanAdapter: MediaAdapter = {
  name: 'ocean',

  decode(body: Uint8Array): BidContext {
    const request = decodeStrict<ReqMessage>(Req, body);
    const ids = new DeviceIds();
    const device = request.device;
    if (device !== null) {
      ids.raw(DeviceIdKind.OAID_MD5, device.oaid);
      ids.hashed(DeviceIdKind.IMEI_MD5, device.imei_md5);
      ids.raw(DeviceIdKind.IDFA_MD5, device.idfa);
      // Newest CAID version first: 2024's, then caid1 and caid2 by their versions (dates, so they sort as text).
      ids.raw(DeviceIdKind.CAID_MD5, device.caid);
      const caid2First = device.caid2_version > device.caid1_version;
      ids.raw(DeviceIdKind.CAID_MD5, caid2First ? device.caid2 : device.caid1);
      ids.raw(DeviceIdKind.CAID_MD5, caid2First ? device.caid1 : device.caid2);
      ids.hashed(DeviceIdKind.ANDROID_ID_MD5, device.android_id_md5);
    }
    if (request.did !== '') {
      const did = DID.get(request.did_type);
      if (did === undefined) ids.refused++;
      else if (did.raw) ids.raw(did.kind, request.did);
      else ids.hashed(did.kind, request.did);
    }
    return {
      media: 'ocean',
      requestId: request.req_id,
      requestIdBytes: null,
      isPing: false,
      isTest: false,
      os: toOs(request.platform, device?.device_os_type ?? DeviceOs.DEVICE_OS_UNKNOWN!),
      deviceIds: ids.list,
      refusedDeviceIds: ids.refused,
      platformExperimentIds: request.vids.slice(),
      secondRequest: false,
      candidateAds: [],
      askedStrategyIds: askedIds(request.rta_ids),
      wantsJson: false,
    };
  },

  /** Every asked RTA id needs its own "not interested": shed through a decode. */
  shed: () => null,

  encode(context: BidContext, decision: Decision): EncodedReply {
    const taken = new Map<string, StrategyDecision>();
    if (decision.code === DecisionCode.TAKE) {
      for (const s of decision.strategies) taken.set(mediaIdOf(decision, s), s);
    }
    const userInfos: UserInfoFields[] = [];
    for (const rtaId of context.askedStrategyIds ?? []) {
      const strategy = taken.get(rtaId);
      userInfos.push(strategy ? interested(rtaId, strategy) : { is_interested: false, rta_id: rtaId });
    }
    const message: Record<string, unknown> = {
      status_code: 0,
      req_id: context.requestId,
      user_infos: userInfos,
      bid_type: { value: EXCLUSIONS.has(decision.code) ? BID_TYPE_DEVICE_OUT : BID_TYPE_TAKES_PART },
      cache_time_secs: decision.cacheTtlSeconds,
    };
    if (decision.experimentTag >= 1 && decision.experimentTag <= MAX_CUS_VID) message.cus_vid = decision.experimentTag;
    return { body: Rsp.encode(message).finish(), contentType: CONTENT_TYPE };
  },
};

/** The request's usable keys, each once; raw ids hashed by the platforms' rules (IDFA upper-cased, IMEI lower). */
class DeviceIds {
  readonly list: DeviceId[] = [];
  refused = 0;

  raw(kind: DeviceIdKind, raw: string): void {
    if (raw !== '') this.hashed(kind, hashRawDeviceId(kind, raw));
  }

  hashed(kind: DeviceIdKind, hex: string): void {
    if (hex === '') return;
    const before = this.list.length;
    if (!addDeviceId(this.list, kind, hex)) {
      this.refused++;
      return;
    }
    const added = this.list[before]!.key;
    // `did` mostly repeats an id of the device block: one lookup per key is enough.
    for (let i = 0; i < before; i++) {
      if (Buffer.compare(this.list[i]!.key, added) === 0) {
        this.list.pop();
        return;
      }
    }
  }
}

/**
 * Each id once. 0 and negative ids can be no RTA id of ours (and proto3 could not even echo a 0): not answered.
 */
function askedIds(rtaIds: ReqMessage['rta_ids']): string[] {
  const ids = new Set<string>();
  for (const id of rtaIds) {
    const text = String(id);
    if (text !== '0' && !text.startsWith('-')) ids.add(text);
  }
  return [...ids];
}

function toOs(platform: number, deviceOs: number): Os {
  if (platform === Platform.IOS || deviceOs === DeviceOs.DEVICE_IOS) return Os.IOS;
  if (platform === Platform.ANDROID || deviceOs === DeviceOs.DEVICE_ANDROID) return Os.ANDROID;
  return deviceOs === DeviceOs.DEVICE_WINDOWS ? Os.OTHER : Os.UNKNOWN;
}

/**
 * Prices as PRICE_BID in fen, like Tencent's: the public schema does not state the unit (README, "Ocean Engine").
 * A CPA price is an oCPC target, a CPC price a CPC bid.
 */
function interested(rtaId: string, strategy: StrategyDecision): UserInfoFields {
  const scores: NonNullable<UserInfoFields['user_scores']> = [];
  if (Number.isFinite(strategy.coefficient)) scores.push({ user_type: UserType.PRICE_COEF!, quality: strategy.coefficient });
  if (strategy.cpcPriceFen > 0) scores.push({ user_type: UserType.PRICE_BID!, quality: strategy.cpcPriceFen, pricing_type: PricingType.CPC! });
  if (strategy.cpaPriceFen > 0) scores.push({ user_type: UserType.PRICE_BID!, quality: strategy.cpaPriceFen, pricing_type: PricingType.OCPC! });
  const info: UserInfoFields = { is_interested: true, rta_id: rtaId, user_scores: scores };
  if (strategy.pcvr > 0 && strategy.pcvr <= 1) info.action_scores = [{ action_type: ActionType.LOAN_CREDIT!, quality: strategy.pcvr }];
  if (strategy.experimentTag >= 1 && strategy.experimentTag <= MAX_CUS_VID) info.cus_vid = strategy.experimentTag;
  return info;
}
