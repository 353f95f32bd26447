import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import type { ChainableCommander } from 'ioredis';
import { Cluster } from '../store/ioredis.js';
import { DEVICE_KEY_BYTES } from '../store/device-key.js';
import { SLOT_BYTES, type EmbeddedDeviceStore } from '../store/embedded.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../store/profile-schema.js';
import {
  connectRedis,
  describeTarget,
  layoutMismatch,
  layoutStampKey,
  layoutStampOf,
  readLayoutStamp,
  redisConnectionSchema,
  RedisStoreError,
  type RedisClient,
} from '../store/redis-client.js';
import { groupKeysByNode } from '../store/redis-slot.js';
import { loadSnapshot } from '../store/snapshot.js';
import { parseCommandLine } from './command-line.js';

/**
 * Writes a device snapshot into Redis in the layout RedisDeviceStore reads (see src/store/redis.ts): every device
 * key of the snapshot's key table becomes keyPrefix + 16 key bytes -> its profile record. Writes go out as
 * pipelined SETs of `batchKeys` keys, paced by a token bucket to `keysPerSecond`, so that loading a base into a
 * Redis that is serving lookups does not crowd out the reads (bench/redis.ts measures how much it costs them).
 * The layout stamp is written last; a prefix stamped with another profile layout is refused before any write.
 */
export const DEFAULT_LOAD_RATE = 50_000;
export const DEFAULT_LOAD_BATCH = 1_000;
const REF_OFFSET = DEVICE_KEY_BYTES;

export interface RedisLoadOptions {
  client: RedisClient;
  store: EmbeddedDeviceStore;
  keyPrefix: string;
  keysPerSecond: number;
  batchKeys: number;
  /** Expire the device keys after this long; undefined keeps them until overwritten. */
  ttlSeconds?: number | undefined;
  onProgress?: ((keysWritten: number) => void) | undefined;
}

export interface RedisLoadReport {
  keys: number;
  devices: number;
  /** Pipelines sent (one per batch, one per node and batch in a Cluster). */
  roundTrips: number;
  millis: number;
  /** Achieved write rate over the whole load. */
  keysPerSecond: number;
}

/**
 * Allows `perSecond` on average and at most `capacity` at once. Starts empty, so even a short load never runs above
 * the rate: keys written <= rate x time, from the first write on.
 */
export class TokenBucket {
  private tokens = 0;
  private last = performance.now();

  constructor(
    private readonly perSecond: number,
    private readonly capacity: number,
  ) {}

  /** Resolves once `count` (at most the capacity) tokens are taken. */
  async take(count: number): Promise<void> {
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.perSecond) / 1000);
      this.last = now;
      if (this.tokens >= count) {
        this.tokens -= count;
        return;
      }
      await sleep(((count - this.tokens) * 1000) / this.perSecond);
    }
  }
}

export async function loadIntoRedis(options: RedisLoadOptions): Promise<RedisLoadReport> {
  const { client, store, keyPrefix, batchKeys, ttlSeconds } = options;
  if (!Number.isInteger(batchKeys) || batchKeys < 1) throw new RangeError(`batch must be a whole number of keys >= 1, got ${batchKeys}`);
  if (!(options.keysPerSecond > 0)) throw new RangeError(`rate must be > 0 keys per second, got ${options.keysPerSecond}`);
  if (ttlSeconds !== undefined && (!Number.isInteger(ttlSeconds) || ttlSeconds < 1))
    throw new RangeError(`ttl must be a whole number of seconds >= 1, got ${ttlSeconds}`);
  const stamp = layoutStampOf(store.schema);
  const existing = await readLayoutStamp(client, keyPrefix);
  const mismatch = existing && layoutMismatch(existing, stamp);
  if (mismatch) throw new RedisStoreError(`prefix "${keyPrefix}" holds records ${mismatch}; load under a new --prefix`);

  const started = performance.now();
  // Room for two batches: tokens that accrue while a batch is on the wire or a sleep overshoots are not lost.
  const bucket = new TokenBucket(options.keysPerSecond, 2 * batchKeys);
  const prefix = Buffer.from(keyPrefix);
  const table = store.tableBytes;
  const refs = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const records = store.records;
  const recordBytes = store.recordBytes;
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  let written = 0;
  let roundTrips = 0;
  const writeBatch = async () => {
    await bucket.take(keys.length);
    roundTrips += await writePipelined(client, keys, values, ttlSeconds);
    written += keys.length;
    keys.length = 0;
    values.length = 0;
    options.onProgress?.(written);
  };
  for (let at = 0; at < table.length; at += SLOT_BYTES) {
    const ref = refs.getUint32(at + REF_OFFSET, true);
    if (ref === 0) continue;
    const key = Buffer.allocUnsafe(prefix.length + DEVICE_KEY_BYTES);
    prefix.copy(key, 0);
    key.set(table.subarray(at, at + DEVICE_KEY_BYTES), prefix.length);
    keys.push(key);
    values.push(Buffer.from(records.buffer, records.byteOffset + (ref - 1) * recordBytes, recordBytes));
    if (keys.length === batchKeys) await writeBatch();
  }
  if (keys.length > 0) await writeBatch();
  await client.set(layoutStampKey(keyPrefix), JSON.stringify(stamp));
  const millis = performance.now() - started;
  return { keys: written, devices: store.deviceCount, roundTrips, millis, keysPerSecond: (written * 1000) / millis };
}

/** One pipeline of SETs (one per node in a Cluster); throws on the first refused write. Returns pipelines sent. */
async function writePipelined(client: RedisClient, keys: Buffer[], values: Buffer[], ttlSeconds: number | undefined): Promise<number> {
  const groups = client instanceof Cluster ? groupKeysByNode(client, keys) : [keys.map((_, i) => i)];
  if (groups === undefined) throw new RedisStoreError('the Redis Cluster client has no slot map (not connected)');
  const results = await Promise.all(
    groups.map((positions) => {
      const pipeline: ChainableCommander = client.pipeline();
      for (const i of positions) {
        if (ttlSeconds === undefined) pipeline.set(keys[i]!, values[i]!);
        else pipeline.set(keys[i]!, values[i]!, 'EX', ttlSeconds);
      }
      return pipeline.exec();
    }),
  );
  for (const result of results) {
    const failed = result?.find(([error]) => error !== null);
    if (result === null || failed) throw new RedisStoreError(`a write was refused: ${failed?.[0]?.message ?? 'pipeline discarded'}`);
  }
  return groups.length;
}

const USAGE = `usage: load-redis --snapshot FILE (--url redis://HOST:PORT | --cluster-node HOST:PORT ...) [--prefix rta:dev:]
                  [--rate ${DEFAULT_LOAD_RATE}] [--batch ${DEFAULT_LOAD_BATCH}] [--ttl-seconds N] [--profile-schema FILE]
Writes every device key of the snapshot into Redis (key = prefix + 16 key bytes, value = the profile record),
at most --rate keys per second in pipelines of --batch keys, then the prefix's layout stamp.`;

async function main(argv: string[]): Promise<number> {
  const values = parseCommandLine(
    argv,
    {
      snapshot: { type: 'string' },
      url: { type: 'string' },
      'cluster-node': { type: 'string', multiple: true },
      prefix: { type: 'string', default: 'rta:dev:' },
      rate: { type: 'string', default: String(DEFAULT_LOAD_RATE) },
      batch: { type: 'string', default: String(DEFAULT_LOAD_BATCH) },
      'ttl-seconds': { type: 'string' },
      'profile-schema': { type: 'string', default: DEFAULT_PROFILE_SCHEMA_PATH },
    },
    USAGE,
  );
  if (typeof values === 'number') return values;
  const usageError = (message: string) => {
    console.error(`${message}\n${USAGE}`);
    return 2;
  };
  if (!values.snapshot) return usageError('--snapshot is required');
  const rate = Number(values.rate);
  const batch = Number(values.batch);
  const ttlSeconds = values['ttl-seconds'] === undefined ? undefined : Number(values['ttl-seconds']);
  if (!(rate > 0) || !Number.isFinite(rate)) return usageError(`--rate must be a number of keys per second > 0, got "${values.rate}"`);
  if (!Number.isSafeInteger(batch) || batch < 1) return usageError(`--batch must be a whole number >= 1, got "${values.batch}"`);
  if (ttlSeconds !== undefined && (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1))
    return usageError(`--ttl-seconds must be a whole number >= 1, got "${values['ttl-seconds']}"`);
  const connection = redisConnectionSchema.safeParse({ url: values.url, nodes: values['cluster-node'] });
  if (!connection.success) return usageError(`--url / --cluster-node: ${connection.error.issues.map((issue) => issue.message).join('; ')}`);

  let client: RedisClient | undefined;
  const bar = new cliProgress.SingleBar({ format: 'device keys {bar} {percentage}% | {value}/{total} | {eta_formatted} left', hideCursor: true });
  try {
    const { store } = loadSnapshot(values.snapshot, loadProfileSchema(values['profile-schema']));
    client = await connectRedis(connection.data, 'rta-load-redis');
    bar.start(store.keyCount, 0);
    const report = await loadIntoRedis({
      client,
      store,
      keyPrefix: values.prefix,
      keysPerSecond: rate,
      batchKeys: batch,
      ttlSeconds,
      onProgress: (written) => bar.update(written),
    });
    bar.stop();
    console.log(
      `loaded ${report.keys} device keys (${report.devices} devices) into ${describeTarget(connection.data)} under "${values.prefix}" ` +
        `in ${(report.millis / 1000).toFixed(1)} s: ${Math.round(report.keysPerSecond)} keys/s (limit ${rate}), ${report.roundTrips} pipelines` +
        (ttlSeconds === undefined ? '' : `, expiring in ${ttlSeconds} s`),
    );
    return 0;
  } catch (error) {
    bar.stop();
    console.error(`load-redis: ${(error as Error).message}`);
    return 1;
  } finally {
    client?.disconnect();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
