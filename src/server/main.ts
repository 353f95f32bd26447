import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry } from 'prom-client';
import { adminNeedsToken, ConfigError, loadConfig, type Config } from '../config.js';
import { log } from '../observe/log.js';
import { createMetrics, type Metrics } from '../observe/metrics.js';
import { watch } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { basename, dirname } from 'node:path';
import { BatchScorer } from '../scoring/scorer.js';
import type { ScoringPool } from '../scoring/pool.js';
import type { SharedDeviceStoreBuffers } from '../store/embedded.js';
import { loadProfileSchema, type ProfileSchema } from '../store/profile-schema.js';
import { loadStrategyBook } from '../strategy/book.js';
import { reloadRuntime, type ReloadTarget } from './reload.js';
import { createAdminApp } from './admin.js';
import { boot, connectRedisStore, loadDeviceStore } from './boot.js';
import { createMediaApp, drain, listen } from './media-app.js';
import { inFlight } from './media-route.js';
import type { FromServingThread, ServingThreadData, ToServingThread } from './serving-thread.js';
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
  /** Stops accepting, waits for in-flight requests; resolves with how many did not finish in time. */
  stop(): Promise<number>;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  const config = loadConfig({ file: values.config });
  const uws = loadNativeUws();
  const server = config.server.mode === 'scoring-pool' ? await startScoringPool(uws, config) : await startAppPerThread(config);
  let ready = true;
  server.metrics.ready.set(1);
  const reload = serialise((target: ReloadTarget) => server.reload(target));
  const admin = createAdminApp(uws, {
    metrics: server.metrics,
    token: adminNeedsToken(config.server) ? config.server.adminToken! : null,
    exposition: () => server.exposition(),
    isReady: () => ready,
    reload,
  });
  if (config.scoring.watchManifest) watchManifest(config.scoring.manifest, () => reload('models'));
  const adminSocket = await listen(admin, config.server.adminHost, config.server.adminPort, 'admin');
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
    const unfinished = await server.stop();
    uws.us_listen_socket_close(adminSocket);
    log(unfinished > 0 ? 'warn' : 'info', 'stopped', { unfinished });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
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
  if (config.store.kind === 'redis') {
    // Each serving thread connects itself; this first connection only makes a bad address fail before any thread starts.
    await (await connectRedisStore(config, profile)).close();
  } else {
    const store = loadDeviceStore(config, profile);
    shared = store.shareBuffers();
    metrics.devicesLoaded.set(store.deviceCount);
  }

  const threads: ServingThread[] = [];
  // Every thread must bind the same port number, so "any free port" is resolved to one here.
  const port = config.server.port === 0 ? await freePort(config.server.host) : config.server.port;
  try {
    for (let thread = 0; thread < config.server.appThreads; thread++) {
      const serving = new ServingThread({ config, store: shared, thread, port });
      threads.push(serving);
      await serving.listening;
    }
  } catch (err) {
    await Promise.all(threads.map((t) => t.stop()));
    throw err;
  }
  return {
    port,
    metrics,
    async exposition() {
      const perThread = await Promise.all(threads.map((t) => t.metrics()));
      return AggregatorRegistry.aggregate([await metrics.registry.getMetricsAsJSON(), ...perThread] as object[]).metrics();
    },
    refreshGauges() {},
    async reload(target) {
      let store: SharedDeviceStoreBuffers | undefined;
      try {
        if (target === 'devices' && config.store.kind === 'redis') throw new Error('devices live in Redis (store.kind "redis"): load them with load-redis; nothing to reload here');
        if (target === 'devices') store = loadDeviceStore(config, profile).shareBuffers();
        // Checked here first, so a bad file is refused before any thread starts loading it.
        else checkModelsAndStrategies(config, profile);
      } catch (err) {
        metrics.reloads.inc({ target, result: 'refused' });
        throw err;
      }
      if (store) metrics.devicesLoaded.set(store.deviceCount);
      // One thread at a time: loading blocks a thread for a few tens of milliseconds, and the other threads keep
      // serving their connections meanwhile.
      const results = [];
      for (const thread of threads) results.push(await thread.reload(target, store));
      const failed = results.find((r) => r.error !== undefined);
      if (failed) throw new Error(failed.error);
      return results[0]!.summary!;
    },
    async stop() {
      const unfinished = await Promise.all(threads.map((t) => t.stop()));
      return unfinished.reduce((a, b) => a + b, 0);
    },
  };
}

/** The main thread's handle on one serving thread. */
class ServingThread {
  readonly listening: Promise<number>;
  private readonly worker: Worker;
  private readonly metricsWaiting = new Map<number, (metrics: unknown) => void>();
  private readonly reloadsWaiting = new Map<number, (result: { summary?: Record<string, unknown>; error?: string }) => void>();
  private nextId = 0;
  private stopped: ((unfinished: number) => void) | null = null;

  private readonly exited: Promise<void>;
  private stopping = false;

  constructor(data: ServingThreadData) {
    this.worker = new Worker(new URL('./serving-thread.js', import.meta.url), { workerData: data });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.listening = new Promise((resolve, reject) => {
      this.worker.on('message', (message: FromServingThread) => {
        if (message.type === 'listening') resolve(message.port);
        else if (message.type === 'failed') reject(new Error(`serving thread ${data.thread}: ${message.message}`));
        else if (message.type === 'metrics') this.metricsWaiting.get(message.id)?.(message.metrics);
        else if (message.type === 'reloaded') this.reloadsWaiting.get(message.id)?.(message);
        else this.stopped?.(message.unfinished);
      });
      this.worker.on('error', (err) => reject(new Error(`serving thread ${data.thread}: ${err.message}`)));
      this.worker.on('exit', (code) => {
        reject(new Error(`serving thread ${data.thread} exited with code ${code}`));
        // A serving thread never exits on its own while we serve: losing one silently would halve capacity.
        if (!this.stopping) {
          log('error', 'serving_thread_exited', { thread: data.thread, code });
          process.exit(1);
        }
      });
    });
  }

  metrics(): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.metricsWaiting.set(id, (metrics) => {
        this.metricsWaiting.delete(id);
        resolve(metrics);
      });
      this.post({ type: 'metrics', id });
    });
  }

  reload(target: ReloadTarget, store?: SharedDeviceStoreBuffers): Promise<{ summary?: Record<string, unknown>; error?: string }> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.reloadsWaiting.set(id, (result) => {
        this.reloadsWaiting.delete(id);
        resolve(result);
      });
      this.post(store ? { type: 'reload', id, target, store } : { type: 'reload', id, target });
    });
  }

  /** Asks the thread to drain and exit; resolves with its unfinished request count once it has exited. */
  async stop(): Promise<number> {
    this.stopping = true;
    const unfinished = new Promise<number>((resolve) => {
      this.stopped = resolve;
      this.post({ type: 'stop' });
    });
    const result = await Promise.race([unfinished, this.exited.then(() => 0)]);
    await this.exited;
    return result;
  }

  private post(message: ToServingThread): void {
    this.worker.postMessage(message);
  }
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

/** Runs reloads one at a time: a second request waits for the first instead of racing it. */
function serialise<A, R>(run: (arg: A) => Promise<R>): (arg: A) => Promise<R> {
  let last: Promise<unknown> = Promise.resolve();
  return (arg) => {
    const next = last.then(() => run(arg));
    last = next.catch(() => undefined);
    return next;
  };
}

/** Loads the models and compiles the strategy book once, only to refuse bad files with their own message. */
function checkModelsAndStrategies(config: Config, profile: ProfileSchema): void {
  const scorer = new BatchScorer(config.scoring.manifest, config.store.profileSchema);
  loadStrategyBook(config.strategies, profile, scorer.modelNames);
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
