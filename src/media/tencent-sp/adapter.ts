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
import { addDeviceId } from '../device-ids.js';
import { decodeStrict, loadProto, strictType } from '../protobuf.js';

/**
 * Tencent RTA SP (shared/protocols/tencent-rtasp.md): proto3 `tencent.ad.rtasp`. The same decision as classic RTA,
 * answered as a vote per strategy name: yes with the adjustments for each strategy that takes the device, no for
 * every other strategy of the book on this media, so that a decline is as explicit as classic RTA's non-zero code.
 */

const root = loadProto(new URL('../../../proto/tencent/rtasp.proto', import.meta.url));
const RTASPRequest = strictType(root, 'tencent.ad.rtasp.RTASPRequest');
const RTASPResponse = root.lookupType('tencent.ad.rtasp.RTASPResponse');
const OsValues = root.lookupEnum('tencent.ad.rtasp.RTASPRequest.OperatingSystem').values;
const IdType = root.lookupEnum('tencent.ad.rtasp.RTASPRequest.DeviceIdType').values;
const Voting = root.lookupEnum('tencent.ad.rtasp.RTASPResponse.Voting').values;

const CONTENT_TYPE = 'application/x-protobuf';

/** Which kind `did_md5` is, by did_type; ID_INVALID and ID_NIL name none. */
const KIND_BY_DID_TYPE = new Map<number, DeviceIdKind>([
  [IdType.IDFA_MD5!, DeviceIdKind.IDFA_MD5],
  [IdType.CAID_MD5!, DeviceIdKind.CAID_MD5],
  [IdType.OAID_MD5!, DeviceIdKind.OAID_MD5],
  [IdType.IMEI_MD5!, DeviceIdKind.IMEI_MD5],
  [IdType.ANDROIDID_MD5!, DeviceIdKind.ANDROID_ID_MD5],
  [IdType.MAC_MD5!, DeviceIdKind.MAC_MD5],
]);

/** The decoded request (proto names; proto3 defaults for absent fields). */
interface RTASPRequestMessage {
  id: string;
  device: DeviceMessage | null;
  exp_ids: number[];
}

interface DeviceMessage {
  did_md5: string;
  did_type: number;
  os: number;
  idfa_md5: string;
  caid: Array<{ origin_version: string; caid_md5: string }>;
  oaid_md5: string;
  imei_md5: string;
  androidid_md5: string;
  mac_md5: string;
}

interface StrategyFields {
  voting: number;
  user_weight_factor?: number;
  cpc_price?: number;
  cpa_price?: number;
}

export const tencentSpAdapter: MediaAdapter = {
  name: 'tencent-sp',

  decode(body: Uint8Array): BidContext {
    const request = decodeStrict<RTASPRequestMessage>(RTASPRequest, body);
    const deviceIds: DeviceId[] = [];
    let refusedDeviceIds = 0;
    let os: Os = Os.UNKNOWN;
    const device = request.device;
    if (device !== null) {
      os = toOs(device.os);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.OAID_MD5, device.oaid_md5);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.IMEI_MD5, device.imei_md5);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.IDFA_MD5, device.idfa_md5);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.ANDROID_ID_MD5, device.androidid_md5);
      refusedDeviceIds += take(deviceIds, DeviceIdKind.MAC_MD5, device.mac_md5);
      // Versions are dates ("20230330"): as text they sort as dates, newest first.
      const caids = device.caid.length > 1 ? [...device.caid].sort((a, b) => (a.origin_version < b.origin_version ? 1 : a.origin_version > b.origin_version ? -1 : 0)) : device.caid;
      for (const caid of caids) refusedDeviceIds += take(deviceIds, DeviceIdKind.CAID_MD5, caid.caid_md5);
      refusedDeviceIds += takeCachedId(deviceIds, device);
    }
    return {
      media: 'tencent-sp',
      requestId: request.id,
      requestIdBytes: null,
      isPing: false,
      isTest: false,
      os,
      deviceIds,
      refusedDeviceIds,
      platformExperimentIds: request.exp_ids.slice(),
      secondRequest: false,
      candidateAds: [],
      askedStrategyIds: null,
      wantsJson: false,
    };
  },

  /** The decline names every strategy of the book, which only a decision knows: shed through the engine. */
  shed: () => null,

  encode(context: BidContext, decision: Decision): EncodedReply {
    const strategies: Record<string, StrategyFields> = {};
    if (decision.code === DecisionCode.TAKE) {
      for (const strategy of decision.strategies) strategies[mediaIdOf(decision, strategy)] = yes(strategy);
    }
    for (const id of decision.mediaStrategyIds.values()) strategies[id] ??= { voting: Voting.VOTING_NO! };
    return { body: RTASPResponse.encode({ id: context.requestId, strategy_list: strategies }).finish(), contentType: CONTENT_TYPE };
  },
};

/** Returns 1 when the id is refused (malformed or a placeholder); "" means absent. */
function take(ids: DeviceId[], kind: DeviceIdKind, hex: string): number {
  if (hex === '') return 0;
  return addDeviceId(ids, kind, hex) ? 0 : 1;
}

/** did_md5 usually repeats one of the device's ids, already taken or refused: only another id is added. */
function takeCachedId(ids: DeviceId[], device: DeviceMessage): number {
  const did = device.did_md5;
  if (did === '' || did === device.oaid_md5 || did === device.imei_md5 || did === device.idfa_md5 || did === device.androidid_md5 || did === device.mac_md5) return 0;
  for (const caid of device.caid) if (did === caid.caid_md5) return 0;
  const kind = KIND_BY_DID_TYPE.get(device.did_type);
  return kind === undefined ? 1 : take(ids, kind, did);
}

function toOs(os: number): Os {
  if (os === OsValues.OS_IOS) return Os.IOS;
  if (os === OsValues.OS_ANDROID) return Os.ANDROID;
  return os === OsValues.OS_WINDOWS ? Os.OTHER : Os.UNKNOWN;
}

/** proto3 cannot send a 0 factor or price: each is written only when set (a non-finite factor never). */
function yes(strategy: StrategyDecision): StrategyFields {
  const fields: StrategyFields = { voting: Voting.VOTING_YES! };
  if (Number.isFinite(strategy.coefficient)) fields.user_weight_factor = strategy.coefficient;
  if (strategy.cpcPriceFen > 0) fields.cpc_price = strategy.cpcPriceFen;
  if (strategy.cpaPriceFen > 0) fields.cpa_price = strategy.cpaPriceFen;
  return fields;
}
