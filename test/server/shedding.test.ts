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

/**
 * A decided request, a filler and then `probe`, in one write; the replies decoded as the media decode them. The
 * filler makes the probe's shedding independent of the machine: a thread descheduled for a while between the first
 * two requests looks idle and may start a new turn at the filler, but the probe then comes close behind it.
 */
async function pipelined(engine: EngineProcess, client: MediaClient, probe: Buffer | Uint8Array, options: { json?: boolean } = {}) {
  const first = client.encodeRequest(requestFor(prospect, { requestId: 'first' }), options);
  const filler = client.encodeRequest(requestFor(prospect, { requestId: 'filler' }), options);
  const headers = { 'Content-Type': first.contentType };
  const connection = await RawConnection.open(engine.mediaUrl);
  await connection.write(Buffer.concat([first.body, filler.body, probe].map((body) => rawPost(client.path, body, { headers }))));
  const replies = [await connection.readReply(), await connection.readReply(), await connection.readReply()];
  connection.destroy();
  return replies.map((reply) => ({
    status: reply.status,
    ...(reply.status === 200 ? client.decodeReply(reply.body, reply.headers.get('content-type') ?? '') : { text: reply.body.toString() }),
  })) as Array<Record<string, unknown> & { status: number }>;
}

const pipelinedTencent = (engine: EngineProcess) => pipelined(engine, tencent, tencent.encodeRequest(requestFor(prospect, { requestId: 'second' })).body);
const shedAmong = (replies: Array<Record<string, unknown>>) => replies.filter((r) => r.code === 6 || r.reason === 'shed').length;

describe('load shedding', () => {
  test('a request met late in a busy turn gets the shed answer: 200, a reject with the fallback cache time, counted', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SHED_AFTER_MICROS: '1', RTA_SCORE_DEADLINE_MICROS: '50000' });
    const replies = await pipelinedTencent(engine);
    const [first, , second] = replies;
    expect(first).toMatchObject({ status: 200, request_id: 'first', code: 0 });
    expect((first!.out_target_id as string[]).length).toBeGreaterThan(0);
    expect(second).toMatchObject({ status: 200, request_id: 'second', code: 6, response_cache_time: loadStrategyFile().cacheTtlSeconds.fallback });
    expect(second!.out_target_id ?? []).toEqual([]);
    expect(metricSum(await scrape(engine), 'rta_requests_total', { media: 'tencent', outcome: 'shed' })).toBe(shedAmong(replies));
    // The next turn starts afresh: recovery needs nothing but the turn ending.
    const [again] = await pipelinedTencent(engine);
    expect(again).toMatchObject({ request_id: 'first', code: 0 });
  });

  test('every protocol sheds with its own well-formed decline: a ping stays a ping, garbage is still a 400', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SHED_AFTER_MICROS: '1', RTA_SCORE_DEADLINE_MICROS: '50000' });
    const fallbackTtl = loadStrategyFile().cacheTtlSeconds.fallback;
    const seen: Array<Record<string, unknown>> = [];
    const probe = async (client: MediaClient, body: Uint8Array, options: { json?: boolean } = {}) => {
      const replies = await pipelined(engine!, client, body, options);
      seen.push(...replies);
      return replies[2];
    };
    const ping = tencent.encodeRequest(requestFor(prospect, { requestId: 'ping', isPing: true })).body;
    expect(await probe(tencent, ping)).toEqual({ status: 200, request_id: 'ping', code: 0 });
    const nativeSecond = native.encodeRequest(requestFor(prospect, { requestId: 'second' })).body;
    expect(await probe(native, nativeSecond)).toMatchObject({ status: 200, request_id: 'second', code: 6, reason: 'shed', cache_ttl_seconds: fallbackTtl });
    const jsonSecond = native.encodeRequest(requestFor(prospect, { requestId: 'second' }), { json: true }).body;
    expect(await probe(native, jsonSecond, { json: true })).toMatchObject({ status: 200, requestId: 'second', code: 6, reason: 'shed', cacheTtlSeconds: fallbackTtl });
    const garbage = Buffer.from([0x0a, 0x05, 0x61]);
    expect(await probe(tencent, garbage)).toMatchObject({ status: 400, text: expect.stringMatching(/^malformed_protobuf: /) });
    // A shed ping is counted as shed too: its reply is the ping's.
    expect(metricSum(await scrape(engine), 'rta_requests_total', { outcome: 'shed' })).toBe(shedAmong(seen) + 1);
  });

  test('with shedding switched off (0), every pipelined request is decided', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SCORE_DEADLINE_MICROS: '50000', RTA_SHED_AFTER_MICROS: '0' });
    const replies = await pipelinedTencent(engine);
    for (const reply of replies) expect(reply).toMatchObject({ status: 200, code: 0 });
    expect(metricSum(await scrape(engine), 'rta_requests_total', { outcome: 'shed' })).toBe(0);
  });
});
