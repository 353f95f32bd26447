import { availableParallelism, getPriority, setPriority } from 'node:os';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { Attribution } from '../attribution/attribution.js';
import { BidTuning } from '../controllers/bid-tuning.js';
import { CreativeSampling } from '../controllers/creative-sampling.js';
import type { DeviceStore } from '../engine/engine.js';
import { LEARNING_AUTHOR, OnlineLearning } from '../learning/online-learning.js';
import { adminNeedsToken, ConfigError, loadConfig, type Config } from '../config.js';
import { log } from '../observe/log.js';
import { createMetrics, type Metrics } from '../observe/metrics.js';
import { watch } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { basename, dirname } from 'node:path';
import { readManifest, type PreparedModels } from '../scoring/manifest.js';
import { prepareModelsOffThread } from '../scoring/prepare.js';
import type { ScoringPool } from '../scoring/pool.js';
import type { EmbeddedDeviceStore, SharedDeviceStoreBuffers } from '../store/embedded.js';
import { connectRedis } from '../store/redis-client.js';
import { loadProfileSchema, type ProfileSchema } from '../store/profile-schema.js';
import { compileStrategyBook, loadStrategyBook } from '../strategy/book.js';
import { BookHistory, BookVersions } from '../strategy/versions.js';
import { reloadRuntime, type ReloadTarget } from './reload.js';
import type { Explanation } from '../observe/explain.js';
import { createAdminApp } from './admin.js';
import { deviceFormRequest, explainRequest } from './explain.js';
import { MEDIA_NAMES } from '../media/registry.js';
import { boot, connectRedisStore, loadDeviceStore } from './boot.js';
import { createMediaApp, drain, listen } from './media-app.js';
import { inFlight } from './media-route.js';
import { ServingThreads } from './serving-threads.js';
import { loadNativeUws, type Uws } from './uws.js';

/**
 * Starts the engine: config, native uWebSockets.js, models, strategies and devices, then the media and admin
 * ports, in one of two threading modes (see config `server.mode`). SIGTERM (or SIGINT) stops accepting, lets
 * in-flight requests finish, and exits 0.
 */

/** What main needs from either threading mode once the media port is up. */
interface MediaServer {
  port: number;
  /** The main thread's metrics (process metrics, admin refusals). */
  metrics: Metrics;
  /** Prometheus text for every thread. */
  exposition(): Promise<string>;
  refreshGauges(): void;
  /** Hot-reloads one part everywhere it is used; rejects with a precise message when the new part is refused. */
  reload(target: ReloadTarget): Promise<Record<string, unknown>>;
  /** Throws, with precise messages, unless a strategies reload would take this book (checked against the models' names); otherwise returns its warnings. */
  checkBook(book: unknown, source: string): readonly string[];
  /** The embedded device store in service (null with the Redis store). */
  deviceStore(): DeviceStore | null;
  /** Decides a request in a media's protocol on a serving thread, and explains the decision. */
  explain(media: string, body: Uint8Array, contentType: string): Promise<Explanation>;
  /** Stops accepting, waits for in-flight requests; resolves with how many did not finish in time. */
  stop(): Promise<number>;
}

/** How the book history names a reload that reads the strategies file as it is (both may bring a new book). */
const FILE_RELOADS = { strategies: 'reloaded from the file (POST /reload/strategies)', models: 'loaded again with the models (models reload)' };

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  const config = loadConfig({ file: values.config });
  const uws = loadNativeUws();
  // Opened first: a history that cannot be read or created stops the start before the long load.
  const history = BookHistory.open(config.strategyHistory);
  // Its metrics are this thread's own, added to the serving threads' at scrape time.
  const attributionMetrics = new Registry();
  // With several nodes, before the long load: a shared decision memory that cannot be reached stops the start.
  const shared = config.attribution.enabled && config.attribution.redis ? await connectRedis(config.attribution.redis, 'rta-attribution') : null;
  const attribution = config.attribution.enabled
    ? new Attribution(config.attribution, config.decisionLog.dir, MEDIA_NAMES, attributionMetrics, shared)
    : null;
  const server = config.server.mode === 'scoring-pool' ? await startScoringPool(uws, config) : await startAppPerThread(config);
  let ready = true;
  server.metrics.ready.set(1);
  const exclusive = oneAtATime();
  const books = new BookVersions(
    history,
    config.strategies,
    { check: (book, source) => server.checkBook(book, source), reload: () => server.reload('strategies') },
    exclusive,
  );
  books.recordStart();
  // config.scoring.manifest is the manifest in service: the daily files' unless online learning put its own there.
  // Changed only inside a reload (run one at a time), and put back when the reload is refused.
  const configuredManifest = config.scoring.manifest;
  const reloadModelsFrom = async (manifest: string) => {
    const before = config.scoring.manifest;
    config.scoring.manifest = manifest;
    try {
      return await server.reload('models');
    } catch (err) {
      config.scoring.manifest = before;
      throw err;
    }
  };
  const learning =
    attribution && config.learning.enabled
      ? new OnlineLearning(
          config.learning,
          {
            configuredManifest,
            profile: loadProfileSchema(config.store.profileSchema),
            store: () => server.deviceStore()!,
            async putInService(manifest, message) {
              await books.fromFile({ author: LEARNING_AUTHOR, message }, () => reloadModelsFrom(manifest));
            },
          },
          attributionMetrics,
        )
      : null;
  if (learning) attribution!.outcomeListener = (outcome) => learning.hear(outcome);
  const reload = (target: ReloadTarget) => {
    if (target === 'devices') return exclusive(() => server.reload(target));
    if (target === 'strategies') return books.fromFile({ author: 'file', message: FILE_RELOADS[target] }, () => server.reload(target));
    // A person's or the watcher's models reload is of the daily files, whatever online learning had in service.
    const fromFiles = () => books.fromFile({ author: 'file', message: FILE_RELOADS[target] }, () => reloadModelsFrom(configuredManifest));
    return learning ? learning.reloadFiles(fromFiles) : fromFiles();
  };
  const controllers = attribution ? [new BidTuning(config.controllers.bidTuning, books, attribution), new CreativeSampling(config.controllers.creatives, books, attribution)] : [];
  const admin = createAdminApp(uws, {
    metrics: server.metrics,
    token: adminNeedsToken(config.server) ? config.server.adminToken! : null,
    exposition: async () => (await server.exposition()) + (await attributionMetrics.metrics()),
    isReady: () => ready,
    reload,
    books,
    attribution,
    controllers,
    learning,
    maxBodyBytes: config.server.adminMaxBodyBytes,
    async explain(media, body, contentType) {
      if (media !== null) return server.explain(media, body, contentType);
      const request = deviceFormRequest(body);
      return server.explain('native', request.body, request.contentType);
    },
  });
  if (config.scoring.watchManifest) watchManifest(config.scoring.manifest, () => reload('models'));
  const adminSocket = await listen(admin, config.server.adminHost, config.server.adminPort, 'admin');
  attribution?.start();
  for (const controller of controllers) controller.start();
  learning?.start();
  setInterval(() => server.refreshGauges(), 1000).unref();
  log('info', 'listening', {
    media: `http://${config.server.host}:${server.port}`,
    admin: `http://${config.server.adminHost}:${uws.us_socket_local_port(adminSocket)}`,
    mode: config.server.mode,
    threads: config.server.mode === 'app-per-thread' ? config.server.appThreads : 1 + config.scoring.threads,
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    ready = false;
    server.metrics.ready.set(0);
    log('info', 'stopping', { signal });
    attribution?.stop();
    for (const controller of controllers) controller.stop();
    learning?.stop();
    const unfinished = await server.stop();
    uws.us_listen_socket_close(adminSocket);
    log(unfinished > 0 ? 'warn' : 'info', 'stopped', { unfinished });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

/**
 * Lowers this thread's priority below the serving threads' (Linux: a nice value is per thread, and 0 names the
 * calling one), so the kernel gives a core to a request before it gives it to the log reading, controllers or
 * admin. Never raised back: an unprivileged process cannot, which is why it comes after the threads started.
 */
function yieldToServingThreads(servingNice: number, nice: number): void {
  // A process started below the default priority (nice 5, say) keeps its serving threads there; 0 leaves it.
  if (nice <= servingNice || process.platform !== 'linux') return;
  try {
    setPriority(0, nice);
    log('info', 'main_thread_niced', { nice: getPriority(0) });
  } catch (err) {
    log('warn', 'main_thread_nice_failed', { nice, message: (err as Error).message });
  }
}

/** One I/O thread (this one) running the pipeline, scores computed in micro-batches on a piscina pool. */
async function startScoringPool(uws: Uws, config: Config): Promise<MediaServer> {
  const runtime = await boot(config, { scoring: 'pool', processMetrics: true });
  const socket = await listen(createMediaApp(uws, runtime, config), config.server.host, config.server.port, 'media');
  const { metrics, engine } = runtime;
  const scorer = () => engine.parts.scorer as ScoringPool;
  // The pool keeps running totals; the metrics want what happened since the last refresh (a reload starts a new pool).
  let seen = { pool: scorer(), batches: 0, jobs: 0, errors: 0 };
  return {
    port: uws.us_socket_local_port(socket),
    metrics,
    exposition: () => metrics.registry.metrics(),
    refreshGauges() {
      const pool = scorer();
      if (pool !== seen.pool) seen = { pool, batches: 0, jobs: 0, errors: 0 };
      metrics.scoringQueueDepth.set(pool.queueDepth);
      metrics.scoringUtilization.set(pool.utilization);
      const batches = pool.batchesSent - seen.batches;
      if (batches > 0) metrics.scoringBatchSize.set((pool.jobsSent - seen.jobs) / batches);
      metrics.scoringErrors.inc(pool.workerErrors - seen.errors);
      seen = { pool, batches: pool.batchesSent, jobs: pool.jobsSent, errors: pool.workerErrors };
    },
    reload: (target) => reloadRuntime(runtime, config, target),
    checkBook(book, source) {
      return compileStrategyBook(book, source, runtime.profile, engine.parts.scorer.modelNames).warnings;
    },
    deviceStore: () => (config.store.kind === 'embedded' ? (engine.parts.store as DeviceStore) : null),
    explain: (media, body, contentType) => explainRequest(runtime, media, body, contentType),
    async stop() {
      uws.us_listen_socket_close(socket);
      const unfinished = await drain(inFlight, config.server.drainTimeoutMs);
      await scorer().close();
      await runtime.close();
      return unfinished;
    },
  };
}

/**
 * Several serving threads, each with its own uWebSockets.js app on the same port and its own engine; this thread
 * only owns the device store (shared memory), the admin port and the threads' lifecycle.
 */
async function startAppPerThread(config: Config): Promise<MediaServer> {
  if (config.server.appThreads > availableParallelism())
    log('warn', 'more_threads_than_cores', { appThreads: config.server.appThreads, cores: availableParallelism() });
  const profile = loadProfileSchema(config.store.profileSchema);
  const metrics = createMetrics({ processMetrics: true });
  let shared: SharedDeviceStoreBuffers | undefined;
  let embedded: EmbeddedDeviceStore | null = null;
  if (config.store.kind === 'redis') {
    // Each serving thread connects itself; this first connection only makes a bad address fail before any thread starts.
    await (await connectRedisStore(config, profile)).close();
  } else {
    embedded = loadDeviceStore(config, profile);
    shared = embedded.shareBuffers();
    metrics.devicesLoaded.set(embedded.deviceCount);
  }

  // Every thread must bind the same port number, so "any free port" is resolved to one here.
  const port = config.server.port === 0 ? await freePort(config.server.host) : config.server.port;
  const servingNice = getPriority(0);
  const threads = await ServingThreads.start({ config, store: shared, port, servingNice }, config.server.appThreads, metrics, () => process.exit(1));
  yieldToServingThreads(servingNice, config.server.mainThreadNice);
  return {
    port,
    metrics,
    exposition: () => threads.exposition(),
    refreshGauges() {},
    async reload(target) {
      let store: SharedDeviceStoreBuffers | undefined;
      let models: PreparedModels | undefined;
      try {
        if (target === 'devices' && config.store.kind === 'redis') throw new Error('devices live in Redis (store.kind "redis"): load them with load-redis; nothing to reload here');
        if (target === 'devices') {
          embedded = loadDeviceStore(config, profile);
          store = embedded.shareBuffers();
        }
        // Checked here first, so a bad file is refused before any thread starts loading it; models are prepared once
        // for every thread.
        else models = await checkModelsAndStrategies(config, profile, target);
      } catch (err) {
        metrics.reloads.inc({ target, result: 'refused' });
        throw err;
      }
      if (store) metrics.devicesLoaded.set(store.deviceCount);
      return threads.reload(target, { store, models });
    },
    checkBook(book, source) {
      return compileStrategyBook(book, source, profile, readManifest(config.scoring.manifest, profile).modelNames).warnings;
    },
    deviceStore: () => embedded,
    explain: (media, body, contentType) => threads.explain(media, body, contentType),
    stop: () => threads.stop(),
  };
}

/** A port free right now on `host`, for the serving threads to share. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Runs reloads and book changes one at a time: a second one waits for the first instead of racing it. */
function oneAtATime(): <T>(task: () => Promise<T>) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return (task) => {
    const next = last.then(task);
    last = next.catch(() => undefined);
    return next;
  };
}

/**
 * Checks the files a models or strategies reload would load, to refuse bad ones with their own message: the model
 * files only for a models reload (prepared off this thread, and returned for the serving threads to compile), the
 * strategy book against the manifest's model names.
 */
async function checkModelsAndStrategies(config: Config, profile: ProfileSchema, target: 'models' | 'strategies'): Promise<PreparedModels | undefined> {
  const models = target === 'models' ? await prepareModelsOffThread(config.scoring.manifest, config.store.profileSchema) : undefined;
  loadStrategyBook(config.strategies, profile, (models?.manifest ?? readManifest(config.scoring.manifest, profile)).modelNames);
  return models;
}

/**
 * Reloads the models when the manifest changes. Watches the folder, since tools replace files by renaming; waits
 * for writes to settle, and a half-written file is refused like any bad file (the old models keep serving).
 */
function watchManifest(manifestPath: string, reload: () => Promise<unknown>): void {
  const name = basename(manifestPath);
  let timer: NodeJS.Timeout | null = null;
  watch(dirname(manifestPath), (_event, file) => {
    if (file !== name) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      reload().catch((err: Error) => log('error', 'reload_refused', { target: 'models', trigger: 'manifest changed', message: err.message }));
    }, 300);
  }).unref();
}

main().catch((err: unknown) => {
  const error = err as Error;
  log('error', 'start_failed', { error: error.name, message: error.message });
  process.exit(error instanceof ConfigError ? 2 : 1);
});
