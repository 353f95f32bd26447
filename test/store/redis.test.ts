import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { DeviceLookupJob } from '../../src/engine/engine.js';
import { EmbeddedDeviceStore } from '../../src/store/embedded.js';
import { ProfileRecordWriter } from '../../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../../src/store/profile-schema.js';
import { connectRedis, layoutStampKey, redisConnectionSchema, RedisStoreError } from '../../src/store/redis-client.js';
import { keySlot } from '../../src/store/redis-slot.js';
import { RedisDeviceStore, redisStoreOptionsSchema, type RedisStoreOptions } from '../../src/store/redis.js';
import { loadIntoRedis } from '../../src/tools/load-redis.js';
import { freePort, REDIS_SERVER_FOUND, startRedisCluster, startRedisServer, type RedisServer } from '../support/redis-server.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const PREFIX = 'test:dev:';
const DEVICES = 300;

function md5(text: string): Buffer {
  return createHash('md5').update(text).digest();
}

/** Device d has an OAID key; every third device also an IMEI key. Records differ in every device. */
function oaid(d: number): Buffer {
  return md5(`oaid-${d}`);
}
function imei(d: number): Buffer {
  return md5(`imei-${d}`);
}
function unknownKey(n: number): Buffer {
  return md5(`never-loaded-${n}`);
}

function buildStore(): EmbeddedDeviceStore {
  const store = EmbeddedDeviceStore.create(schema);
  const writer = new ProfileRecordWriter(schema);
  for (let d = 0; d < DEVICES; d++) {
    writer.clear();
    expect(writer.write(schema.field('credit_band'), (d % 5) + 1)).toBeUndefined();
    expect(writer.write(schema.field('income_score'), d / DEVICES)).toBeUndefined();
    expect(writer.write(schema.field('updated_day'), 20_000 + d)).toBeUndefined();
    store.addDevice(writer.record, d % 3 === 0 ? Buffer.concat([oaid(d), imei(d)]) : oaid(d));
  }
  return store;
}

const embedded = buildStore();

function embeddedRecord(key: Uint8Array): Uint8Array {
  const offset = embedded.find(key, 0);
  if (offset < 0) throw new Error('key not in the embedded store');
  return embedded.records.slice(offset, offset + embedded.recordBytes);
}

type Answer = { kind: 'found'; keyIndex: number; record: Uint8Array } | { kind: 'missing' };

/** A lookup job that records every call it gets, and when the first one came. */
class RecordingJob implements DeviceLookupJob {
  readonly calls: Answer[] = [];
  answeredAfterMs = NaN;
  readonly answered: Promise<Answer>;
  private resolve!: (answer: Answer) => void;
  private readonly started = performance.now();

  constructor(readonly lookupKeys: readonly Uint8Array[]) {
    this.answered = new Promise((resolve) => (this.resolve = resolve));
  }

  onProfileFound(keyIndex: number, records: Uint8Array, offset: number): void {
    this.record({ kind: 'found', keyIndex, record: records.slice(offset, offset + schema.recordBytes) });
  }

  onProfileMissing(): void {
    this.record({ kind: 'missing' });
  }

  private record(answer: Answer): void {
    if (this.calls.length === 0) this.answeredAfterMs = performance.now() - this.started;
    this.calls.push(answer);
    this.resolve(answer);
  }
}

async function lookup(store: RedisDeviceStore, keys: Uint8Array[]): Promise<Answer> {
  const job = new RecordingJob(keys);
  store.lookup(job);
  return job.answered;
}

/** A generous budget: these tests check answers, and this machine may be busy; the budget test sets its own. */
const TEST_BUDGET_MICROS = 100_000;

function storeOptions(url: string, overrides: Partial<RedisStoreOptions> = {}): RedisStoreOptions {
  return redisStoreOptionsSchema.parse({ url, keyPrefix: PREFIX, lookupBudgetMicros: TEST_BUDGET_MICROS, ...overrides });
}

async function loadStore(url: string, prefix = PREFIX): Promise<void> {
  const client = await connectRedis(redisConnectionSchema.parse({ url }), 'test-loader');
  try {
    await loadIntoRedis({ client, store: embedded, keyPrefix: prefix, keysPerSecond: 1e9, batchKeys: 100 });
  } finally {
    client.disconnect();
  }
}

async function commandCalls(admin: Redis, command: string): Promise<number> {
  const info = await admin.info('commandstats');
  const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return match ? Number(match[1]) : 0;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(!REDIS_SERVER_FOUND)('RedisDeviceStore against a real redis-server', () => {
  let server: RedisServer;
  let admin: Redis;
  let store: RedisDeviceStore;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis(server.port, '127.0.0.1');
    await loadStore(server.url);
    store = await RedisDeviceStore.connect(storeOptions(server.url), schema);
  });

  afterAll(async () => {
    await store?.close();
    admin?.disconnect();
    await server?.stop();
  });

  test('the loader wrote every key of the snapshot, with its record, and the layout stamp', async () => {
    expect(await admin.dbsize()).toBe(embedded.keyCount + 1);
    const value = await admin.getBuffer(Buffer.concat([Buffer.from(PREFIX), imei(3)]));
    expect(value).toEqual(Buffer.from(embeddedRecord(imei(3))));
    expect(JSON.parse((await admin.get(layoutStampKey(PREFIX)))!)).toMatchObject({ schemaVersion: schema.version, recordBytes: schema.recordBytes });
  });

  test('returns byte-identical records for hits, by any key of the device, and missing for unknown keys', async () => {
    for (const d of [1, 2, 3, 150, 299]) {
      for (const key of d % 3 === 0 ? [oaid(d), imei(d)] : [oaid(d)]) {
        const answer = await lookup(store, [key]);
        expect(answer).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(key) });
      }
    }
    expect(await lookup(store, [unknownKey(1)])).toEqual({ kind: 'missing' });
    expect(await lookup(store, [unknownKey(2), unknownKey(3)])).toEqual({ kind: 'missing' });
  });

  test('the first key in preference order that exists wins, even when a later key exists too', async () => {
    const answer = await lookup(store, [unknownKey(10), oaid(20), oaid(21)]);
    expect(answer).toEqual({ kind: 'found', keyIndex: 1, record: embeddedRecord(oaid(20)) });
    expect(embeddedRecord(oaid(20))).not.toEqual(embeddedRecord(oaid(21)));
    const reversed = await lookup(store, [oaid(22), oaid(20)]);
    expect(reversed).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(22)) });
  });

  test('a cached lower-preference key does not beat an uncached key that Redis holds', async () => {
    await lookup(store, [oaid(31)]);
    const answer = await lookup(store, [oaid(32), oaid(31)]);
    expect(answer).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(32)) });
  });

  test('lookups issued in one event-loop turn go out as one MGET carrying all their keys', async () => {
    const mgetBefore = await commandCalls(admin, 'mget');
    const roundTripsBefore = store.stats.roundTrips;
    const keysBefore = store.stats.keysRequested;
    const jobs = [40, 41, 42, 43, 44, 45].map((d) => new RecordingJob([unknownKey(100 + d), oaid(d)]));
    for (const job of jobs) store.lookup(job);
    const answers = await Promise.all(jobs.map((job) => job.answered));
    expect(answers).toEqual([40, 41, 42, 43, 44, 45].map((d) => ({ kind: 'found', keyIndex: 1, record: embeddedRecord(oaid(d)) })));
    expect(store.stats.roundTrips - roundTripsBefore).toBe(1);
    expect(store.stats.keysRequested - keysBefore).toBe(12);
    expect((await commandCalls(admin, 'mget')) - mgetBefore).toBe(1);
  });

  test('a cached device answers at once without Redis; a cached miss is not asked again', async () => {
    await lookup(store, [oaid(50)]);
    await lookup(store, [unknownKey(50)]);
    const mgetBefore = await commandCalls(admin, 'mget');
    const { cacheHits, negativeHits, roundTrips } = store.stats;

    const hit = new RecordingJob([oaid(50)]);
    store.lookup(hit);
    expect(hit.calls).toEqual([{ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(50)) }]);
    const miss = new RecordingJob([unknownKey(50)]);
    store.lookup(miss);
    expect(miss.calls).toEqual([{ kind: 'missing' }]);

    expect(store.stats.cacheHits - cacheHits).toBe(1);
    expect(store.stats.negativeHits - negativeHits).toBe(1);
    expect(store.stats.roundTrips).toBe(roundTrips);
    expect(await commandCalls(admin, 'mget')).toBe(mgetBefore);
  });

  test('a value of the wrong length is counted as corrupt and treated as missing, never read', async () => {
    const short = unknownKey(60);
    const long = unknownKey(62);
    await admin.set(Buffer.concat([Buffer.from(PREFIX), short]), Buffer.alloc(schema.recordBytes - 1, 7));
    await admin.set(Buffer.concat([Buffer.from(PREFIX), long]), Buffer.alloc(schema.recordBytes + 1, 7));
    const corruptBefore = store.stats.corrupt;
    expect(await lookup(store, [short])).toEqual({ kind: 'missing' });
    expect(await lookup(store, [long])).toEqual({ kind: 'missing' });
    expect(await lookup(store, [unknownKey(61), short, oaid(61)])).toEqual({
      kind: 'found',
      keyIndex: 2,
      record: embeddedRecord(oaid(61)),
    });
    expect(store.stats.corrupt - corruptBefore).toBe(3);
  });

  test('budget: with Redis paused, lookups are answered missing at the budget, once, and late replies are dropped', async () => {
    const budgetMs = 20;
    const paused = await RedisDeviceStore.connect(storeOptions(server.url, { lookupBudgetMicros: budgetMs * 1000 }), schema);
    try {
      const jobs = [70, 71, 72].map((d) => new RecordingJob([oaid(d)]));
      await admin.call('CLIENT', 'PAUSE', 400, 'ALL');
      for (const job of jobs) paused.lookup(job);
      const answers = await Promise.all(jobs.map((job) => job.answered));
      expect(answers).toEqual(jobs.map(() => ({ kind: 'missing' })));
      for (const job of jobs) {
        expect(job.answeredAfterMs).toBeGreaterThanOrEqual(budgetMs - 1);
        expect(job.answeredAfterMs).toBeLessThan(budgetMs + 100);
      }
      expect(paused.stats).toMatchObject({ lookups: 3, cacheMisses: 3, roundTrips: 1, timeouts: 3, lateReplies: 0 });

      await waitFor(() => paused.stats.lateReplies === 1, 2_000);
      for (const job of jobs) expect(job.calls).toHaveLength(1);
      // Nothing of the late reply was kept, not even as a cached miss: the devices resolve now.
      expect(await lookup(paused, [oaid(70)])).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(70)) });
    } finally {
      await paused.close();
    }
  });

  test('a stalled server does not pile up requests: past maxPendingRoundTrips, lookups are shed at once', async () => {
    const stalled = await RedisDeviceStore.connect(storeOptions(server.url, { lookupBudgetMicros: 20_000, maxPendingRoundTrips: 1 }), schema);
    try {
      await admin.call('CLIENT', 'PAUSE', 300, 'ALL');
      expect(await lookup(stalled, [oaid(90)])).toEqual({ kind: 'missing' });
      const shedJob = new RecordingJob([oaid(91)]);
      stalled.lookup(shedJob);
      expect(await shedJob.answered).toEqual({ kind: 'missing' });
      expect(shedJob.answeredAfterMs).toBeLessThan(50);
      expect(stalled.stats).toMatchObject({ lookups: 2, roundTrips: 1, timeouts: 1, shed: 1 });

      await waitFor(() => stalled.stats.lateReplies === 1, 2_000);
      expect(await lookup(stalled, [oaid(91)])).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(91)) });
    } finally {
      await stalled.close();
    }
  });
});

describe.skipIf(!REDIS_SERVER_FOUND)('RedisDeviceStore when Redis goes away', () => {
  test('killed: lookups answer missing at once and are counted, cached devices still resolve; after a restart it recovers', async () => {
    const server = await startRedisServer();
    await loadStore(server.url);
    const store = await RedisDeviceStore.connect(storeOptions(server.url, { reconnectMaxDelayMs: 100 }), schema);
    try {
      await lookup(store, [oaid(1)]);
      await server.kill();
      await waitFor(() => !store.connected, 2_000);

      const cached = new RecordingJob([oaid(1)]);
      store.lookup(cached);
      expect(cached.calls).toEqual([{ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(1)) }]);

      const before = store.stats.unavailable + store.stats.errors;
      const jobs = [2, 4, 5].map((d) => new RecordingJob([oaid(d)]));
      for (const job of jobs) store.lookup(job);
      expect(await Promise.all(jobs.map((job) => job.answered))).toEqual(jobs.map(() => ({ kind: 'missing' })));
      for (const job of jobs) expect(job.answeredAfterMs).toBeLessThan(50);
      expect(store.stats.unavailable + store.stats.errors - before).toBe(3);

      const restarted = await startRedisServer({ port: server.port });
      try {
        await loadStore(restarted.url);
        await waitFor(() => store.connected, 5_000);
        expect(await lookup(store, [oaid(2)])).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(2)) });
      } finally {
        await restarted.stop();
      }
    } finally {
      await store.close();
      await server.stop();
    }
  });

  test('unreachable at start: fails fast naming the target and the cause', async () => {
    const port = await freePort();
    const started = performance.now();
    const attempt = RedisDeviceStore.connect(storeOptions(`redis://127.0.0.1:${port}`), schema);
    await expect(attempt).rejects.toThrow(RedisStoreError);
    await expect(attempt).rejects.toThrow(`cannot reach Redis at redis://127.0.0.1:${port}: connect ECONNREFUSED`);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe.skipIf(!REDIS_SERVER_FOUND)('device base checks and the loader', () => {
  let server: RedisServer;
  let admin: Redis;

  beforeAll(async () => {
    server = await startRedisServer();
    admin = new Redis(server.port, '127.0.0.1');
  });

  afterAll(async () => {
    admin?.disconnect();
    await server?.stop();
  });

  test('the store refuses a prefix that was never loaded, and one stamped with another layout', async () => {
    await expect(RedisDeviceStore.connect(storeOptions(server.url, { keyPrefix: 'empty:' }), schema)).rejects.toThrow(
      'holds no device base under prefix "empty:" (no "empty:layout" key): load one with load-redis',
    );
    await admin.set(layoutStampKey('old:'), JSON.stringify({ schemaVersion: schema.version, recordBytes: schema.recordBytes, layoutFingerprint: '0000000000000000' }));
    await expect(RedisDeviceStore.connect(storeOptions(server.url, { keyPrefix: 'old:' }), schema)).rejects.toThrow(
      /under prefix "old:" was written for another field layout .*load it again under a new prefix/,
    );
    await admin.set(layoutStampKey('junk:'), 'hello');
    await expect(RedisDeviceStore.connect(storeOptions(server.url, { keyPrefix: 'junk:' }), schema)).rejects.toThrow(
      'Redis key "junk:layout" is not a profile layout stamp: "hello"',
    );
  });

  test('the loader refuses to write over a prefix stamped with another layout', async () => {
    await admin.set(layoutStampKey('v0:'), JSON.stringify({ schemaVersion: schema.version + 1, recordBytes: 16, layoutFingerprint: 'ab' }));
    const client = await connectRedis(redisConnectionSchema.parse({ url: server.url }), 'test-loader');
    try {
      await expect(loadIntoRedis({ client, store: embedded, keyPrefix: 'v0:', keysPerSecond: 1e9, batchKeys: 100 })).rejects.toThrow(
        `prefix "v0:" holds records written for profile schema version ${schema.version + 1} (16-byte records)`,
      );
      expect(await admin.keys('v0:*')).toEqual(['v0:layout']);
    } finally {
      client.disconnect();
    }
  });

  test('the loader holds its rate limit, and --ttl-seconds makes the keys expire', async () => {
    const client = await connectRedis(redisConnectionSchema.parse({ url: server.url }), 'test-loader');
    try {
      const rate = 1_500;
      const report = await loadIntoRedis({ client, store: embedded, keyPrefix: 'rate:', keysPerSecond: rate, batchKeys: 50, ttlSeconds: 600 });
      expect(report.keys).toBe(embedded.keyCount);
      expect(report.roundTrips).toBe(Math.ceil(embedded.keyCount / 50));
      // The bucket starts empty, so the whole load takes keys/rate: above the rate would mean the limit leaks.
      expect(report.millis).toBeGreaterThanOrEqual(((embedded.keyCount - 1) * 1000) / rate);
      expect(report.keysPerSecond).toBeGreaterThan(rate * 0.85);
      expect(report.keysPerSecond).toBeLessThanOrEqual(rate * 1.01);
      const ttl = await admin.ttl(Buffer.concat([Buffer.from('rate:'), oaid(7)]));
      expect(ttl).toBeGreaterThan(590);
      expect(ttl).toBeLessThanOrEqual(600);
      expect(await admin.ttl(layoutStampKey('rate:'))).toBe(-1);
    } finally {
      client.disconnect();
    }
  });

  test('a cached miss expires after negativeTtlMs, so a device loaded later is found', async () => {
    await loadStore(server.url, 'late:');
    const store = await RedisDeviceStore.connect(storeOptions(server.url, { keyPrefix: 'late:', cache: { maxEntries: 100, ttlMs: 60_000, negativeTtlMs: 150 } }), schema);
    try {
      const key = unknownKey(80);
      expect(await lookup(store, [key])).toEqual({ kind: 'missing' });
      await admin.set(Buffer.concat([Buffer.from('late:'), key]), Buffer.from(embeddedRecord(oaid(80))));
      const negativeHits = store.stats.negativeHits;
      expect(await lookup(store, [key])).toEqual({ kind: 'missing' });
      expect(store.stats.negativeHits - negativeHits).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await lookup(store, [key])).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(oaid(80)) });
    } finally {
      await store.close();
    }
  });

  test('options: exactly one of url and nodes', () => {
    expect(() => redisStoreOptionsSchema.parse({})).toThrow('give exactly one of `url`');
    expect(() => redisStoreOptionsSchema.parse({ url: 'redis://a:1', nodes: ['a:1'] })).toThrow('give exactly one of `url`');
    expect(() => redisStoreOptionsSchema.parse({ url: 'http://a:1' })).toThrow('a redis:// or rediss:// URL');
    expect(redisStoreOptionsSchema.parse({ nodes: ['10.0.0.1:7000'] })).toMatchObject({ keyPrefix: 'rta:dev:', lookupBudgetMicros: 1000 });
  });
});

const CLUSTER_CONNECT_MS = 10_000;

describe.skipIf(!REDIS_SERVER_FOUND)('RedisDeviceStore against a 3-node Redis Cluster', () => {
  test('binary keys hash to the slot the server computes; lookups split by node and return the embedded records', async () => {
    const cluster = await startRedisCluster(3);
    const nodes = cluster.addresses;
    let store: RedisDeviceStore | undefined;
    const admin = new Redis(cluster.nodes[0]!.port, '127.0.0.1');
    try {
      const braces = [Buffer.from('{}x'), Buffer.from('a{b}c'), Buffer.from([0x7b, 0x00, 0x7d, 0x41]), Buffer.from('x{y'), Buffer.from('}{')];
      for (const key of [...braces, ...[1, 2, 3, 4, 5].map((d) => Buffer.concat([Buffer.from(PREFIX), oaid(d)]))]) {
        expect(keySlot(key)).toBe(Number(await admin.call('CLUSTER', 'KEYSLOT', key)));
      }

      // A cluster formed a moment ago, on a busy 2-core machine, can take longer than the 2 s production default to
      // settle its slot map in every client.
      const client = await connectRedis(redisConnectionSchema.parse({ nodes, connectTimeoutMs: CLUSTER_CONNECT_MS }), 'test-loader');
      try {
        const report = await loadIntoRedis({ client, store: embedded, keyPrefix: PREFIX, keysPerSecond: 1e9, batchKeys: 100 });
        expect(report.keys).toBe(embedded.keyCount);
        expect(report.roundTrips).toBeGreaterThan(Math.ceil(embedded.keyCount / 100));
      } finally {
        client.disconnect();
      }

      store = await RedisDeviceStore.connect(
        redisStoreOptionsSchema.parse({ nodes, keyPrefix: PREFIX, lookupBudgetMicros: TEST_BUDGET_MICROS, connectTimeoutMs: CLUSTER_CONNECT_MS }),
        schema,
      );
      const devices = [3, 10, 11, 12, 13, 14, 15, 16, 17, 18];
      const roundTrips = store.stats.roundTrips;
      const jobs = devices.map((d) => new RecordingJob([unknownKey(200 + d), oaid(d)]));
      for (const job of jobs) store.lookup(job);
      expect(await Promise.all(jobs.map((job) => job.answered))).toEqual(
        devices.map((d) => ({ kind: 'found', keyIndex: 1, record: embeddedRecord(oaid(d)) })),
      );
      // One pipeline per node holding any of the keys (the test cluster gives each node an even slot range).
      const nodesTouched = new Set(jobs.flatMap((job) => job.lookupKeys.map((key) => Math.floor(keySlot(Buffer.concat([Buffer.from(PREFIX), key])) / Math.ceil(16384 / 3)))));
      expect(nodesTouched.size).toBeGreaterThan(1);
      expect(store.stats.roundTrips - roundTrips).toBe(nodesTouched.size);
      expect(await lookup(store, [imei(3)])).toEqual({ kind: 'found', keyIndex: 0, record: embeddedRecord(imei(3)) });
    } finally {
      await store?.close();
      admin.disconnect();
      await cluster.stop();
    }
  });
});
