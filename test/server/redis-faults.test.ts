import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startEngine, type EngineProcess } from '../support/engine-process.js';
import { personaDeviceBase, writeDeviceBase } from '../support/redis-devices.js';
import { REDIS_SERVER_FOUND, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { KeepAliveLoad, loadPersonas, metricSum, native, requestFor, scrape, waitForMetric, type LoadReply } from '../support/rta-client.js';

/**
 * The engine on a real Redis that stalls, dies and comes back while keep-alive clients keep asking: every request is
 * answered within its budget (as an unknown device while Redis cannot answer), each such lookup is counted, no more
 * than maxPendingRoundTrips round trips per serving thread wait on a stalled server, and the store finds devices
 * again by itself once Redis is back.
 *
 * The budgets are generous because this 2-core machine may be busy with other work; what they must tell apart is an
 * answer at the budget from one held until Redis comes back, which would take as long as the fault lasts (a second
 * or more, and the load's 3 s read timeout fails a request held longer).
 */
const SERVING_THREADS = 2;
const LOOKUP_BUDGET_MS = 20;
/** The largest the config allows; a lookup that ran out of its budget still leaves time to score. */
const SCORE_DEADLINE_MS = 50;
const CONNECTIONS = 8;
/** A modest load (under 1,600 requests/s), not the engine's maximum: these tests are about faults, not queueing. */
const LOAD = { connections: CONNECTIONS, pauseMs: 5 };
/**
 * The load never has more requests outstanding, so a healthy Redis is never shed from; a stalled one is, because
 * its round trips do not come back while each client sends again at the budget.
 */
const MAX_PENDING_ROUND_TRIPS = CONNECTIONS;
/**
 * Per reply, as the engine measured it (processing_time_us): ten scoring deadlines, room for a thread starved by
 * other work on the machine (up to 150 ms seen), and still well under the length of any fault here.
 */
const SERVER_SIDE_LIMIT_US = 10 * SCORE_DEADLINE_MS * 1000;
const ROUND_TRIP_LIMIT_MS = 1_000;

const borrowers = loadPersonas().active_borrower;
const base = personaDeviceBase(['active_borrower']);
const request = (n: number) => requestFor(borrowers[n % borrowers.length]!);
/**
 * The stored profile decided it, before any scoring. Anything else is an unknown device: taken on its scores, or,
 * when a busy machine held it past the scoring deadline, the fallback.
 */
const found = (reply: LoadReply) => reply.decoded?.reason === 'existing_borrower';
const ANSWERS = new Set(['existing_borrower', 'take', 'deadline_fallback']);

function expectAnsweredWithinBudget(replies: LoadReply[]): void {
  expect(replies.filter((r) => r.status !== 200)).toEqual([]);
  expect(replies.filter((r) => !ANSWERS.has(String(r.decoded!.reason)))).toEqual([]);
  expect(Math.max(...replies.map((r) => Number(r.decoded!.processing_time_us)))).toBeLessThanOrEqual(SERVER_SIDE_LIMIT_US);
  expect(Math.max(...replies.map((r) => r.roundTripMs))).toBeLessThanOrEqual(ROUND_TRIP_LIMIT_MS);
}

function figures(label: string, replies: LoadReply[], extra: Record<string, number | string> = {}): void {
  const roundTrips = replies.map((r) => r.roundTripMs).sort((a, b) => a - b);
  const at = (q: number) => roundTrips[Math.min(roundTrips.length - 1, Math.floor(q * roundTrips.length))]!.toFixed(2);
  const server = replies.map((r) => Number(r.decoded?.processing_time_us ?? 0)).sort((a, b) => a - b);
  console.log(
    `${label}: ${replies.length} replies, ${replies.filter(found).length} from Redis, ` +
      `${replies.filter((r) => r.decoded?.reason === 'deadline_fallback').length} deadline fallbacks; round trip p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, ` +
      `max ${at(1)} ms; server-side p99 ${server[Math.floor(0.99 * server.length)]} us, max ${server.at(-1)} us${Object.entries(extra).map(([k, v]) => `; ${k} ${v}`).join('')}`,
  );
}

describe.skipIf(!REDIS_SERVER_FOUND)('engine on Redis that stalls, dies and comes back, under load', () => {
  let redis: RedisServer;
  let engine: EngineProcess;
  let dir: string | undefined;
  /** With the hot tier off (and load shedding off), every request is one Redis lookup. */
  let lookups = 0;

  /** A scrape whose Redis counters (reported once a second by each thread) include every lookup so far. */
  async function settledScrape(): Promise<string> {
    expect(await waitForMetric(engine, 'rta_redis_lookups_total', { result: 'redis' }, lookups)).toBe(lookups);
    return scrape(engine);
  }

  beforeAll(async () => {
    redis = await startRedisServer();
    await writeDeviceBase(redis, base);
    dir = mkdtempSync(join(tmpdir(), 'rta-redis-faults-'));
    const configFile = join(dir, 'config.json');
    const redisOptions = {
      url: redis.url,
      lookupBudgetMicros: LOOKUP_BUDGET_MS * 1000,
      maxPendingRoundTrips: MAX_PENDING_ROUND_TRIPS,
      // No hot tier: every request asks Redis, so each reply shows whether Redis answered it.
      cache: { maxEntries: 0 },
      // Below the 2 s default so that a stall outlasts it within a short test: how a hung server is let go of.
      socketTimeoutMs: 500,
    };
    writeFileSync(configFile, JSON.stringify({ store: { kind: 'redis', redis: redisOptions } }));
    engine = await startEngine({
      RTA_CONFIG: configFile,
      RTA_APP_THREADS: String(SERVING_THREADS),
      RTA_SCORE_DEADLINE_MICROS: String(SCORE_DEADLINE_MS * 1000),
      // Overload shedding answers without a lookup; these tests count lookups.
      RTA_SHED_AFTER_MICROS: '0',
    });
    const healthy = await (await KeepAliveLoad.start(engine, native, { ...LOAD, request, maxRequests: 200 })).done();
    lookups += healthy.length;
    expect(healthy.some(found)).toBe(true);
    expectAnsweredWithinBudget(healthy);
    figures('healthy', healthy);
  });

  afterAll(async () => {
    await engine?.stop();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('stalled past socketTimeoutMs: answered at the budget as unknown devices and counted, round trips bounded, the connection dropped and made again', async () => {
    const before = await settledScrape();
    const delta = (after: string, name: string, labels: Record<string, string> = {}) => metricSum(after, name, labels) - metricSum(before, name, labels);
    let stalled: LoadReply[];
    let after: string;
    await redis.pause();
    try {
      const load = await KeepAliveLoad.start(engine, native, { ...LOAD, request });
      try {
        // Past socketTimeoutMs with lookups outstanding, the store drops its connection to the silent server and
        // keeps trying to make a new one; until one is ready, lookups are answered at once as unavailable.
        const unavailable = metricSum(before, 'rta_redis_failures_total', { reason: 'unavailable' }) + 1;
        expect(await waitForMetric(engine, 'rta_redis_failures_total', { reason: 'unavailable' }, unavailable, 10_000)).toBeGreaterThanOrEqual(unavailable);
      } finally {
        stalled = await load.stop();
        lookups += stalled.length;
      }
      // Scraped while the server is still stopped: no round trip sent to it can have been answered yet.
      after = await settledScrape();
    } finally {
      redis.resume();
    }
    const resumedAt = performance.now();
    expect(stalled.filter(found)).toEqual([]);
    expectAnsweredWithinBudget(stalled);
    expect(delta(after, 'rta_redis_failures_total')).toBe(stalled.length);
    expect(delta(after, 'rta_device_lookups_total', { result: 'unknown' })).toBe(stalled.length);
    for (const reason of ['timeout', 'shed', 'unavailable']) expect(delta(after, 'rta_redis_failures_total', { reason }), reason).toBeGreaterThan(0);
    expect(delta(after, 'rta_redis_round_trips_total')).toBeLessThanOrEqual(SERVING_THREADS * MAX_PENDING_ROUND_TRIPS);
    expect(metricSum(after, 'rta_redis_connected')).toBe(0);

    const load = await KeepAliveLoad.start(engine, native, { ...LOAD, request });
    let recovered: LoadReply[];
    let first!: LoadReply;
    try {
      first = await load.next(found);
      expect(await waitForMetric(engine, 'rta_redis_connected', {}, 1)).toBe(1);
    } finally {
      recovered = await load.stop();
      lookups += recovered.length;
    }
    expectAnsweredWithinBudget(recovered);
    figures('stalled', stalled, {
      'stall (ms)': (resumedAt - stalled[0]!.at).toFixed(0),
      'round trips sent': delta(after, 'rta_redis_round_trips_total'),
      'timed out': delta(after, 'rta_redis_failures_total', { reason: 'timeout' }),
      shed: delta(after, 'rta_redis_failures_total', { reason: 'shed' }),
      unavailable: delta(after, 'rta_redis_failures_total', { reason: 'unavailable' }),
    });
    figures('after resume', recovered, { 'resume to first device from Redis (ms)': (first.at - resumedAt).toFixed(1) });
  });

  test('killed and restarted on its port: answers never stop, failures are counted, the store reconnects by itself', async () => {
    const before = await settledScrape();
    const failuresBefore = (reason: string) => metricSum(before, 'rta_redis_failures_total', { reason });
    const load = await KeepAliveLoad.start(engine, native, { ...LOAD, request });
    let replies: LoadReply[];
    let killedAt = 0;
    let writtenBackAt = 0;
    let firstUnknown!: LoadReply;
    let firstFound!: LoadReply;
    try {
      await load.next(found);
      await redis.kill();
      killedAt = performance.now();
      firstUnknown = await load.next((reply) => !found(reply));
      const unavailable = failuresBefore('unavailable') + 1;
      expect(await waitForMetric(engine, 'rta_redis_failures_total', { reason: 'unavailable' }, unavailable)).toBeGreaterThanOrEqual(unavailable);
      expect(metricSum(await scrape(engine), 'rta_redis_connected')).toBe(0);

      redis = await startRedisServer({ port: redis.port });
      await writeDeviceBase(redis, base);
      writtenBackAt = performance.now();
      firstFound = await load.next(found);
      expect(await waitForMetric(engine, 'rta_redis_connected', {}, 1)).toBe(1);
    } finally {
      replies = await load.stop();
      lookups += replies.length;
    }
    expectAnsweredWithinBudget(replies);
    const outage = replies.filter((r) => r.at >= firstUnknown.at && r.at < firstFound.at);
    expect(outage.length).toBeGreaterThan(0);

    // Every lookup asked Redis: each reply not decided by the stored profile is an unknown device. Those of the outage
    // are failures; the restarted server may also have answered "no such key" before the devices were written back.
    const notFound = replies.filter((r) => !found(r)).length;
    const unknownBefore = metricSum(before, 'rta_device_lookups_total', { result: 'unknown' });
    const after = await settledScrape();
    expect(metricSum(after, 'rta_device_lookups_total', { result: 'unknown' }) - unknownBefore).toBe(notFound);
    expect(metricSum(after, 'rta_device_lookups_total', { result: 'known' }) - metricSum(before, 'rta_device_lookups_total', { result: 'known' })).toBe(
      replies.filter(found).length,
    );
    const failed = metricSum(after, 'rta_redis_failures_total') - metricSum(before, 'rta_redis_failures_total');
    expect(failed).toBeGreaterThan(0);
    expect(failed).toBeLessThanOrEqual(notFound);
    figures('killed, restarted', replies, {
      'answered during the outage': outage.length,
      'failures counted': failed,
      'kill to first device from Redis (ms)': (firstFound.at - killedAt).toFixed(1),
      'devices written back to first device from Redis (ms)': (firstFound.at - writtenBackAt).toFixed(1),
    });
  });
});
