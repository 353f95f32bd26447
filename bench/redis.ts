/**
 * Redis device store benchmark: `npx tsx bench/redis.ts [--url redis://HOST:PORT] [--devices N] [--seconds S]
 * [--load-rate K] [--load-batch B]`. Without --url it starts its own redis-server on a free loopback port.
 *
 * 1. Latency and throughput through RedisDeviceStore (hot tier off), closed loop: `batch` lookups issued in one
 *    event-loop turn (so they share one MGET), the next batch once all are answered. Latency = lookup() call to
 *    answer, per lookup. The budget is set out of the way so the tail is measured, not cut; "over budget" is the
 *    share that the default 1 ms budget would have answered as unknown.
 * 2. Hot-tier hit ratio under Zipf-like device popularity (P(rank r) ~ 1/r^s), a share of the traffic being
 *    devices that are not in the base (themselves repeating), for a few cache sizes: steady state, counted after
 *    as many warm-up lookups as measured ones.
 * 3. Read latency (batches of 16) alone, then while load-redis (its own process, as in production) writes the base
 *    again at --load-rate keys/s, in pipelines of --load-batch keys and of a tenth of that.
 *
 * Run it on a quiet machine: it shares the cores with redis-server, and a busy neighbour shows up in the tails.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { DeviceLookupJob } from '../src/engine/engine.js';
import { DemoRandom } from '../src/store/demo-population.js';
import { DEVICE_KEY_BYTES } from '../src/store/device-key.js';
import { SLOT_BYTES, type EmbeddedDeviceStore } from '../src/store/embedded.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../src/store/profile-schema.js';
import { connectRedis, redisConnectionSchema } from '../src/store/redis-client.js';
import { RedisDeviceStore, redisStoreOptionsSchema } from '../src/store/redis.js';
import { loadSnapshot } from '../src/store/snapshot.js';
import { generateDemoData } from '../src/tools/demo-data.js';
import { loadIntoRedis } from '../src/tools/load-redis.js';
import { startRedisServer, type RedisServer } from '../test/support/redis-server.js';

const PREFIX = 'bench:dev:';
const LOAD_PREFIX = 'bench:load:';
const BATCH_SIZES = [1, 16, 64];
const DEFAULT_BUDGET_MS = 1;
const UNKNOWN_SHARE = 0.15;
const ZIPF_EXPONENT = 1.0;
const ZIPF_LOOKUPS = 100_000;
const CACHE_SHARES = [0.01, 0.05, 0.2];
const READ_BATCH_DURING_LOAD = 16;
const LOADER = fileURLToPath(new URL('../src/tools/load-redis.ts', import.meta.url));

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    devices: { type: 'string', default: '100000' },
    seconds: { type: 'string', default: '2' },
    'load-rate': { type: 'string', default: '50000' },
    'load-batch': { type: 'string', default: '1000' },
  },
  strict: true,
});
const devices = Number(values.devices);
const seconds = Number(values.seconds);
const loadRate = Number(values['load-rate']);
const loadBatch = Number(values['load-batch']);
if (!Number.isSafeInteger(devices) || devices < 1000) throw new Error(`--devices must be a whole number >= 1000, got ${values.devices}`);
if (!(seconds > 0)) throw new Error(`--seconds must be > 0, got ${values.seconds}`);
if (!(loadRate > 0)) throw new Error(`--load-rate must be > 0, got ${values['load-rate']}`);
if (!Number.isSafeInteger(loadBatch) || loadBatch < 1) throw new Error(`--load-batch must be a whole number >= 1, got ${values['load-batch']}`);

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);

/** Reused for every lookup of one closed-loop slot: no allocation per lookup on the bench side. */
class BenchJob implements DeviceLookupJob {
  lookupKeys: readonly Uint8Array[] = [];
  started = 0;
  found = false;

  constructor(private readonly done: (job: BenchJob) => void) {}

  onProfileFound(): void {
    this.found = true;
    this.done(this);
  }

  onProfileMissing(): void {
    this.found = false;
    this.done(this);
  }
}

interface ReadRun {
  lookups: number;
  millis: number;
  /** Microseconds, one per lookup, sorted. */
  latencies: Float64Array;
}

/** Closed loop of batches drawn by `nextKey` until `shouldStop` says so. */
async function closedLoop(store: RedisDeviceStore, batch: number, nextKey: () => Uint8Array, shouldStop: (millis: number) => boolean): Promise<ReadRun> {
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let waiting = 0;
  let wake: () => void = () => {};
  const jobs = Array.from({ length: batch }, () => new BenchJob(done));
  function done(job: BenchJob): void {
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = (performance.now() - job.started) * 1000;
    if (--waiting === 0) wake();
  }
  const started = performance.now();
  while (!shouldStop(performance.now() - started)) {
    const answered = new Promise<void>((resolve) => (wake = resolve));
    waiting = batch;
    for (const job of jobs) {
      job.lookupKeys = [nextKey()];
      job.started = performance.now();
      store.lookup(job);
    }
    await answered;
  }
  return { lookups: count, millis: performance.now() - started, latencies: latencies.subarray(0, count).sort() };
}

function percentiles(run: ReadRun): string {
  const at = (q: number) => run.latencies[Math.min(run.lookups - 1, Math.floor(q * run.lookups))]!;
  const overBudget = run.lookups - lowerBound(run.latencies, DEFAULT_BUDGET_MS * 1000);
  return (
    `p50 ${at(0.5).toFixed(0)} us, p99 ${at(0.99).toFixed(0)} us, p99.9 ${at(0.999).toFixed(0)} us, max ${at(1).toFixed(0)} us; ` +
    `${Math.round((run.lookups * 1000) / run.millis).toLocaleString('en')} lookups/s; over ${DEFAULT_BUDGET_MS} ms: ${((100 * overBudget) / run.lookups).toFixed(2)}%`
  );
}

function lowerBound(sorted: Float64Array, value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sorted[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Every device key of the store, in table order. */
function storeKeys(store: EmbeddedDeviceStore): Buffer[] {
  const table = store.tableBytes;
  const refs = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const keys: Buffer[] = [];
  for (let at = 0; at < table.length; at += SLOT_BYTES) {
    if (refs.getUint32(at + DEVICE_KEY_BYTES, true) !== 0) keys.push(Buffer.from(table.subarray(at, at + DEVICE_KEY_BYTES)));
  }
  return keys;
}

/** Ranks 0..n-1 with P(rank r) ~ 1/(r+1)^s, by inverse CDF. */
function zipfSampler(n: number, exponent: number, random: DemoRandom): () => number {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) cdf[r] = total += 1 / (r + 1) ** exponent;
  return () => Math.min(n - 1, lowerBound(cdf, random.unit() * total));
}

async function connectStore(url: string, budgetMicros: number, maxEntries: number): Promise<RedisDeviceStore> {
  const options = redisStoreOptionsSchema.parse({ url, keyPrefix: PREFIX, lookupBudgetMicros: budgetMicros, cache: { maxEntries } });
  return RedisDeviceStore.connect(options, schema);
}

async function main(): Promise<void> {
  const workDir = mkdtempSync(join(tmpdir(), 'bench-redis-'));
  let server: RedisServer | undefined;
  try {
    server = values.url ? undefined : await startRedisServer();
    const url = values.url ?? server!.url;
    const demo = generateDemoData({ devices, outputDir: workDir, schema });
    const { store: embedded } = loadSnapshot(demo.snapshotPath, schema);
    const keys = storeKeys(embedded);
    const unknown = Array.from({ length: keys.length }, (_, i) => createHash('md5').update(`bench-unknown-${i}`).digest());
    const loader = await connectRedis(redisConnectionSchema.parse({ url }), 'bench-loader');
    const initial = await loadIntoRedis({ client: loader, store: embedded, keyPrefix: PREFIX, keysPerSecond: 1e9, batchKeys: 1000 });
    loader.disconnect();
    console.log(`Redis device store, ${url}, ${devices.toLocaleString('en')} demo devices = ${keys.length.toLocaleString('en')} keys (Node ${process.version})`);
    console.log(`initial load, unthrottled: ${Math.round(initial.keysPerSecond).toLocaleString('en')} keys/s`);

    // 1. Latency and throughput by batch size, hot tier off, 80% hits.
    const random = new DemoRandom(7);
    const mixed = () => (random.chance(0.8) ? keys[random.int(0, keys.length - 1)]! : unknown[random.int(0, unknown.length - 1)]!);
    const bare = await connectStore(url, 100_000, 0);
    await closedLoop(bare, 16, mixed, (millis) => millis > 300);
    console.log(`\n1. lookups through the store, hot tier off, 80% hits, ${seconds} s each:`);
    for (const batch of BATCH_SIZES) {
      const run = await closedLoop(bare, batch, mixed, (millis) => millis > seconds * 1000);
      console.log(`  batch ${String(batch).padStart(2)}: ${percentiles(run)}`);
    }
    await bare.close();

    // 2. Hot-tier hit ratios under Zipf popularity.
    console.log(`\n2. hot tier under Zipf popularity (s = ${ZIPF_EXPONENT}), ${UNKNOWN_SHARE * 100}% unknown devices, ${ZIPF_LOOKUPS.toLocaleString('en')} lookups in batches of 64:`);
    for (const share of CACHE_SHARES) {
      const zipfRandom = new DemoRandom(11);
      const knownRank = zipfSampler(keys.length, ZIPF_EXPONENT, zipfRandom);
      const unknownRank = zipfSampler(unknown.length, ZIPF_EXPONENT, zipfRandom);
      const zipf = () => (zipfRandom.chance(UNKNOWN_SHARE) ? unknown[unknownRank()]! : keys[knownRank()]!);
      const maxEntries = Math.round(share * (keys.length + unknown.length));
      const cached = await connectStore(url, 100_000, maxEntries);
      let issued = 0;
      const next = () => {
        issued++;
        return zipf();
      };
      await closedLoop(cached, 64, next, () => issued >= ZIPF_LOOKUPS);
      const warm = { ...cached.stats };
      issued = 0;
      const run = await closedLoop(cached, 64, next, () => issued >= ZIPF_LOOKUPS);
      const lookups = cached.stats.lookups - warm.lookups;
      const cacheHits = cached.stats.cacheHits - warm.cacheHits;
      const negativeHits = cached.stats.negativeHits - warm.negativeHits;
      const roundTrips = cached.stats.roundTrips - warm.roundTrips;
      console.log(
        `  cache ${maxEntries.toLocaleString('en').padStart(7)} entries (${share * 100}% of keys): hits ${((100 * cacheHits) / lookups).toFixed(1)}%, ` +
          `negative hits ${((100 * negativeHits) / lookups).toFixed(1)}%, answered without Redis ${((100 * (cacheHits + negativeHits)) / lookups).toFixed(1)}%, ` +
          `${roundTrips} round trips; ${percentiles(run)}`,
      );
      await cached.close();
    }

    // 3. Reads while the loader writes, from its own process.
    const reads = await connectStore(url, 100_000, 0);
    console.log(`\n3. reads in batches of ${READ_BATCH_DURING_LOAD}, hot tier off:`);
    console.log(`  no load:  ${percentiles(await closedLoop(reads, READ_BATCH_DURING_LOAD, mixed, (millis) => millis > seconds * 1000))}`);
    for (const batch of [loadBatch, Math.max(1, Math.round(loadBatch / 10))]) {
      const child = spawn(
        process.execPath,
        [...process.execArgv, LOADER, '--snapshot', demo.snapshotPath, '--url', url, '--prefix', `${LOAD_PREFIX}${batch}:`, '--rate', String(loadRate), '--batch', String(batch)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let summary = '';
      child.stdout.on('data', (data: Buffer) => (summary += data.toString()));
      let loading = true;
      const exited = once(child, 'exit').finally(() => (loading = false));
      const during = await closedLoop(reads, READ_BATCH_DURING_LOAD, mixed, () => !loading);
      const [code] = (await exited) as [number | null];
      if (code !== 0) throw new Error(`load-redis exited with ${code}`);
      console.log(`  loading at ${loadRate.toLocaleString('en')} keys/s in pipelines of ${batch}: ${percentiles(during)}`);
      console.log(`    (${summary.trim()})`);
    }
    await reads.close();
  } finally {
    await server?.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
