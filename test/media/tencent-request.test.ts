import protobuf from 'protobufjs';
import { describe, expect, test } from 'vitest';
import { DeviceIdKind, Os, type BidContext, type CandidateAd, type CandidateCreative, type DeviceId } from '../../src/engine/types.js';
import { addDeviceId } from '../../src/media/device-ids.js';
import { decodeStrict, loadProto, scanIdAndFlag, strictType, uint64ToNumber, type Uint64 } from '../../src/media/protobuf.js';
import { tencentAdapter } from '../../src/media/tencent/adapter.js';
import { PLACEHOLDER_KEYS_HEX } from '../../src/store/device-key.js';
import { seededRandom } from '../support/seeded-random.js';

/**
 * The adapter reads requests in one pass (src/media/tencent/request.ts). The reference here is how it read them
 * before: protobufjs's decoding after the same wire check, then a mapping of the message, with the enum numbers
 * taken from the .proto. Both must agree on every request, or fail with the same error.
 */

const root = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const RtaRequestType = root.lookupType('tencent.ad.rta.RtaRequest');
const RtaRequest = strictType(root, 'tencent.ad.rta.RtaRequest');
const OsValues = root.lookupEnum('tencent.ad.rta.RtaRequest.Device.OperatingSystem').values;
const Doubtful = root.lookupEnum('tencent.ad.rta.RtaRequest.Device.DoubtfulIdType').values;
const ADLIST_REQUEST = root.lookupEnum('tencent.ad.rta.RtaRequest.RequestInfo.RequestType').values.ADLIST_REQUEST!;

interface Message {
  id: string;
  is_ping: boolean;
  is_test: boolean;
  device: {
    os: number;
    idfa_md5sum: string;
    imei_md5sum: string;
    android_id_md5sum: string;
    mac_md5sum: string;
    oaid_md5sum: string;
    doubtful_ids_list: number[];
    qaid_infos: Array<{ version: number; qaid_md5sum: string }>;
  } | null;
  request_info: { request_type: number } | null;
  exps: Array<{ exp_id: number }>;
  ad_infos: Array<{ adgroup_id: Uint64; advertiser_id: number; out_target_id: string; creative_infos: Array<{ creative_id: Uint64; crt_template_id: number }> }>;
}

function take(ids: DeviceId[], kind: DeviceIdKind, hex: string, doubtful: number): number {
  if (hex === '') return 0;
  return doubtful !== 0 || !addDeviceId(ids, kind, hex) ? 1 : 0;
}

function referenceDecode(body: Uint8Array): BidContext {
  const request = decodeStrict<Message>(RtaRequest, body);
  const deviceIds: DeviceId[] = [];
  let refusedDeviceIds = 0;
  let os: Os = Os.UNKNOWN;
  const device = request.device;
  if (device !== null) {
    os = device.os === OsValues.OS_IOS ? Os.IOS : device.os === OsValues.OS_ANDROID ? Os.ANDROID : device.os === OsValues.OS_UNKNOWN ? Os.UNKNOWN : Os.OTHER;
    let doubtful = 0;
    for (const id of device.doubtful_ids_list) doubtful |= 1 << id;
    refusedDeviceIds += take(deviceIds, DeviceIdKind.OAID_MD5, device.oaid_md5sum, doubtful & ((1 << Doubtful.OAID_MD5_DOUBTFUL!) | (1 << Doubtful.OAID_DOUBTFUL!)));
    refusedDeviceIds += take(deviceIds, DeviceIdKind.IMEI_MD5, device.imei_md5sum, doubtful & (1 << Doubtful.IMEI_MD5_DOUBTFUL!));
    refusedDeviceIds += take(deviceIds, DeviceIdKind.IDFA_MD5, device.idfa_md5sum, doubtful & (1 << Doubtful.IDFA_MD5_DOUBTFUL!));
    refusedDeviceIds += take(deviceIds, DeviceIdKind.ANDROID_ID_MD5, device.android_id_md5sum, doubtful & (1 << Doubtful.ANDROIDID_MD5_DOUBTFUL!));
    refusedDeviceIds += take(deviceIds, DeviceIdKind.MAC_MD5, device.mac_md5sum, doubtful & (1 << Doubtful.MAC_MD5_DOUBTFUL!));
    const caids = device.qaid_infos.length > 1 ? [...device.qaid_infos].sort((a, b) => b.version - a.version) : device.qaid_infos;
    for (const qaid of caids) refusedDeviceIds += take(deviceIds, DeviceIdKind.CAID_MD5, qaid.qaid_md5sum, doubtful & (1 << Doubtful.QAID_DOUBTFUL!));
  }
  const platformExperimentIds: number[] = [];
  for (const exp of request.exps) if (Object.hasOwn(exp, 'exp_id')) platformExperimentIds.push(exp.exp_id);
  const candidateAds: CandidateAd[] = request.ad_infos.map((ad) => {
    const creatives: CandidateCreative[] = ad.creative_infos.map((c) => ({
      creativeId: uint64ToNumber(c.creative_id, 'ad_infos.creative_infos.creative_id'),
      templateId: c.crt_template_id,
    }));
    return { adGroupId: uint64ToNumber(ad.adgroup_id, 'ad_infos.adgroup_id'), advertiserId: ad.advertiser_id, outTargetId: ad.out_target_id, creatives };
  });
  const idBytes = scanIdAndFlag(body, 1, 2).id;
  return {
    media: 'tencent',
    requestId: request.id,
    requestIdBytes: request.id.includes('\uFFFD') && idBytes !== null ? new Uint8Array(idBytes) : null,
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
}

const outcome = (decode: (body: Uint8Array) => BidContext, body: Uint8Array) => {
  try {
    return { context: decode(body) };
  } catch (error) {
    return { error: `${(error as { reason?: string }).reason}: ${(error as Error).message}` };
  }
};

const HEX = 'c4ca4238a0b923820dcc509a6f75849b';
function randomRequest(random: () => number): Uint8Array {
  const pick = <T>(values: readonly T[]) => values[Math.floor(random() * values.length)]!;
  const maybe = <T>(value: () => T, p = 0.5) => (random() < p ? value() : undefined);
  const md5 = () => pick([HEX, HEX.toUpperCase(), ...PLACEHOLDER_KEYS_HEX, '', 'abc', `${HEX.slice(0, 31)}g`, `${HEX.slice(0, 30)}é`, `${HEX}0`]);
  const uint64 = () => pick([0, 1, 127, 2 ** 32 + 5, 2 ** 53 - 1, '9007199254740992', '18446744073709551615']);
  const device = () => ({
    os: maybe(() => pick([0, 1, 2, 3, 5, 6, 68, 99, -1])),
    idfa_md5sum: maybe(md5),
    imei_md5sum: maybe(md5),
    android_id_md5sum: maybe(md5),
    mac_md5sum: maybe(md5),
    oaid_md5sum: maybe(md5),
    ip: maybe(() => '10.0.0.1', 0.2),
    doubtful_ids_list: maybe(() => Array.from({ length: Math.floor(random() * 3) }, () => pick([0, 1, 2, 3, 4, 5, 6, 7, 36, 40, -28]))),
    qaid_infos: maybe(() => Array.from({ length: Math.floor(random() * 4) }, () => ({ version: maybe(() => pick([0, 20220111, 20230330])), qaid_md5sum: maybe(md5), origin_version: maybe(() => '1') }))),
  });
  const message = {
    id: maybe(() => pick(['0000002a0001e2405f3a9c7be1d04c2f', '', 'ü-id', 'x'.repeat(200)]), 0.9),
    is_ping: maybe(() => random() < 0.5, 0.2),
    is_test: maybe(() => random() < 0.5, 0.2),
    device: maybe(device, 0.9),
    siteset_id: maybe(uint64, 0.1),
    request_info: maybe(() => ({ request_type: maybe(() => pick([0, 1, 2, 7, -2])) }), 0.4),
    exps: maybe(() => Array.from({ length: Math.floor(random() * 4) }, () => ({ exp_id: maybe(() => pick([0, 1, 32768, 4294967295])) }))),
    ad_infos: maybe(
      () =>
        Array.from({ length: Math.floor(random() * 3) }, () => ({
          adgroup_id: maybe(uint64),
          advertiser_id: maybe(() => pick([0, 7, 4294967295])),
          out_target_id: maybe(() => pick(['7001', '', '策略'])),
          creative_infos: maybe(() => Array.from({ length: Math.floor(random() * 3) }, () => ({ creative_id: maybe(uint64), crt_template_id: maybe(() => pick([0, 311])) }))),
          product_infos: maybe(() => [{ product_lib: 1, out_product_id: 'p' }], 0.2),
        })),
      0.4,
    ),
    crt_template_id: maybe(() => [311, 312], 0.2),
    rta_trace_id_list: maybe(() => ['a', 'b'], 0.2),
  };
  const parts = [RtaRequestType.encode(RtaRequestType.fromObject(message)).finish()];
  // A second copy of some fields: singular ones must come out as the last, a repeated device as the second whole.
  if (random() < 0.3) parts.push(RtaRequestType.encode(RtaRequestType.fromObject({ device: device(), id: 'second', request_info: {} })).finish());
  if (random() < 0.1) parts.push(Uint8Array.of((2 << 3) | 0, 0x80, 0x80, 0x80, 0x80, 0x10));
  // Enum numbers the closed enums do not have (protobufjs's encoder would not write them from an object).
  if (random() < 0.3) {
    const odd = () => pick([68, 36, 7, 6, -1, 3]);
    const device = protobuf.Writer.create().uint32(1 << 3).int32(odd()).uint32(9 << 3).int32(odd()).uint32((9 << 3) | 2).fork().int32(odd()).int32(odd()).ldelim().finish();
    const info = protobuf.Writer.create().uint32(1 << 3).int32(pick([1, 2, 5, -3])).finish();
    parts.push(protobuf.Writer.create().uint32((5 << 3) | 2).bytes(device).uint32((8 << 3) | 2).bytes(info).finish());
  }
  if (random() < 0.1) parts.push(Uint8Array.of((1 << 3) | 2, 3, 0xff, 0xfe, 0x41));
  return Buffer.concat(parts);
}

describe('Tencent request reader', () => {
  test('agrees with protobufjs and the old mapping on 5,000 seeded requests', () => {
    const random = seededRandom(20261203);
    let decoded = 0;
    for (let i = 0; i < 5000; i++) {
      const body = randomRequest(random);
      const expected = outcome(referenceDecode, body);
      if ('context' in expected) decoded++;
      expect(outcome(tencentAdapter.decode, body), `request ${i}: ${Buffer.from(body).toString('hex')}`).toEqual(expected);
    }
    // Most decode; the few refused are ids beyond 2^53.
    expect(decoded).toBeGreaterThan(3000);
    expect(decoded).toBeLessThan(5000);
  });

  test('agrees on requests with bytes changed, cut or repeated, refusals included', () => {
    const random = seededRandom(99);
    let refused = 0;
    for (let i = 0; i < 5000; i++) {
      const body = Buffer.from(randomRequest(random));
      const mutated = random() < 0.5 ? body.subarray(0, Math.floor(random() * body.length)) : body;
      for (let k = 0; k < 1 + Math.floor(random() * 3); k++) if (mutated.length > 0) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
      const expected = outcome(referenceDecode, mutated);
      if ('error' in expected) refused++;
      expect(outcome(tencentAdapter.decode, mutated), `request ${i}: ${mutated.toString('hex')}`).toEqual(expected);
    }
    // Both kinds of case were met: the mutations are not all refused, nor all harmless.
    expect(refused).toBeGreaterThan(500);
    expect(refused).toBeLessThan(4500);
  });

  test('the device ids are read from their hex bytes into keys the store can find', () => {
    const body = RtaRequestType.encode(RtaRequestType.fromObject({ id: 'r', device: { os: 2, oaid_md5sum: HEX, imei_md5sum: HEX.toUpperCase() } })).finish();
    const context = tencentAdapter.decode(body, '');
    expect(context.deviceIds.map((id) => [id.kind, Buffer.from(id.key).toString('hex')])).toEqual([
      [DeviceIdKind.OAID_MD5, HEX],
      [DeviceIdKind.IMEI_MD5, HEX],
    ]);
    expect(context.os).toBe(Os.ANDROID);
  });
});

