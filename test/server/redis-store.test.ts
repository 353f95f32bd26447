import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DecisionCode } from '../../src/engine/types.js';
import { DECISIONS_ENV, startEngine, type EngineProcess } from '../support/engine-process.js';
import { personaDeviceBase, writeDeviceBase } from '../support/redis-devices.js';
import { REDIS_SERVER_FOUND, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { loadPersonas, requestFor, scrape, metricSum, send, tencent } from '../support/rta-client.js';

/**
 * The engine with its device profiles in a real Redis (store.kind "redis"): the same decisions as the embedded
 * store for the devices Redis holds, and still an answer for everyone when Redis goes away.
 */
let redis: RedisServer;
let engine: EngineProcess;
let configFile: string | undefined;
const personas = loadPersonas();

describe.skipIf(!REDIS_SERVER_FOUND)('engine on the Redis device store', () => {
  beforeAll(async () => {
    redis = await startRedisServer();
    // Only the persona devices go into Redis: enough to tell stored from unknown devices, and fast to load.
    await writeDeviceBase(redis, personaDeviceBase(['prime_prospect', 'dormant_approved', 'active_borrower', 'blacklisted', 'high_risk']));
    // Generous time budgets: this test is about which profile decides, not about timing on a busy machine (a lookup
    // over budget is decided as an unknown device, which is tested below with Redis gone).
    const dir = mkdtempSync(join(tmpdir(), 'rta-redis-engine-'));
    configFile = join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ store: { kind: 'redis', redis: { url: redis.url, lookupBudgetMicros: 50_000 } } }));
    engine = await startEngine({ RTA_CONFIG: configFile, ...DECISIONS_ENV });
  });

  afterAll(async () => {
    await engine?.stop();
    await redis?.stop();
    if (configFile) rmSync(dirname(configFile), { recursive: true, force: true });
  });

  test('devices in Redis are decided by their stored profile', async () => {
    const code = async (name: keyof typeof personas) => ((await send(engine, tencent, requestFor(personas[name][0]!))).decoded.code as number | undefined) ?? 0;
    expect(await code('active_borrower')).toBe(DecisionCode.EXISTING_BORROWER);
    expect(await code('blacklisted')).toBe(DecisionCode.BLACKLISTED);
    expect(await code('high_risk')).toBe(DecisionCode.HIGH_RISK);
    const dormant = (await send(engine, tencent, requestFor(personas.dormant_approved[0]!))).decoded;
    expect(dormant.out_target_id).toEqual(['react_dormant']);
    const metrics = await scrape(engine);
    expect(metricSum(metrics, 'rta_device_lookups_total', { result: 'known' })).toBeGreaterThanOrEqual(4);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect(metricSum(await scrape(engine), 'rta_redis_round_trips_total')).toBeGreaterThanOrEqual(1);
  });

  test('an unknown device is decided as unknown', async () => {
    const reply = (await send(engine, tencent, requestFor(personas.unknown[0]!))).decoded;
    expect(reply.code ?? 0).toBe(DecisionCode.TAKE);
    expect(reply.out_target_id).toContain('acq_prime_new');
    expect(reply.out_target_id).not.toContain('react_dormant');
  });

  test('with Redis gone every request is still answered, as an unknown device, and counted', async () => {
    await redis.kill();
    const borrower = (await send(engine, tencent, requestFor(personas.active_borrower[1] ?? personas.active_borrower[0]!))).decoded;
    // Not in the in-process cache (a different device id than before) and Redis is down: treated as unknown.
    expect(borrower.code ?? 0).toBe(DecisionCode.TAKE);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const metrics = await scrape(engine);
    expect(metricSum(metrics, 'rta_redis_failures_total')).toBeGreaterThanOrEqual(1);
    expect(metricSum(metrics, 'rta_redis_connected')).toBe(0);
  });
});
