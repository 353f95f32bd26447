import { afterEach, describe, expect, test } from 'vitest';
import { startEngine, type EngineProcess } from '../support/engine-process.js';
import { rawPost, RawConnection } from '../support/raw-http.js';
import type { MediaClient } from '../../src/media/simulated-request.js';
import { loadPersonas, loadStrategyFile, metricSum, native, requestFor, scrape, tencent } from '../support/rta-client.js';

/**
 * Load shedding by the age of the serving thread's event-loop turn. Pipelined requests reach the engine in one
 * turn, one after the other, so the second is met after the first has been decided: with a threshold far below any
 * decision's cost it is shed, with shedding off it is decided. Nothing here depends on how fast the machine is,
 * only on a decision taking longer than a microsecond (the default threshold, 1 ms, would).
 */

let engine: EngineProcess | undefined;
afterEach(async () => {
  await engine?.stop();
  engine = undefined;
});

const prospect = loadPersonas().prime_prospect[0]!;

/** A decided request, then `second` in the same write: both replies, decoded as the media decode them. */
async function pipelined(engine: EngineProcess, client: MediaClient, second: Buffer | Uint8Array, options: { json?: boolean } = {}) {
  const first = client.encodeRequest(requestFor(prospect, { requestId: 'first' }), options);
  const headers = { 'Content-Type': first.contentType };
  const connection = await RawConnection.open(engine.mediaUrl);
  await connection.write(Buffer.concat([rawPost(client.path, first.body, { headers }), rawPost(client.path, second, { headers })]));
  const replies = [await connection.readReply(), await connection.readReply()];
  connection.destroy();
  return replies.map((reply) => ({
    status: reply.status,
    ...(reply.status === 200 ? client.decodeReply(reply.body, reply.headers.get('content-type') ?? '') : { text: reply.body.toString() }),
  }));
}

const pipelinedPair = (engine: EngineProcess) => pipelined(engine, tencent, tencent.encodeRequest(requestFor(prospect, { requestId: 'second' })).body);

describe('load shedding', () => {
  test('a request met late in a busy turn gets the shed answer: 200, a reject with the fallback cache time, counted', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SHED_AFTER_MICROS: '1', RTA_SCORE_DEADLINE_MICROS: '50000' });
    const [first, second] = await pipelinedPair(engine);
    expect(first).toMatchObject({ status: 200, request_id: 'first', code: 0 });
    expect(first!.out_target_id!.length).toBeGreaterThan(0);
    expect(second).toMatchObject({ status: 200, request_id: 'second', code: 6, response_cache_time: loadStrategyFile().cacheTtlSeconds.fallback });
    expect(second!.out_target_id ?? []).toEqual([]);
    expect(metricSum(await scrape(engine), 'rta_requests_total', { media: 'tencent', outcome: 'shed' })).toBe(1);
    // The next turn starts afresh: recovery needs nothing but the turn ending.
    const [again] = await pipelinedPair(engine);
    expect(again).toMatchObject({ request_id: 'first', code: 0 });
  });

  test('every protocol sheds with its own well-formed decline: a ping stays a ping, garbage is still a 400', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SHED_AFTER_MICROS: '1', RTA_SCORE_DEADLINE_MICROS: '50000' });
    const fallbackTtl = loadStrategyFile().cacheTtlSeconds.fallback;
    const ping = tencent.encodeRequest(requestFor(prospect, { requestId: 'ping', isPing: true })).body;
    expect((await pipelined(engine, tencent, ping))[1]).toEqual({ status: 200, request_id: 'ping', code: 0 });
    const nativeSecond = native.encodeRequest(requestFor(prospect, { requestId: 'second' })).body;
    expect((await pipelined(engine, native, nativeSecond))[1]).toMatchObject({ status: 200, request_id: 'second', code: 6, reason: 'shed', cache_ttl_seconds: fallbackTtl });
    const jsonSecond = native.encodeRequest(requestFor(prospect, { requestId: 'second' }), { json: true }).body;
    expect((await pipelined(engine, native, jsonSecond, { json: true }))[1]).toMatchObject({ status: 200, requestId: 'second', code: 6, reason: 'shed', cacheTtlSeconds: fallbackTtl });
    const garbage = Buffer.from([0x0a, 0x05, 0x61]);
    expect((await pipelined(engine, tencent, garbage))[1]).toMatchObject({ status: 400, text: expect.stringMatching(/^malformed_protobuf: /) });
    expect(metricSum(await scrape(engine), 'rta_requests_total', { outcome: 'shed' })).toBe(3);
  });

  test('with shedding switched off (0), both pipelined requests are decided', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SCORE_DEADLINE_MICROS: '50000', RTA_SHED_AFTER_MICROS: '0' });
    const replies = await pipelinedPair(engine);
    for (const reply of replies) expect(reply).toMatchObject({ status: 200, code: 0 });
    expect(metricSum(await scrape(engine), 'rta_requests_total', { outcome: 'shed' })).toBe(0);
  });
});
