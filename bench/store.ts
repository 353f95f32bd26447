/**
 * Embedded device store benchmark: `npx tsx bench/store.ts [--devices N] [--lookups M]`.
 *
 * 1. Builds N synthetic devices in memory (1.575 keys per device on average, like the demo population) and times
 *    it, then writes a snapshot to the OS temp directory and times that.
 * 2. A fresh child process loads the snapshot, so its RSS is the loaded store plus Node itself, nothing left over
 *    from building, and times M random lookups, half hits and half misses.
 *
 * Timing method: one process.hrtime.bigint() read costs tens of nanoseconds, the same order as a lookup, so
 * - "batched" times BATCH consecutive lookups between two clock reads and records total/BATCH per batch: the
 *   clock cost is spread thin, but one slow lookup is averaged with its neighbours;
 * - "single" times every lookup on its own, clock cost included (shown as "clock"): an upper bound that keeps
 *   each lookup's own tail.
 * Keys are pre-generated into one buffer and visited in random order, so lookups hit cold cache lines as they
 * would under traffic; one untimed pass first lets the JIT compile `find`.
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEVICE_KEY_BYTES } from '../src/store/device-key.js';
import { EmbeddedDeviceStore } from '../src/store/embedded.js';
import { ProfileRecordWriter } from '../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../src/store/profile-schema.js';
import { loadSnapshot, writeSnapshot } from '../src/store/snapshot.js';

const BATCH = 32;
const SECOND_KEY_SHARE = 0.575;
/** Key kinds of the synthetic devices; MISS_KIND keys are never inserted. */
const FIRST_KIND = 0;
const SECOND_KIND = 1;
const MISS_KIND = 3;

const { values } = parseArgs({
  options: {
    devices: { type: 'string', default: '10000000' },
    lookups: { type: 'string', default: '1000000' },
    snapshot: { type: 'string' },
  },
  strict: true,
});
const devices = Number(values.devices);
const lookups = Number(values.lookups);
if (!Number.isSafeInteger(devices) || devices < 1 || devices >= 2 ** 30) throw new Error(`--devices must be in 1..2^30, got ${values.devices}`);
if (!Number.isSafeInteger(lookups) || lookups < BATCH) throw new Error(`--lookups must be at least ${BATCH}, got ${values.lookups}`);
const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);

if (values.snapshot) measureLoadedStore(values.snapshot);
else buildWriteAndMeasure();

function buildWriteAndMeasure(): void {
  console.log(`embedded device store, ${devices.toLocaleString('en')} devices (Node ${process.version})`);
  let started = process.hrtime.bigint();
  const store = EmbeddedDeviceStore.create(schema, { devices, keys: Math.ceil(devices * (1 + SECOND_KEY_SHARE)) });
  const writer = new ProfileRecordWriter(schema);
  const keys = new Uint8Array(2 * DEVICE_KEY_BYTES);
  for (let device = 0; device < devices; device++) {
    writer.clear();
    writer.write(schema.field('credit_band'), (device % 5) + 1);
    writer.write(schema.field('income_score'), (device % 1000) / 1000);
    fillKey(keys, 0, device, FIRST_KIND);
    const second = hasSecondKey(device);
    if (second) fillKey(keys, DEVICE_KEY_BYTES, device, SECOND_KIND);
    store.addDevice(writer.record, second ? keys : keys.subarray(0, DEVICE_KEY_BYTES));
  }
  console.log(
    `build:    ${seconds(started)} s, ${store.keyCount.toLocaleString('en')} keys in ${store.tableCapacity.toLocaleString('en')} slots ` +
      `(load ${(store.keyCount / store.tableCapacity).toFixed(2)}), buffers ${mib(store.memoryBytes)} MiB`,
  );

  const path = join(tmpdir(), `bench-store-${process.pid}.snapshot`);
  started = process.hrtime.bigint();
  const { header } = writeSnapshot(store, path);
  console.log(`write:    ${seconds(started)} s, ${mib(header.fileBytes)} MiB snapshot`);
  try {
    const child = spawnSync(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), '--devices', String(devices), '--lookups', String(lookups), '--snapshot', path],
      { stdio: 'inherit' },
    );
    if (child.status !== 0) throw new Error(`lookup process failed with status ${child.status}`);
  } finally {
    rmSync(path, { force: true });
  }
}

function measureLoadedStore(path: string): void {
  const { store, millis } = loadSnapshot(path, schema);
  const memory = process.memoryUsage();
  console.log(`load:     ${(millis / 1000).toFixed(2)} s (read + SHA-256 + table check), in a fresh process`);
  console.log(
    `memory:   RSS ${mib(memory.rss)} MiB after load (store buffers ${mib(store.memoryBytes)} MiB, JS heap ${mib(memory.heapUsed)} MiB)`,
  );

  const hits = queryKeys(lookups / 2, true);
  const misses = queryKeys(lookups / 2, false);
  const found = runAll(store, hits) + runAll(store, misses);
  if (found !== hits.length / DEVICE_KEY_BYTES) throw new Error(`expected every hit key to be found, found ${found}`);
  let sink = 0;

  const clock = clockCost();
  console.log(`lookups:  ${lookups.toLocaleString('en')} random keys, half hits, half misses; clock read ~${clock.toFixed(0)} ns`);
  for (const [name, queries] of [['hits', hits], ['misses', misses]] as const) {
    const batched = timeBatched(store, queries);
    const single = timeSingle(store, queries);
    sink += batched.sink + single.sink;
    console.log(`  ${name.padEnd(6)} batched of ${BATCH}: ${percentiles(batched.samples)}`);
    console.log(`  ${name.padEnd(6)} single (+clock):  ${percentiles(single.samples)}`);
  }
  // Printed so the timed lookups cannot be optimised away.
  console.log(`(sum of returned offsets: ${sink})`);
}

/** Query keys in random order: existing keys of random devices, or never-inserted keys. */
function queryKeys(count: number, hit: boolean): Uint8Array {
  const keys = new Uint8Array(Math.floor(count) * DEVICE_KEY_BYTES);
  let state = hit ? 0x1234567 : 0x7654321;
  for (let i = 0; i < keys.length / DEVICE_KEY_BYTES; i++) {
    state = mix32(state + 0x9e3779b9);
    const device = state % devices;
    const kind = !hit ? MISS_KIND : hasSecondKey(device) && state & 1 ? SECOND_KIND : FIRST_KIND;
    fillKey(keys, i * DEVICE_KEY_BYTES, device, kind);
  }
  return keys;
}

function runAll(store: EmbeddedDeviceStore, queries: Uint8Array): number {
  let found = 0;
  for (let at = 0; at < queries.length; at += DEVICE_KEY_BYTES) if (store.find(queries, at) >= 0) found++;
  return found;
}

function timeBatched(store: EmbeddedDeviceStore, queries: Uint8Array): { samples: Float64Array; sink: number } {
  const batches = Math.floor(queries.length / DEVICE_KEY_BYTES / BATCH);
  const samples = new Float64Array(batches);
  let sink = 0;
  for (let batch = 0; batch < batches; batch++) {
    const from = batch * BATCH * DEVICE_KEY_BYTES;
    const to = from + BATCH * DEVICE_KEY_BYTES;
    const started = process.hrtime.bigint();
    for (let at = from; at < to; at += DEVICE_KEY_BYTES) sink += store.find(queries, at);
    samples[batch] = Number(process.hrtime.bigint() - started) / BATCH;
  }
  return { samples, sink };
}

function timeSingle(store: EmbeddedDeviceStore, queries: Uint8Array): { samples: Float64Array; sink: number } {
  const samples = new Float64Array(queries.length / DEVICE_KEY_BYTES);
  let sink = 0;
  for (let i = 0; i < samples.length; i++) {
    const started = process.hrtime.bigint();
    sink += store.find(queries, i * DEVICE_KEY_BYTES);
    samples[i] = Number(process.hrtime.bigint() - started);
  }
  return { samples, sink };
}

function clockCost(): number {
  const rounds = 100_000;
  const samples = new Float64Array(rounds);
  for (let i = 0; i < rounds; i++) {
    const started = process.hrtime.bigint();
    samples[i] = Number(process.hrtime.bigint() - started);
  }
  return samples.sort()[rounds >> 1]!;
}

function percentiles(samples: Float64Array): string {
  const sorted = samples.sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return `p50 ${at(0.5).toFixed(0)} ns, p99 ${at(0.99).toFixed(0)} ns, p99.9 ${at(0.999).toFixed(0)} ns, max ${(sorted[sorted.length - 1]! / 1000).toFixed(1)} us`;
}

/**
 * Key `kind` of `device`: the first word is a bijection of (device, kind), so keys never repeat, and well mixed,
 * so the table sees MD5-like uniform home slots; the other words derive from it.
 */
function fillKey(out: Uint8Array, offset: number, device: number, kind: number): void {
  const view = new DataView(out.buffer, out.byteOffset + offset, DEVICE_KEY_BYTES);
  const first = mix32(device * 4 + kind);
  view.setUint32(0, first, true);
  view.setUint32(4, mix32(first ^ 0x68e31da4), true);
  view.setUint32(8, mix32(first ^ 0xb5297a4d), true);
  view.setUint32(12, mix32(first ^ 0x1b56c4e9), true);
}

function hasSecondKey(device: number): boolean {
  return mix32(device ^ 0x5bd1e995) / 2 ** 32 < SECOND_KEY_SHARE;
}

/** murmur3's finaliser: a bijection on 32-bit integers that spreads every input bit. */
function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function seconds(started: bigint): string {
  return (Number(process.hrtime.bigint() - started) / 1e9).toFixed(2);
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(0);
}
