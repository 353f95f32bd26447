import { afterEach, describe, expect, test } from 'vitest';
import { startEngine, type EngineProcess } from '../support/engine-process.js';
import { rawPost, RawConnection } from '../support/raw-http.js';
import { loadPersonas, loadStrategyFile, metricSum, requestFor, scrape, tencent } from '../support/rta-client.js';

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

/** Two requests for the same wanted device in one write; both replies decoded as the platform decodes them. */
async function pipelinedPair(engine: EngineProcess) {
  const { body } = tencent.encodeRequest(requestFor(prospect, { requestId: 'first' }));
  const second = tencent.encodeRequest(requestFor(prospect, { requestId: 'second' })).body;
  const connection = await RawConnection.open(engine.mediaUrl);
  await connection.write(Buffer.concat([rawPost('/rta/tencent', body), rawPost('/rta/tencent', second)]));
  const replies = [await connection.readReply(), await connection.readReply()];
  connection.destroy();
  return replies.map((reply) => ({ status: reply.status, ...tencent.decodeReply(reply.body) }));
}

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

  test('with shedding switched off (0), both pipelined requests are decided', async () => {
    engine = await startEngine({ RTA_APP_THREADS: '1', RTA_SCORE_DEADLINE_MICROS: '50000', RTA_SHED_AFTER_MICROS: '0' });
    const replies = await pipelinedPair(engine);
    for (const reply of replies) expect(reply).toMatchObject({ status: 200, code: 0 });
    expect(metricSum(await scrape(engine), 'rta_requests_total', { outcome: 'shed' })).toBe(0);
  });
});
