import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceIdKind } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import { startEngine, type EngineProcess } from '../support/engine-process.js';
import { RawConnection, rawPost } from '../support/raw-http.js';
import { loadPersonas, loadStrategyFile, metricSum, native, post, requestFor, scrape, send, tencent } from '../support/rta-client.js';

/**
 * The scoring deadline, made deterministic: a 1 us deadline is over before any scores can be back, so every
 * request that needs scoring gets the fallback, while decisions that need no scores are unaffected. "reject" runs
 * in scoring-pool mode, where the late scores really arrive later from a worker and must be discarded; "neutral"
 * in the default app-per-thread mode, where scoring is inline.
 */

const engineEnv = (fallback: 'reject' | 'neutral', mode: 'scoring-pool' | 'app-per-thread') => ({
  RTA_SERVER_MODE: mode,
  RTA_SCORE_DEADLINE_MICROS: '1',
  // Under test is the late score's answer; a shed answer looks alike (code 6) for another reason.
  RTA_SHED_AFTER_MICROS: '0',
  RTA_FALLBACK: fallback,
});

interface TencentReply {
  request_id: string;
  code: number;
  response_cache_time?: number;
  dsp_tag?: string;
  out_target_id?: string[];
  target_infos?: Array<{ out_target_id: string; user_weight_factor?: number }>;
}

const personas = loadPersonas();
const book = loadStrategyFile();
const prospect = personas.prime_prospect.find((d) => d.os === 'android')!;
const prospectOaid = prospect.ids.find((i) => i.kind === DeviceIdKind.OAID_MD5)!.md5;
const proto = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = proto.lookupType('tencent.ad.rta.RtaRequest');

/** The prime prospect with no OS: taken by acq_prime_new on its profile alone, so it must be scored. */
function slowRequestBody(id: string): Uint8Array {
  return RtaRequest.encode(RtaRequest.fromObject({ id, device: { oaid_md5sum: prospectOaid } })).finish();
}

async function askSlow(engine: EngineProcess, id: string): Promise<TencentReply> {
  const reply = await post(`${engine.mediaUrl}${tencent.path}`, slowRequestBody(id));
  expect(reply.status, reply.text).toBe(200);
  return tencent.decodeReply(reply.body, reply.contentType) as unknown as TencentReply;
}

describe('fallback "reject"', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngine(engineEnv('reject', 'scoring-pool'));
  });

  afterAll(async () => {
    await engine?.stop();
  });

  test('a device whose scores miss the deadline gets code 6 with the fallback cache time, and is counted', async () => {
    const before = await scrape(engine);
    const reply = await askSlow(engine, 'slow-1');
    expect(reply.request_id).toBe('slow-1');
    expect(reply.code).toBe(6);
    expect(reply.response_cache_time).toBe(book.cacheTtlSeconds.fallback);
    expect(reply.out_target_id ?? []).toEqual([]);
    // A fallback takes nothing, so it names no experiment arm: the media must not count the device in a split.
    expect(reply.dsp_tag).toBeUndefined();
    const after = await scrape(engine);
    const delta = (name: string, labels: Record<string, string>) => metricSum(after, name, labels) - metricSum(before, name, labels);
    expect(delta('rta_deadline_fallbacks_total', { media: 'tencent' })).toBe(1);
    expect(delta('rta_requests_total', { media: 'tencent', outcome: 'deadline_fallback' })).toBe(1);
    expect(delta('rta_strategy_decisions_total', {})).toBe(0);
  });

  test('the native reply names the reason and no model version', async () => {
    const reply = await post(`${engine.mediaUrl}${native.path}`, JSON.stringify({ requestId: 'slow-json', deviceIds: [{ type: 'OAID_MD5', md5: prospectOaid }] }), 'application/json');
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text)).toMatchObject({ requestId: 'slow-json', code: 6, reason: 'deadline_fallback', modelVersion: '', decisions: [] });
  });

  test('the late scores never produce a second reply, and the engine keeps answering', async () => {
    const connection = await RawConnection.open(engine.mediaUrl);
    for (const id of ['late-1', 'late-2', 'late-3']) {
      await connection.write(rawPost(tencent.path, slowRequestBody(id)));
      const reply = await connection.readReply();
      expect(reply.status).toBe(200);
      expect(tencent.decodeReply(reply.body, '')).toMatchObject({ request_id: id, code: 6 });
      // Long enough for the worker's late scores to come back (and be discarded).
      await new Promise((r) => setTimeout(r, 20));
    }
    connection.destroy();

    // A burst larger than the pool's batch buffers: every request is still answered.
    const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => askSlow(engine, `burst-${i}`)));
    expect(burst.map((r) => r.code)).toEqual(new Array(12).fill(6));

    // Decisions that need no scores are unaffected, and the process is still up.
    expect((await send(engine, tencent, requestFor(personas.blacklisted[0]!))).decoded).toMatchObject({ code: 3 });
    expect((await send(engine, tencent, requestFor(personas.blacklisted[0]!, { isPing: true }))).decoded).toMatchObject({ code: 0 });
    expect(engine.child.exitCode).toBeNull();
    expect((await askSlow(engine, 'after-burst')).code).toBe(6);
  });
});

describe('fallback "neutral"', () => {
  let engine: EngineProcess;

  beforeAll(async () => {
    engine = await startEngine(engineEnv('neutral', 'app-per-thread'));
  });

  afterAll(async () => {
    await engine?.stop();
  });

  test('a device whose scores miss the deadline is taken at coefficient exactly 1.0 by the strategies its profile allows', async () => {
    const before = await scrape(engine);
    const reply = await askSlow(engine, 'neutral-1');
    expect(reply.code).toBe(0);
    expect(reply.response_cache_time).toBe(book.cacheTtlSeconds.fallback);
    expect(reply.out_target_id).toEqual(['acq_prime_new']);
    expect(reply.target_infos!.map((t) => t.user_weight_factor)).toEqual([1]);
    const after = await scrape(engine);
    expect(metricSum(after, 'rta_deadline_fallbacks_total', { media: 'tencent' }) - metricSum(before, 'rta_deadline_fallbacks_total', { media: 'tencent' })).toBe(1);
  });

  test('the native reply says deadline_fallback, uses the default creative and names no model version', async () => {
    const reply = await post(`${engine.mediaUrl}${native.path}`, JSON.stringify({ deviceIds: [{ type: 'OAID_MD5', md5: prospectOaid }] }), 'application/json');
    expect(reply.status).toBe(200);
    const creatives = book.strategies.find((s) => s.id === 'acq_prime_new')!.creatives!;
    expect(JSON.parse(reply.text)).toMatchObject({
      code: 0,
      reason: 'deadline_fallback',
      modelVersion: '',
      decisions: [{ strategyId: 'acq_prime_new', coefficient: 1, creativeId: String(creatives.at(-1)!.id) }],
    });
  });
});
