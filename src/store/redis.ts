import { Cluster } from './ioredis.js';
import { LRUCache } from 'lru-cache';
import { z } from 'zod';
import { CallbackErrors } from '../engine/callback-errors.js';
import type { AsyncDeviceStore, DeviceLookupJob } from '../engine/engine.js';
import { DEVICE_KEY_BYTES } from './device-key.js';
import type { ProfileSchema } from './profile-schema.js';
import {
  connectRedis,
  describeTarget,
  exactlyOneTarget,
  layoutMismatch,
  layoutStampKey,
  layoutStampOf,
  readLayoutStamp,
  redisConnectionShape,
  RedisStoreError,
  type RedisClient,
} from './redis-client.js';
import { groupKeysByNode } from './redis-slot.js';

/**
 * The device store for a base larger than one node's memory, or shared by many engine nodes: profile records in
 * Redis (or Redis Cluster), behind an in-process LRU hot tier.
 *
 * Layout in Redis: key = keyPrefix + the 16 raw device key bytes (binary), value = exactly one profile record
 * (data/profile-schema.json). A device known by several ids is several keys holding copies of the same record:
 * one GET answers, where an indirection (id -> device -> record) would cost a second round trip on every lookup;
 * the price is a few extra copies of a 32-byte record and writers updating every id of a device.
 *
 * Lookups issued in one event-loop turn leave together on setImmediate: one MGET carrying every key of every
 * request (one pipeline per node in a Cluster). One timer per such round trip enforces the budget: requests still
 * waiting when it fires are answered as unknown devices, and the reply, whenever it comes, is dropped.
 */

export const redisStoreOptionsSchema = z
  .object({
    ...redisConnectionShape,
    /** Namespace of the device keys; a new profile layout goes under a new prefix. */
    keyPrefix: z.string().min(1).max(64).default('rta:dev:'),
    /** From a round trip's departure: requests not answered by then are decided as unknown devices. */
    lookupBudgetMicros: z.number().int().min(100).max(100_000).default(1_000),
    /** Beyond this many unanswered round trips (a stalled server), lookups are answered as unknown at once. */
    maxPendingRoundTrips: z.number().int().min(1).max(100_000).default(64),
    cache: z
      .object({
        /** Devices (found or known missing) kept in process; 0 turns the hot tier off. */
        maxEntries: z.number().int().min(0).max(50_000_000).default(200_000),
        /** How long a cached profile is served before Redis is asked again (how stale an update may be). */
        ttlMs: z.number().int().min(1).max(86_400_000).default(60_000),
        /** How long "not in the base" is remembered; 0 never remembers it. */
        negativeTtlMs: z.number().int().min(0).max(86_400_000).default(5_000),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine(exactlyOneTarget);

export type RedisStoreOptions = z.infer<typeof redisStoreOptionsSchema>;

/** Counters in requests (lookups), except where noted. Plain numbers; the metrics module exports them. */
export interface RedisStoreStats {
  lookups: number;
  /** Answered from a cached profile, without Redis. */
  cacheHits: number;
  /** Every key cached as not in the base: answered as unknown without Redis. */
  negativeHits: number;
  /** Sent to Redis. */
  cacheMisses: number;
  /** MGETs / pipelines sent (one per event-loop turn, one per node in a Cluster). */
  roundTrips: number;
  /** Device keys asked of Redis. */
  keysRequested: number;
  /** Answered as unknown because the budget ran out first. */
  timeouts: number;
  /** Answered as unknown because Redis returned an error or the connection failed mid-request. */
  errors: number;
  /** Answered as unknown at once because there was no connection (Redis down, reconnecting). */
  unavailable: number;
  /** Answered as unknown at once because maxPendingRoundTrips round trips were outstanding. */
  shed: number;
  /** Values of the wrong length (not a profile record of this layout): treated as missing. In keys. */
  corrupt: number;
  /** Round trips answered after their requests had been given up on; the replies were dropped. */
  lateReplies: number;
}

/** Cached "this key is not in the base". */
const KNOWN_MISSING = new Uint8Array(0);

type Outcome = 'timeouts' | 'errors' | 'unavailable' | 'shed';

/** The lookups of one event-loop turn, from their departure to their one answer each. */
class LookupBatch {
  readonly jobs: DeviceLookupJob[] = [];
  /** Per job: position of its first asked key; its keys run to the next job's first. */
  readonly firstKey: number[] = [];
  /** Per job: a cached lower-preference key to answer with when none of the asked keys is in Redis (-1: none). */
  readonly fallbackIndex: number[] = [];
  readonly fallbackRecord: Uint8Array[] = [];
  /** Per asked key: its index in the job's lookupKeys, its cache key, its Redis key. */
  readonly keyIndex: number[] = [];
  readonly cacheKeys: string[] = [];
  readonly redisKeys: Buffer[] = [];
  values: (Buffer | null)[] = [];
  outstanding = 0;
  error: Error | undefined;
  settled = false;
  timer: NodeJS.Timeout | undefined;

  addJob(job: DeviceLookupJob): void {
    this.jobs.push(job);
    this.firstKey.push(this.keyIndex.length);
    this.fallbackIndex.push(-1);
    this.fallbackRecord.push(KNOWN_MISSING);
  }

  setFallback(keyIndex: number, record: Uint8Array): void {
    const job = this.jobs.length - 1;
    this.fallbackIndex[job] = keyIndex;
    this.fallbackRecord[job] = record;
  }
}

export class RedisDeviceStore implements AsyncDeviceStore {
  readonly stats: RedisStoreStats = {
    lookups: 0,
    cacheHits: 0,
    negativeHits: 0,
    cacheMisses: 0,
    roundTrips: 0,
    keysRequested: 0,
    timeouts: 0,
    errors: 0,
    unavailable: 0,
    shed: 0,
    corrupt: 0,
    lateReplies: 0,
  };
  /** Message of the last Redis error behind an `errors` count, for logs. */
  lastError = '';
  readonly target: string;
  /** Redis data changes under us; the version names what we read: the key prefix and the profile schema. */
  readonly version: string;
  private readonly cache: LRUCache<string, Uint8Array> | undefined;
  private readonly prefix: Buffer;
  private readonly recordBytes: number;
  private readonly budgetMs: number;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly maxPendingRoundTrips: number;
  private pending: LookupBatch | undefined;
  private roundTripsInFlight = 0;
  private readonly callbackErrors = new CallbackErrors();

  private constructor(
    private readonly client: RedisClient,
    options: RedisStoreOptions,
    schema: ProfileSchema,
  ) {
    this.target = describeTarget(options);
    this.version = `redis-${options.keyPrefix}schema${schema.version}`;
    this.prefix = Buffer.from(options.keyPrefix);
    this.recordBytes = schema.recordBytes;
    this.budgetMs = options.lookupBudgetMicros / 1000;
    this.ttlMs = options.cache.ttlMs;
    this.negativeTtlMs = options.cache.negativeTtlMs;
    this.maxPendingRoundTrips = options.maxPendingRoundTrips;
    this.cache = options.cache.maxEntries > 0 ? new LRUCache({ max: options.cache.maxEntries, ttl: options.cache.ttlMs }) : undefined;
  }

  /**
   * Connects and checks that the records under keyPrefix were written for this profile layout. Throws
   * RedisStoreError, naming the target and the cause, when Redis cannot be reached within connectTimeoutMs or the
   * base was never loaded or was loaded for another layout.
   */
  static async connect(options: RedisStoreOptions, schema: ProfileSchema): Promise<RedisDeviceStore> {
    const client = await connectRedis(options, 'rta-engine');
    try {
      const stamp = await readLayoutStamp(client, options.keyPrefix);
      const key = layoutStampKey(options.keyPrefix);
      if (stamp === undefined)
        throw new RedisStoreError(`${describeTarget(options)} holds no device base under prefix "${options.keyPrefix}" (no "${key}" key): load one with load-redis`);
      const mismatch = layoutMismatch(stamp, layoutStampOf(schema));
      if (mismatch) throw new RedisStoreError(`device base in ${describeTarget(options)} under prefix "${options.keyPrefix}" was ${mismatch}; load it again under a new prefix`);
    } catch (error) {
      client.disconnect();
      if (error instanceof RedisStoreError) throw error;
      throw new RedisStoreError(`${describeTarget(options)}: cannot read the layout stamp: ${(error as Error).message}`);
    }
    return new RedisDeviceStore(client, options, schema);
  }

  /** Whether a connection is up right now (lookups are answered as unknown while it is not). */
  get connected(): boolean {
    return this.client.status === 'ready';
  }

  get cachedDevices(): number {
    return this.cache?.size ?? 0;
  }

  /**
   * Answers the job once: from the hot tier at once when it settles the question, otherwise with the next round
   * trip. Keys cached as missing are not asked again; a cached lower-preference key ends the keys asked.
   */
  lookup(job: DeviceLookupJob): void {
    this.stats.lookups++;
    const keys = job.lookupKeys;
    const cache = this.cache;
    let batch: LookupBatch | undefined;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const cacheKey = cache === undefined ? '' : Buffer.from(key.buffer, key.byteOffset, DEVICE_KEY_BYTES).toString('latin1');
      const cached = cache?.get(cacheKey);
      if (cached === KNOWN_MISSING) continue;
      if (cached !== undefined) {
        if (batch !== undefined) {
          batch.setFallback(i, cached);
          break;
        }
        this.stats.cacheHits++;
        job.onProfileFound(i, cached, 0);
        return;
      }
      if (batch === undefined) {
        batch = this.pending ?? this.startBatch();
        batch.addJob(job);
      }
      batch.keyIndex.push(i);
      batch.cacheKeys.push(cacheKey);
      batch.redisKeys.push(this.redisKey(key));
    }
    if (batch === undefined) {
      this.stats.negativeHits++;
      job.onProfileMissing();
      return;
    }
    this.stats.cacheMisses++;
  }

  /** Stops serving: requests still waiting are answered as unknown, the connection is closed. */
  async close(): Promise<void> {
    this.client.disconnect();
  }

  private startBatch(): LookupBatch {
    const batch = new LookupBatch();
    this.pending = batch;
    setImmediate(this.flush);
    return batch;
  }

  private redisKey(key: Uint8Array): Buffer {
    const redisKey = Buffer.allocUnsafe(this.prefix.length + DEVICE_KEY_BYTES);
    this.prefix.copy(redisKey, 0);
    redisKey.set(key.subarray(0, DEVICE_KEY_BYTES), this.prefix.length);
    return redisKey;
  }

  private readonly flush = (): void => {
    const batch = this.pending!;
    this.pending = undefined;
    if (this.client.status !== 'ready') return this.giveUp(batch, 'unavailable');
    if (this.roundTripsInFlight >= this.maxPendingRoundTrips) return this.giveUp(batch, 'shed');
    if (this.client instanceof Cluster) {
      const groups = groupKeysByNode(this.client, batch.redisKeys);
      if (groups === undefined) return this.giveUp(batch, 'unavailable');
      this.sendPerNode(this.client, batch, groups);
    } else {
      batch.outstanding = 1;
      this.roundTripsInFlight++;
      this.client.mgetBuffer(batch.redisKeys).then(
        (values) => {
          batch.values = values;
          this.roundTripDone(batch, undefined);
        },
        (error: Error) => this.roundTripDone(batch, error),
      );
    }
    this.stats.roundTrips += batch.outstanding;
    this.stats.keysRequested += batch.redisKeys.length;
    batch.timer = setTimeout(this.budgetSpent, this.budgetMs, batch);
  };

  private sendPerNode(cluster: Cluster, batch: LookupBatch, groups: number[][]): void {
    batch.values = new Array<Buffer | null>(batch.redisKeys.length).fill(null);
    batch.outstanding = groups.length;
    for (const positions of groups) {
      const pipeline = cluster.pipeline();
      for (const position of positions) pipeline.getBuffer(batch.redisKeys[position]!);
      this.roundTripsInFlight++;
      pipeline.exec().then(
        (results) => {
          let error: Error | undefined = results === null ? new Error('pipeline discarded') : undefined;
          results?.forEach(([commandError, value], i) => {
            if (commandError) error ??= commandError;
            else batch.values[positions[i]!] = value as Buffer | null;
          });
          this.roundTripDone(batch, error);
        },
        (error: Error) => this.roundTripDone(batch, error),
      );
    }
  }

  private roundTripDone(batch: LookupBatch, error: Error | undefined): void {
    this.roundTripsInFlight--;
    batch.error ??= error;
    if (--batch.outstanding > 0) return;
    if (batch.settled) {
      this.stats.lateReplies++;
      return;
    }
    clearTimeout(batch.timer);
    if (batch.error) {
      this.lastError = batch.error.message;
      this.giveUp(batch, 'errors');
      return;
    }
    this.answer(batch);
  }

  private readonly budgetSpent = (batch: LookupBatch): void => {
    if (!batch.settled) this.giveUp(batch, 'timeouts');
  };

  /** The replies are in: per job, the first key in preference order holding a well-formed record wins. */
  private answer(batch: LookupBatch): void {
    batch.settled = true;
    const { jobs, firstKey, keyIndex, values, cacheKeys } = batch;
    for (let j = 0; j < jobs.length; j++) {
      const end = j + 1 < jobs.length ? firstKey[j + 1]! : keyIndex.length;
      let answered = false;
      for (let position = firstKey[j]!; position < end; position++) {
        const value = values[position];
        if (value === null || value === undefined) {
          if (this.negativeTtlMs > 0) this.cache?.set(cacheKeys[position]!, KNOWN_MISSING, { ttl: this.negativeTtlMs });
          continue;
        }
        if (value.length !== this.recordBytes) {
          this.stats.corrupt++;
          continue;
        }
        // A copy of its own: the reply buffer may be a view of a larger socket chunk, which a cache entry would pin.
        const record = new Uint8Array(value);
        this.cache?.set(cacheKeys[position]!, record, { ttl: this.ttlMs });
        if (!answered) {
          answered = true;
          this.notify(jobs[j]!, keyIndex[position]!, record);
        }
      }
      if (!answered) this.notifyFallback(batch, j);
    }
    this.callbackErrors.rethrow();
  }

  /** Redis did not answer usefully: each job gets its cached fallback, or is an unknown device. */
  private giveUp(batch: LookupBatch, outcome: Outcome): void {
    batch.settled = true;
    this.stats[outcome] += batch.jobs.length;
    for (let j = 0; j < batch.jobs.length; j++) this.notifyFallback(batch, j);
    this.callbackErrors.rethrow();
  }

  private notifyFallback(batch: LookupBatch, j: number): void {
    const keyIndex = batch.fallbackIndex[j]!;
    this.notify(batch.jobs[j]!, keyIndex, keyIndex < 0 ? undefined : batch.fallbackRecord[j]);
  }

  private notify(job: DeviceLookupJob, keyIndex: number, record: Uint8Array | undefined): void {
    try {
      if (record === undefined) job.onProfileMissing();
      else job.onProfileFound(keyIndex, record, 0);
    } catch (error) {
      this.callbackErrors.keep(error);
    }
  }
}
