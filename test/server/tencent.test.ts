import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { DEVICE_ID_KIND_NAMES, DeviceIdKind } from '../../src/engine/types.js';
import { loadProto, scanIdAndFlag } from '../../src/media/protobuf.js';
import type { SimulatedRequest } from '../../src/media/simulated-request.js';
import { experimentBucket } from '../../src/strategy/experiments.js';
import { DECISIONS_ENV, startEngine, type EngineProcess } from '../support/engine-process.js';
import { loadPersonas, loadStrategyFile, metricSum, post, requestFor, scrape, send, tencent, type PersonaDevice } from '../support/rta-client.js';

/**
 * The Tencent route end to end: a real engine process, requests encoded as the platform encodes them, replies read
 * as the platform reads them. Expected answers come from the demo personas and data/strategies.json.
 */


interface TargetInfo {
  out_target_id: string;
  user_weight_factor?: number;
  dsp_tag?: string;
  dsp_tag_str?: string;
}
interface AdResult {
  adgroup_id: string;
  ignore?: boolean;
  creative_results?: Array<{ creative_id: string; out_raise_factor?: number }>;
}
interface TencentReply {
  request_id: string;
  code: number;
  processing_time_ms?: number;
  response_cache_time?: number;
  dsp_tag?: string;
  dsp_tag_str?: string;
  out_target_id?: string[];
  target_infos?: TargetInfo[];
  ad_results?: AdResult[];
}

const personas = loadPersonas();
const book = loadStrategyFile();
const bidStrategyIds = new Set(book.strategies.filter((s) => s.kind === 'bid' && s.enabled !== false).map((s) => s.id));
const primaryExperiment = book.experiments[0]!;
// The lookup order the engine under test runs with (startEngine passes this environment on).
const idOrder: readonly string[] = loadConfig().engine.deviceIdOrder;
const MEDIA_MIN = 0.2;
const MEDIA_MAX = 5.0;
const LOOKALIKE_EXPERIMENT = 32768;

const proto = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = proto.lookupType('tencent.ad.rta.RtaRequest');

let engine: EngineProcess;

beforeAll(async () => {
  engine = await startEngine(DECISIONS_ENV);
});

afterAll(async () => {
  await engine?.stop();
});

async function ask(request: SimulatedRequest): Promise<TencentReply> {
  const { decoded } = await send(engine, tencent, request);
  return decoded as unknown as TencentReply;
}

/** Posts a request built directly from the proto (for fields our media client does not set). */
async function askRaw(fields: Record<string, unknown>): Promise<TencentReply> {
  const reply = await post(`${engine.mediaUrl}${tencent.path}`, RtaRequest.encode(RtaRequest.fromObject(fields)).finish());
  expect(reply.status, reply.text).toBe(200);
  return tencent.decodeReply(reply.body, reply.contentType) as unknown as TencentReply;
}

function expectTake(reply: TencentReply, request: SimulatedRequest): void {
  expect(reply.request_id).toBe(request.requestId);
  expect(reply.code).toBe(0);
  expect(reply.response_cache_time).toBe(book.cacheTtlSeconds.take);
  expect(reply.response_cache_time).toBeGreaterThanOrEqual(3600);
  expect(reply.response_cache_time).toBeLessThanOrEqual(604800);
  const ids = reply.out_target_id ?? [];
  expect(ids.length).toBeGreaterThan(0);
  expect(new Set(ids).size).toBe(ids.length);
  for (const id of ids) expect(bidStrategyIds, `out_target_id "${id}"`).toContain(id);
  expect((reply.target_infos ?? []).map((t) => t.out_target_id)).toEqual(ids);
  for (const info of reply.target_infos!) {
    expect(info.user_weight_factor, info.out_target_id).toBeGreaterThanOrEqual(MEDIA_MIN);
    expect(info.user_weight_factor, info.out_target_id).toBeLessThanOrEqual(MEDIA_MAX);
  }
}

function expectReject(reply: TencentReply, code: number): void {
  expect(reply.code).toBe(code);
  expect(reply.response_cache_time).toBe(book.cacheTtlSeconds.reject);
  expect(reply.out_target_id ?? []).toEqual([]);
  expect(reply.target_infos ?? []).toEqual([]);
}

const byKind = (device: PersonaDevice, kind: DeviceIdKind) => {
  const id = device.ids.find((i) => i.kind === kind);
  if (!id) throw new Error(`persona device has no ${DEVICE_ID_KIND_NAMES[kind]}`);
  return id;
};

/** The arm the engine must report for a device keyed by `md5`, from the experiment's salt and percentages. */
function expectedArm(md5: string): { name: string; tag: number } {
  const bucket = experimentBucket(primaryExperiment.salt, Buffer.from(md5, 'hex'));
  let upTo = 0;
  for (const arm of primaryExperiment.arms) {
    upTo += Math.round(arm.percent * 100);
    if (bucket < upTo) return arm;
  }
  throw new Error(`bucket ${bucket} is past every arm of ${primaryExperiment.id}`);
}

/** Every persona device's ids are in the store, so its key is the id ranked first by the configured lookup order. */
function lookupKey(device: PersonaDevice): string {
  const ranked = [...device.ids].sort((a, b) => idOrder.indexOf(DEVICE_ID_KIND_NAMES[a.kind]) - idOrder.indexOf(DEVICE_ID_KIND_NAMES[b.kind]));
  return ranked[0]!.md5;
}

describe('personas', () => {
  test.each(personas.prime_prospect.map((device, i) => [i, device] as const))('prime prospect %i is taken by configured strategies', async (_, device) => {
    const request = requestFor(device);
    const reply = await ask(request);
    expectTake(reply, request);
    expect(reply.processing_time_ms).toBeGreaterThanOrEqual(1);
  });

  test.each([
    ['active_borrower', 2],
    ['blacklisted', 3],
    ['high_risk', 4],
  ] as const)('%s devices are rejected with code %i and the reject cache time', async (persona, code) => {
    for (const device of personas[persona]) {
      for (const exps of [[], [LOOKALIKE_EXPERIMENT]]) expectReject(await ask(requestFor(device, { platformExperimentIds: exps })), code);
    }
  });

  test('dormant approved devices are taken by react_dormant alone', async () => {
    for (const device of personas.dormant_approved) {
      const request = requestFor(device);
      const reply = await ask(request);
      expectTake(reply, request);
      expect(reply.out_target_id).toEqual(['react_dormant']);
    }
  });

  test('unknown devices are taken by acq_prime_new, and by the lookalike strategy only inside platform experiment 32768', async () => {
    for (const device of personas.unknown) {
      const plain = requestFor(device);
      const plainReply = await ask(plain);
      expectTake(plainReply, plain);
      expect(plainReply.out_target_id).toEqual(['acq_prime_new']);

      const otherBucket = await ask(requestFor(device, { platformExperimentIds: [12345, 7] }));
      expect(otherBucket.out_target_id).toEqual(['acq_prime_new']);

      const lookalike = requestFor(device, { platformExperimentIds: [7, LOOKALIKE_EXPERIMENT] });
      const lookalikeReply = await ask(lookalike);
      expectTake(lookalikeReply, lookalike);
      expect(lookalikeReply.out_target_id).toEqual(['acq_prime_new', 'acq_platform_lookalike']);
    }
  });
});

describe('device ids', () => {
  test('a request without any id is answered with code 5', async () => {
    expectReject(await ask(requestFor(null)), 5);
    expectReject(await askRaw({ id: 'no-device' }), 5);
  });

  test('ids the platform flags as doubtful are never looked up, and are counted', async () => {
    const device = personas.prime_prospect.find((d) => d.os === 'android')!;
    const oaid = byKind(device, DeviceIdKind.OAID_MD5).md5;
    expect((await ask(requestFor(device))).code).toBe(0);

    const before = metricSum(await scrape(engine), 'rta_refused_device_ids_total', { media: 'tencent' });
    for (const flag of ['OAID_MD5_DOUBTFUL', 'OAID_DOUBTFUL']) {
      const reply = await askRaw({ id: `doubtful-${flag}`, device: { os: 'OS_ANDROID', oaid_md5sum: oaid, doubtful_ids_list: [flag] } });
      expectReject(reply, 5);
    }
    const after = metricSum(await scrape(engine), 'rta_refused_device_ids_total', { media: 'tencent' });
    expect(after - before).toBe(2);
  });

  test('malformed and placeholder md5s are refused, and counted', async () => {
    const before = metricSum(await scrape(engine), 'rta_refused_device_ids_total', { media: 'tencent' });
    const reply = await ask(
      requestFor(null, {
        ids: [
          { kind: DeviceIdKind.OAID_MD5, md5: 'not-an-md5' },
          { kind: DeviceIdKind.IMEI_MD5, md5: 'zz6184967cd1479d363e9a8bd22b46zz' },
          { kind: DeviceIdKind.ANDROID_ID_MD5, md5: createHash('md5').update('').digest('hex') },
        ],
      }),
    );
    expectReject(reply, 5);
    const after = metricSum(await scrape(engine), 'rta_refused_device_ids_total', { media: 'tencent' });
    expect(after - before).toBe(3);
  });

  test('ids are tried in the configured order: an unknown oaid does not hide a known imei', async () => {
    expect(idOrder.indexOf('oaid_md5')).toBeLessThan(idOrder.indexOf('imei_md5'));
    const unknownOaid = byKind(personas.unknown[0]!, DeviceIdKind.OAID_MD5);
    const blacklistedImei = byKind(personas.blacklisted.find((d) => d.ids.some((i) => i.kind === DeviceIdKind.IMEI_MD5))!, DeviceIdKind.IMEI_MD5);
    const borrowerImei = byKind(personas.active_borrower.find((d) => d.ids.some((i) => i.kind === DeviceIdKind.IMEI_MD5))!, DeviceIdKind.IMEI_MD5);

    const blacklisted = await ask(requestFor(null, { ids: [unknownOaid, blacklistedImei] }));
    expectReject(blacklisted, 3);
    // A reject is in no arm: neither the found IMEI's nor the unknown OAID's (engine.test.ts shows the arm follows the found key).
    expect([blacklisted.dsp_tag, blacklisted.dsp_tag_str]).toEqual([undefined, undefined]);
    expectReject(await ask(requestFor(null, { ids: [unknownOaid, borrowerImei] })), 2);

    // Both known: the oaid ranks first and wins.
    const blacklistedOaid = byKind(personas.blacklisted.find((d) => d.ids.length === 1 && d.ids[0]!.kind === DeviceIdKind.OAID_MD5)!, DeviceIdKind.OAID_MD5);
    expectReject(await ask(requestFor(null, { ids: [blacklistedOaid, borrowerImei] })), 3);
  });
});

describe('experiment tag', () => {
  test('the experiment strategy carries the arm its key hashes to on every request, both arms occur; the request the best strategy arm', async () => {
    const seen = new Set<number>();
    for (const persona of Object.values(personas)) {
      for (const device of persona) {
        const arm = expectedArm(lookupKey(device));
        for (const platformExperimentIds of [[], [LOOKALIKE_EXPERIMENT]]) {
          const reply = await ask(requestFor(device, { platformExperimentIds }));
          const infos = reply.target_infos ?? [];
          for (const info of infos) {
            if (primaryExperiment.strategies.includes(info.out_target_id)) {
              expect([Number(info.dsp_tag), info.dsp_tag_str], info.out_target_id).toEqual([arm.tag, arm.name]);
              seen.add(arm.tag);
            } else expect([info.dsp_tag, info.dsp_tag_str], info.out_target_id).toEqual([undefined, undefined]);
          }
          // The request-level tag is that of the strategy bid highest for (the first listed on a tie); none when nothing is taken.
          let best: TargetInfo | undefined;
          for (const info of infos) if (best === undefined || info.user_weight_factor! > best.user_weight_factor!) best = info;
          expect([reply.dsp_tag, reply.dsp_tag_str]).toEqual(best ? [best.dsp_tag, best.dsp_tag_str] : [undefined, undefined]);
        }
      }
    }
    expect([...seen].sort()).toEqual(primaryExperiment.arms.map((a) => a.tag).sort());
  });

  test('no top-level dsp_tag on a reject or on a reply taken only outside the experiment; a prime prospect carries its arm at both levels', async () => {
    // Before the fix every reply carried the first experiment's arm at the top, whoever decided it.
    for (const device of personas.active_borrower) {
      const reply = await ask(requestFor(device));
      expectReject(reply, 2);
      expect([reply.dsp_tag, reply.dsp_tag_str]).toEqual([undefined, undefined]);
    }
    for (const device of personas.dormant_approved) {
      const request = requestFor(device);
      const reply = await ask(request);
      expectTake(reply, request);
      expect(reply.out_target_id).toEqual(['react_dormant']);
      expect([reply.dsp_tag, reply.dsp_tag_str]).toEqual([undefined, undefined]);
      expect([reply.target_infos![0]!.dsp_tag, reply.target_infos![0]!.dsp_tag_str]).toEqual([undefined, undefined]);
    }
    for (const device of personas.prime_prospect) {
      const request = requestFor(device);
      const reply = await ask(request);
      expectTake(reply, request);
      expect(reply.out_target_id).toEqual(['acq_prime_new']);
      const arm = expectedArm(lookupKey(device));
      expect([Number(reply.target_infos![0]!.dsp_tag), reply.target_infos![0]!.dsp_tag_str]).toEqual([arm.tag, arm.name]);
      expect([Number(reply.dsp_tag), reply.dsp_tag_str]).toEqual([arm.tag, arm.name]);
    }
  });
});

describe('request ids that are not valid UTF-8', () => {
  // proto2 strings may carry any bytes; the platform matches our reply to its request by these exact bytes.
  const id = Uint8Array.from([0x74, 0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0x00, 0x7a]);

  test.each([
    ['a ping', { isPing: true }],
    ['a decided request', {}],
  ] as const)('%s echoes them byte for byte, the rest of the reply intact', async (_, overrides) => {
    const request = requestFor(personas.prime_prospect[0]!, overrides);
    // The last occurrence of a field is the one a decoder keeps: the raw id written after the client's own.
    const body = Buffer.concat([tencent.encodeRequest(request).body, protobuf.Writer.create().uint32((1 << 3) | 2).bytes(id).finish()]);
    const reply = await post(`${engine.mediaUrl}${tencent.path}`, body);
    expect(reply.status, reply.text).toBe(200);
    expect(new Uint8Array(scanIdAndFlag(reply.body, 1, 2).id!)).toEqual(id);
    const decoded = tencent.decodeReply(reply.body, reply.contentType) as unknown as TencentReply;
    expect(decoded.code).toBe(0);
    if (overrides.isPing) expect(Object.keys(decoded).sort()).toEqual(['code', 'request_id']);
    else expect(decoded.out_target_id!.length).toBeGreaterThan(0);
  });
});

describe('ping and test traffic', () => {
  test('a ping is answered with exactly request_id and code 0, without any decision', async () => {
    const before = await scrape(engine);
    const request = requestFor(personas.blacklisted[0]!, { isPing: true });
    const reply = await ask(request);
    expect(reply).toEqual({ request_id: request.requestId, code: 0 });
    const after = await scrape(engine);
    expect(metricSum(after, 'rta_requests_total', { media: 'tencent', outcome: 'ping' }) - metricSum(before, 'rta_requests_total', { media: 'tencent', outcome: 'ping' })).toBe(1);
    expect(metricSum(after, 'rta_requests_total', { outcome: 'blacklisted' })).toBe(metricSum(before, 'rta_requests_total', { outcome: 'blacklisted' }));
  });

  test('is_test traffic is answered normally, counted apart, and never counted as strategy decisions', async () => {
    const device = personas.prime_prospect[0]!;
    const before = await scrape(engine);
    const request = requestFor(device, { isTest: true });
    const reply = await ask(request);
    expectTake(reply, request);
    const afterTest = await scrape(engine);
    expect(metricSum(afterTest, 'rta_test_requests_total', { media: 'tencent' }) - metricSum(before, 'rta_test_requests_total', { media: 'tencent' })).toBe(1);
    expect(metricSum(afterTest, 'rta_strategy_decisions_total')).toBe(metricSum(before, 'rta_strategy_decisions_total'));
    expect(metricSum(afterTest, 'rta_bid_coefficient_count')).toBe(metricSum(before, 'rta_bid_coefficient_count'));

    // The same device as live traffic does move both, so the test above could have seen them move.
    const live = await ask(requestFor(device));
    const afterLive = await scrape(engine);
    const taken = live.out_target_id!.length;
    expect(metricSum(afterLive, 'rta_strategy_decisions_total') - metricSum(afterTest, 'rta_strategy_decisions_total')).toBe(taken);
    expect(metricSum(afterLive, 'rta_bid_coefficient_count') - metricSum(afterTest, 'rta_bid_coefficient_count')).toBe(taken);
    expect(metricSum(afterLive, 'rta_test_requests_total', { media: 'tencent' })).toBe(metricSum(afterTest, 'rta_test_requests_total', { media: 'tencent' }));
  });
});

describe('second request (ADLIST_REQUEST)', () => {
  const device = personas.prime_prospect.find((d) => d.os === 'android')!;
  const ABOVE_2_32 = String(2 ** 40 + 7);
  const ads: SimulatedRequest['ads'] = [
    {
      adGroupId: '9001',
      strategyId: '',
      creatives: [
        { creativeId: '710101', templateId: 311 },
        { creativeId: '710100', templateId: 450 },
        { creativeId: ABOVE_2_32, templateId: 1 },
      ],
    },
    { adGroupId: '9002', strategyId: 'not_a_configured_strategy', creatives: [{ creativeId: '5', templateId: 1 }] },
    { adGroupId: String(2 ** 32 + 1000), strategyId: 'acq_prime_new', creatives: [{ creativeId: '7', templateId: 311 }] },
  ];

  test('ad_results answer every candidate ad, naming only the creatives the request carried', async () => {
    const request = requestFor(device, { secondRequest: true, ads });
    const reply = await ask(request);
    expectTake(reply, request);
    const results = reply.ad_results ?? [];
    expect(results.map((r) => r.adgroup_id)).toEqual(ads.map((a) => a.adGroupId));
    for (const [i, result] of results.entries()) {
      const sent = ads[i]!.creatives.map((c) => c.creativeId);
      const named = (result.creative_results ?? []).map((c) => c.creative_id);
      for (const id of named) expect(sent, `ad ${result.adgroup_id} names creative ${id}`).toContain(id);
      if (result.ignore) continue;
      expect(named).toEqual(sent);
      for (const creative of result.creative_results!) {
        expect(creative.out_raise_factor, creative.creative_id).toBeGreaterThanOrEqual(MEDIA_MIN);
        expect(creative.out_raise_factor, creative.creative_id).toBeLessThanOrEqual(MEDIA_MAX);
      }
    }
  });

  test('an ad bound to a strategy id we do not have is left to the platform (ignore)', async () => {
    const reply = await ask(requestFor(device, { secondRequest: true, ads }));
    const [unbound, foreign, bound] = reply.ad_results!;
    expect(foreign!.ignore).toBe(true);
    expect(foreign!.creative_results ?? []).toEqual([]);
    expect(unbound!.ignore ?? false).toBe(false);
    expect(bound!.ignore ?? false).toBe(false);
  });

  test('64-bit ids above 2^32 echo back exactly', async () => {
    const reply = await ask(requestFor(device, { secondRequest: true, ads }));
    expect(reply.ad_results![0]!.creative_results!.map((c) => c.creative_id)).toContain(ABOVE_2_32);
    expect(reply.ad_results![2]!.adgroup_id).toBe(String(2 ** 32 + 1000));
  });

  test('a creative id above 2^53 is refused with 400 id_out_of_range and counted', async () => {
    const before = metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason: 'id_out_of_range' });
    const { body } = tencent.encodeRequest(
      requestFor(device, { secondRequest: true, ads: [{ adGroupId: '1', strategyId: '', creatives: [{ creativeId: '9007199254740993', templateId: 1 }] }] }),
    );
    const reply = await post(`${engine.mediaUrl}${tencent.path}`, body);
    expect(reply.status).toBe(400);
    expect(reply.text).toMatch(/^id_out_of_range: .*9007199254740993.*\n$/);
    expect(reply.text.trimEnd()).not.toContain('\n');
    const after = metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason: 'id_out_of_range' });
    expect(after - before).toBe(1);
  });
});
