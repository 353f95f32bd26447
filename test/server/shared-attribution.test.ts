import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DECISIONS_ENV, startEngine, type EngineProcess } from '../support/engine-process.js';
import { REDIS_SERVER_FOUND, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { loadPersonas, metricSum, post, requestFor, scrape, send, tencent, waitForMetric } from '../support/rta-client.js';

/**
 * Two engine nodes sharing their decision memory in a real Redis: a decision made by one node joins the events
 * posted to the other, a duplicate posted back to the first is still a duplicate, and a Redis that has gone away
 * gets the events a clear refusal (to send again) while both nodes keep serving the media.
 */
const prime = loadPersonas().prime_prospect.find((d) => d.os === 'android')!;

describe.skipIf(!REDIS_SERVER_FOUND)('attribution shared by two nodes through Redis', () => {
  let redis: RedisServer;
  let client: Redis;
  let a: EngineProcess;
  let b: EngineProcess;
  const node = (name: string) => ({
    ...DECISIONS_ENV,
    RTA_DECISION_LOG_FLUSH_MS: '10',
    RTA_DECISION_LOG_DIR: mkdtempSync(join(tmpdir(), `rta-shared-${name}-log-`)),
    RTA_ATTRIBUTION_DIR: mkdtempSync(join(tmpdir(), `rta-shared-${name}-events-`)),
    RTA_STRATEGY_HISTORY: mkdtempSync(join(tmpdir(), `rta-shared-${name}-history-`)),
    RTA_ATTRIBUTION_REDIS_URL: redis.url,
  });
  const events = (engine: EngineProcess, lines: object[]) => post(`${engine.adminUrl}/events`, lines.map((l) => JSON.stringify(l)).join('\n'), 'application/x-ndjson');

  beforeAll(async () => {
    redis = await startRedisServer();
    client = new Redis(redis.url);
    [a, b] = await Promise.all([startEngine(node('a')), startEngine(node('b'))]);
  }, 120_000);
  afterAll(async () => {
    client?.disconnect();
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  test("an event posted to either node joins the decision of the node that made it, once", async () => {
    const { decoded } = await send(a, tencent, requestFor(prime, { requestId: 'shared-1' }));
    const strategy = (decoded.target_infos as { out_target_id: string }[])[0]!.out_target_id;
    // Node a writes its decisions to Redis as it reads its own log; a batch posted to it answers once they are written.
    expect(await waitForMetric(a, 'rta_attribution_log_records_total', {}, 1, 10_000)).toBe(1);
    expect(JSON.parse((await events(a, [{ trace_id: 'not-yet', media: 'tencent', event: 'click', event_time: Date.now() }])).text)).toMatchObject({ unmatched: 1 });
    const ttl = await client.pttl('rta:attribution:decision:{tencent:shared-1}');
    expect(ttl).toBeGreaterThan(6.9 * 86_400_000);
    expect(ttl).toBeLessThanOrEqual(7 * 86_400_000);

    const lines = [
      { trace_id: 'shared-1', media: 'tencent', strategy_id: strategy, event: 'impression', cost_fen: 120, event_time: Date.now() },
      { trace_id: 'shared-1', media: 'tencent', strategy_id: strategy, event: 'credit_approved', event_time: Date.now() },
      { trace_id: 'never-sent', media: 'tencent', event: 'click', event_time: Date.now() },
    ];
    expect(JSON.parse((await events(b, lines)).text)).toMatchObject({ joined: 2, duplicates: 0, unmatched: 1 });
    expect(JSON.parse((await events(a, lines.slice(0, 2))).text)).toMatchObject({ joined: 0, duplicates: 2 });
    const results = JSON.parse((await (await fetch(`${b.adminUrl}/results?by=strategy`)).text())) as { rememberedDecisions: number | null; rows: { strategy: string; costFen: number; events: Record<string, number> }[] };
    expect(results.rememberedDecisions).toBeNull();
    expect(results.rows.find((r) => r.strategy === strategy)).toMatchObject({ costFen: 120, events: { impression: 1, credit_approved: 1 } });
    expect(await client.pttl(`rta:attribution:seen:{tencent:shared-1}:${strategy}:0`)).toBeGreaterThan(0);
  });

  test('with Redis gone, events are refused with a reason to send them again; the media are still served', async () => {
    await redis.kill();
    const refused = await events(b, [{ trace_id: 'shared-1', media: 'tencent', event: 'click', event_time: Date.now() }]);
    expect(refused.status).toBe(500);
    expect(refused.text).toMatch(/^attribution_failed: the shared decision memory \(Redis\) did not answer: .*; send the batch again\n$/);
    expect(metricSum(await scrape(b), 'rta_attribution_shared_memory_errors_total', { op: 'find' })).toBeGreaterThanOrEqual(1);
    const { reply } = await send(b, tencent, requestFor(prime, { requestId: 'shared-2' }));
    expect(reply.status).toBe(200);
  });
});
