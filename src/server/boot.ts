import type { Config } from '../config.js';
import { Engine, ERROR_FALLBACK_REASON, type DecisionSink } from '../engine/engine.js';
import { DeviceIdKind, type BidContext, type Decision } from '../engine/types.js';
import type { MediaModule, MediaRules } from '../media/module.js';
import { MEDIA_MODULES } from '../media/registry.js';
import type { SimulatedRequest } from '../media/simulated-request.js';
import { DecisionLogRecorder } from '../observe/decision-log/recorder.js';
import { log } from '../observe/log.js';
import { createMetrics, type Metrics } from '../observe/metrics.js';
import { InlineScorer } from '../scoring/inline-scorer.js';
import { ScoringPool, type ScoringJob } from '../scoring/pool.js';
import type { PreparedModels } from '../scoring/manifest.js';
import { prepareModelsOffThread } from '../scoring/prepare.js';
import { BatchScorer } from '../scoring/scorer.js';
import { loadProfileSchema, type ProfileSchema } from '../store/profile-schema.js';
import { EmbeddedDeviceStore, SLOT_BYTES } from '../store/embedded.js';
import { RedisDeviceStore } from '../store/redis.js';
import { trackRedisStore } from '../observe/redis-metrics.js';
import { loadSnapshot } from '../store/snapshot.js';
import { loadStrategyBook, type StrategyBook } from '../strategy/book.js';

/** Everything a serving thread needs, loaded and validated before the first request: any failure stops the start. */
export interface Runtime {
  engine: Engine;
  /** Releases what the runtime holds outside the process (the Redis connection). */
  close(): Promise<void>;
  metrics: Metrics;
  profile: ProfileSchema;
  scoring: ScoringKind;
  /** Log lines name the serving thread in app-per-thread mode. */
  thread: number | undefined;
  /** Every registered media, with its configured rules. */
  media: readonly ServedMedia[];
  /** This thread's decision log; null when `decisionLog.enabled` is off. */
  decisionLog: DecisionLogRecorder | null;
}

/** `pool`: score on a piscina pool (scoring-pool mode); `inline`: on the serving thread itself (app-per-thread). */
export type ScoringKind = 'pool' | 'inline';
export type Scorer = ScoringPool | InlineScorer;

export interface ServedMedia {
  module: MediaModule;
  rules: MediaRules;
}

function servedMedia(config: Config): ServedMedia[] {
  return MEDIA_MODULES.map((module) => ({ module, rules: config.media[module.name]! }));
}

export interface BootOptions {
  scoring: ScoringKind;
  /** A store already in memory (shared by the main thread); otherwise the one the config names is opened. */
  store?: EmbeddedDeviceStore | undefined;
  processMetrics: boolean;
  thread?: number;
}

export function loadDeviceStore(config: Config, profile: ProfileSchema): EmbeddedDeviceStore {
  const snapshot = loadSnapshot(config.store.snapshot, profile);
  log('info', 'device_store_loaded', {
    path: config.store.snapshot,
    devices: snapshot.store.deviceCount,
    keys: snapshot.store.keyCount,
    megabytes: Math.round(snapshot.store.memoryBytes / 2 ** 20),
    millis: Math.round(snapshot.millis),
  });
  return snapshot.store;
}

export async function boot(config: Config, options: BootOptions): Promise<Runtime> {
  const metrics = createMetrics({ processMetrics: options.processMetrics });
  const profile = loadProfileSchema(config.store.profileSchema);
  const store = options.store ?? (config.store.kind === 'redis' ? await connectRedisStore(config, profile) : loadDeviceStore(config, profile));
  const embedded = store instanceof EmbeddedDeviceStore ? store : null;
  if (embedded) metrics.devicesLoaded.set(embedded.deviceCount);
  const { scorer, book } = await loadModelsAndStrategies(config, options.scoring, embedded, profile, options.thread);
  showModelVersions(metrics, scorer.modelVersion);
  showBookVersion(metrics, book.version);
  const engine = new Engine({ config: config.engine, media: config.media, book, store, scorer, profile, metrics });
  const media = servedMedia(config);
  log('info', 'request_path_warmed_up', { thread: options.thread, ...(await warmUpRequestPath(engine, media, embedded, metrics)) });
  const decisionLog = config.decisionLog.enabled
    ? await DecisionLogRecorder.open(config.decisionLog, options.thread ?? 0, metrics.decisionLogRecords, (error) => {
        metrics.decisionLogWriteErrors.inc();
        metrics.errorLog.report('decision_log', error);
      })
    : null;
  let stopTracking = () => {};
  if (store instanceof RedisDeviceStore) {
    // Counted from here: the warm-up's made-up devices are not traffic.
    const timer = setInterval(trackRedisStore(metrics.registry, store), 1000);
    stopTracking = () => clearInterval(timer);
  }
  return {
    engine,
    metrics,
    profile,
    scoring: options.scoring,
    thread: options.thread,
    media,
    decisionLog,
    async close() {
      stopTracking();
      await decisionLog?.close();
      const current = engine.parts.store;
      if (current instanceof RedisDeviceStore) await current.close();
    },
  };
}

export async function connectRedisStore(config: Config, profile: ProfileSchema): Promise<RedisDeviceStore> {
  const store = await RedisDeviceStore.connect(config.store.redis!, profile);
  log('info', 'device_store_connected', { kind: 'redis', target: store.target });
  return store;
}

/**
 * Models (compiled, warmed up) and the strategy book compiled against their names: the two change together, so
 * a reload can never pair a book with models it was not checked against.
 */
export async function loadModelsAndStrategies(
  config: Config,
  scoring: ScoringKind,
  store: EmbeddedDeviceStore | null,
  profile: ProfileSchema,
  thread: number | undefined,
  /** Models already prepared (by the main thread, for every serving thread); otherwise prepared here, off-thread. */
  prepared?: PreparedModels,
): Promise<{ scorer: Scorer; book: StrategyBook }> {
  const { manifest } = config.scoring;
  const { profileSchema } = config.store;
  let scorer: Scorer;
  if (scoring === 'pool') {
    // The workers parse the model files themselves; checked off this serving thread first, so a bad file is refused
    // with its own message before any worker starts.
    if (!prepared) await prepareModelsOffThread(manifest, profileSchema);
    scorer = new ScoringPool({ manifestPath: manifest, profileSchemaPath: profileSchema, threads: config.scoring.threads, maxBatch: config.scoring.maxBatch });
  } else {
    scorer = new InlineScorer(await BatchScorer.compile(prepared ?? (await prepareModelsOffThread(manifest, profileSchema)), profileSchema));
  }
  try {
    const book = loadStrategyBook(config.strategies, profile, scorer.modelNames);
    log('info', 'models_loaded', { thread, manifest: config.scoring.manifest, models: scorer.modelVersion, scoring });
    log('info', 'strategies_loaded', { thread, path: config.strategies, book: book.version, bidding: book.bidStrategyIds, ...(book.warnings.length > 0 ? { warnings: book.warnings } : {}) });
    log('info', 'scoring_warmed_up', { thread, ...(await warmUpScoring(scorer, store)) });
    return { scorer, book };
  } catch (err) {
    await scorer.close();
    throw err;
  }
}

export function showBookVersion(metrics: Metrics, version: string): void {
  metrics.bookInfo.reset();
  metrics.bookInfo.set({ version }, 1);
}

export function showModelVersions(metrics: Metrics, modelVersion: string): void {
  metrics.modelInfo.reset();
  for (const entry of modelVersion.split(',')) {
    const [model, version] = entry.split('@');
    metrics.modelInfo.set({ model: model!, version: version ?? '' }, 1);
  }
}

/**
 * A cold worker needs a few thousand evaluations before V8 has compiled the tree walk; without this the first
 * requests after a start or deploy miss their deadline. Scores a spread of stored devices (and unknown ones), one
 * batch at a time so the pool never sheds them.
 */
async function warmUpScoring(pool: Scorer, store: EmbeddedDeviceStore | null) {
  const started = performance.now();
  const devices = store ? store.deviceCount : 0;
  // Inline scoring answers synchronously: small rounds with a macrotask between them keep a reloading thread
  // serving its requests (a round of 16 blocks it for about 0.3 ms).
  const perRound = Math.max(pool.maxBatch, 16);
  const rounds = Math.ceil(12_800 / perRound);
  let scored = 0;
  let missed = 0;
  for (let round = 0; round < rounds; round++) {
    await new Promise<void>((resolve) => {
      let pending = perRound;
      const done = () => --pending === 0 && resolve();
      for (let i = 0; i < perRound; i++) {
        const n = round * perRound + i;
        const known = devices > 0 && n % 8 !== 0;
        const job: ScoringJob = {
          records: known ? store!.records : null,
          recordOffset: known ? ((n * 7919) % devices) * store!.recordBytes : 0,
          os: 1 + (n % 2),
          deadline: performance.now() + 30_000,
          onScored: () => (scored++, done()),
          onDeadline: () => (missed++, done()),
        };
        pool.submit(job);
      }
    });
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (missed > 0) throw new Error(`scoring warm-up: ${missed} of ${scored + missed} jobs failed; see worker errors above`);
  return { scored, millis: Math.round(performance.now() - started) };
}

/**
 * The main thread's half of the warm-up: protobufjs builds its decoders on first use and V8 compiles the pipeline
 * only when it runs hot, which would make the first live requests miss their deadline. Runs stored and unknown
 * devices through every adapter and the engine, as test traffic, and forgets the counts it left in the metrics.
 */
async function warmUpRequestPath(engine: Engine, media: readonly ServedMedia[], store: EmbeddedDeviceStore | null, metrics: Metrics) {
  const started = performance.now();
  // Stored devices where the store can list them (embedded); otherwise made-up keys, i.e. unknown devices.
  const table = store ? store.tableBytes : Buffer.alloc(SLOT_BYTES * 997, 7);
  const slots = table.length / SLOT_BYTES;
  let decided = 0;
  let pending = 0;
  let allDone: () => void = () => {};
  let failed = 0;
  const adapterOf = new Map(media.map((m) => [m.module.name, m.module.adapter]));
  const sink: DecisionSink = {
    deliver(context: BidContext, decision: Decision) {
      adapterOf.get(context.media)!.encode(context, decision);
      if (decision.reason === ERROR_FALLBACK_REASON) failed++;
      decided++;
      if (--pending === 0) allDone();
    },
    fail() {
      failed++;
      if (--pending === 0) allDone();
    },
  };
  const requests = 3_000;
  for (const { module } of media) {
    const { name, client, adapter } = module;
    const asked = [...engine.parts.book.strategyIdsOn(name).values()];
    for (let round = 0; round < requests / 100; round++) {
      await new Promise<void>((resolve) => {
        allDone = resolve;
        pending = 100;
        for (let i = 0; i < 100; i++) {
          const n = round * 100 + i;
          const slot = ((n * 2_654_435_761) >>> 0) % slots;
          const key = n % 10 === 0 ? Buffer.alloc(16, n & 0xff) : table.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + 16);
          const request: SimulatedRequest = {
            requestId: `warm-up-${name}-${n}`,
            os: n % 4 === 0 ? 'ios' : 'android',
            ids: [{ kind: n % 4 === 0 ? DeviceIdKind.IDFA_MD5 : DeviceIdKind.OAID_MD5, md5: Buffer.from(key).toString('hex') }],
            platformExperimentIds: n % 3 === 0 ? [32768] : [],
            isPing: false,
            isTest: true,
            secondRequest: n % 20 === 0,
            ads: n % 20 === 0 ? [{ adGroupId: '1', strategyId: '', creatives: [{ creativeId: '1', templateId: 311 }] }] : [],
            askedStrategyIds: asked,
          };
          const { body, contentType } = client.encodeRequest(request, { json: n % 10 === 5 });
          // Received "in the future": warm-up requests are never cut short by the scoring deadline.
          engine.handle(adapter.decode(body, contentType), sink, performance.now() + 30_000);
        }
      });
    }
  }
  // Parts that throw on the warm-up's ordinary requests would throw on live traffic: refuse them now.
  if (failed > 0) throw new Error(`${failed} of ${decided + failed} warm-up requests failed; the first error is logged as request_error`);
  metrics.deviceLookups.reset();
  metrics.deadlineFallbacks.reset();
  for (const { module } of media) metrics.deadlineFallbacks.labels(module.name).inc(0);
  return { decided, millis: Math.round(performance.now() - started) };
}
