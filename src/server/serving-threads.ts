import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { AggregatorRegistry } from 'prom-client';
import { log } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import type { PreparedModels } from '../scoring/manifest.js';
import type { SharedDeviceStoreBuffers } from '../store/embedded.js';
import type { Explanation } from '../observe/explain.js';
import { ExplainError } from './explain.js';
import type { ReloadTarget } from './reload.js';
import type { FromServingThread, ServingThreadData, ToServingThread } from './serving-thread.js';

/**
 * The serving threads of app-per-thread mode and their supervision. A thread that exits while we serve is
 * replaced on the same port; the kernel spreads new connections over the threads still listening meanwhile, so
 * only the connections of the dead thread are lost. A thread that keeps dying (a bad file on disk, a leak) is not
 * retried for ever: past `CRASH_LOOP_DEATHS` deaths within a minute the process exits for its orchestrator to act.
 */
export const CRASH_LOOP_DEATHS = 5;
const CRASH_LOOP_WINDOW_MS = 60_000;

type ReloadResult = { summary?: Record<string, unknown>; error?: string };

/** Emits `replaced` (thread number) once a replacement listens, for whoever watches the node's capacity. */
export class ServingThreads extends EventEmitter {
  private readonly threads: ServingThread[] = [];
  private readonly deaths: number[] = [];
  private stopping = false;
  /** The store every new thread opens: the latest one a devices reload handed out. */
  private store: SharedDeviceStoreBuffers | undefined;

  private constructor(
    private readonly data: Omit<ServingThreadData, 'thread' | 'store'>,
    private readonly metrics: Metrics,
    /** Called once the threads kept dying and the rest have drained: the engine's main exits the process. */
    private readonly onCrashLoop: () => void,
  ) {
    super();
  }

  static async start(
    data: Omit<ServingThreadData, 'thread'>,
    count: number,
    metrics: Metrics,
    onCrashLoop: () => void,
  ): Promise<ServingThreads> {
    const threads = new ServingThreads(data, metrics, onCrashLoop);
    threads.store = data.store;
    try {
      for (let thread = 0; thread < count; thread++) await threads.launch(thread);
    } catch (err) {
      await threads.stop();
      throw err;
    }
    threads.showLive();
    return threads;
  }

  /** The worker of each thread, in thread order (a replaced thread's new worker). */
  get workers(): readonly Worker[] {
    return this.threads.map((t) => t.worker);
  }

  /** Every thread's metrics merged with the main thread's; a thread that dies while asked simply drops out. */
  async exposition(): Promise<string> {
    const perThread = await Promise.all(this.threads.map((t) => t.metrics()));
    const live = perThread.filter((m) => m !== null);
    return AggregatorRegistry.aggregate([await this.metrics.registry.getMetricsAsJSON(), ...live] as object[]).metrics();
  }

  /** One thread at a time, so the others keep serving while one loads; rejects with the first thread's refusal. */
  async reload(target: ReloadTarget, shared: { store?: SharedDeviceStoreBuffers | undefined; models?: PreparedModels | undefined }): Promise<Record<string, unknown>> {
    if (shared.store) this.store = shared.store;
    const results: ReloadResult[] = [];
    for (const thread of [...this.threads]) results.push(await thread.reload(target, shared));
    const failed = results.find((r) => r.error !== undefined);
    if (failed) throw new Error(failed.error);
    // The same part everywhere; only the cost differs by thread, and the worst one is what the media saw.
    return { ...results[0]!.summary!, worstDelayMillis: Math.max(...results.map((r) => Number(r.summary!.worstDelayMillis))) };
  }

  /** Explained by the first thread serving: each runs the same book, models and store. */
  async explain(media: string, body: Uint8Array, contentType: string): Promise<Explanation> {
    const thread = this.threads.find((t) => t.serving);
    if (!thread) throw new ExplainError('500 Internal Server Error', 'explain_failed', 'no serving thread is up');
    return thread.explain(media, body, contentType);
  }

  /** Drains every thread; resolves with the requests they left unfinished. */
  async stop(): Promise<number> {
    this.stopping = true;
    const unfinished = await Promise.all(this.threads.map((t) => t.stop()));
    this.showLive();
    return unfinished.reduce((a, b) => a + b, 0);
  }

  private async launch(thread: number): Promise<void> {
    const handle = new ServingThread({ ...this.data, store: this.store, thread }, (code) => this.died(thread, { code }));
    this.threads[thread] = handle;
    await handle.listening;
  }

  /** A thread that served and exited, or a replacement that failed to start: both count towards the crash loop. */
  private died(thread: number, why: Record<string, unknown>): void {
    this.showLive();
    if (this.stopping) return;
    const now = Date.now();
    this.deaths.push(now);
    while (this.deaths[0]! < now - CRASH_LOOP_WINDOW_MS) this.deaths.shift();
    this.metrics.servingThreadDeaths.inc();
    log('error', 'serving_thread_exited', { thread, ...why, deathsLastMinute: this.deaths.length });
    if (this.deaths.length >= CRASH_LOOP_DEATHS) {
      log('error', 'serving_threads_crash_loop', { deaths: this.deaths.length, windowSeconds: CRASH_LOOP_WINDOW_MS / 1000 });
      // The threads still serving drain first: an exit with their sockets open would abort the process.
      void this.stop().then(this.onCrashLoop);
      return;
    }
    this.launch(thread).then(
      () => {
        this.showLive();
        log('info', 'serving_thread_replaced', { thread });
        this.emit('replaced', thread);
      },
      (err: Error) => this.died(thread, { replacementFailed: err.message }),
    );
  }

  private showLive(): void {
    this.metrics.servingThreads.set(this.threads.filter((t) => t.serving).length);
  }
}

/** The main thread's handle on one serving thread: its start, its requests and answers, its exit. */
class ServingThread {
  readonly listening: Promise<number>;
  readonly worker: Worker;
  private readonly waiting = new Map<number, (message: FromServingThread | null) => void>();
  private nextId = 0;
  private stopped: ((unfinished: number) => void) | null = null;
  private readonly exited: Promise<void>;
  private stopping = false;
  private hasExited = false;
  /** Listening and not yet exited. */
  serving = false;

  constructor(data: ServingThreadData, onDeath: (code: number) => void) {
    this.worker = new Worker(new URL('./serving-thread.js', import.meta.url), { workerData: data });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    this.listening = new Promise((resolve, reject) => {
      this.worker.on('message', (message: FromServingThread) => {
        if (message.type === 'listening') {
          this.serving = true;
          resolve(message.port);
        } else if (message.type === 'failed') {
          reject(new Error(`serving thread ${data.thread}: ${message.message}`));
          void this.worker.terminate();
        }
        else if (message.type === 'stopped') this.stopped?.(message.unfinished);
        else this.waiting.get(message.id)?.(message);
      });
      this.worker.on('error', (err) => {
        log('error', 'serving_thread_error', { thread: data.thread, error: err.name, message: err.message });
        reject(new Error(`serving thread ${data.thread}: ${err.message}`));
      });
      this.worker.on('exit', (code) => {
        const served = this.serving;
        this.hasExited = true;
        this.serving = false;
        reject(new Error(`serving thread ${data.thread} exited with code ${code}`));
        // Whatever the dead thread was asked is answered, so a scrape or a reload never waits for it.
        for (const answer of [...this.waiting.values()]) answer(null);
        if (served && !this.stopping) onDeath(code);
      });
    });
  }

  async metrics(): Promise<unknown | null> {
    const answer = await this.ask({ type: 'metrics', id: this.nextId++ });
    return answer?.type === 'metrics' ? answer.metrics : null;
  }

  async reload(target: ReloadTarget, shared: { store?: SharedDeviceStoreBuffers | undefined; models?: PreparedModels | undefined }): Promise<ReloadResult> {
    const id = this.nextId++;
    const message: Extract<ToServingThread, { type: 'reload' }> = { type: 'reload', id, target };
    if (shared.store) message.store = shared.store;
    if (shared.models) message.models = shared.models;
    const answer = await this.ask(message);
    if (answer?.type === 'reloaded') return answer;
    // Its replacement loads the files as they are now, so it serves what this reload asked for.
    return { error: `serving thread exited during the ${target} reload` };
  }

  async explain(media: string, body: Uint8Array, contentType: string): Promise<Explanation> {
    const answer = await this.ask({ type: 'explain', id: this.nextId++, media, body, contentType });
    if (answer?.type !== 'explained') throw new ExplainError('500 Internal Server Error', 'explain_failed', 'the serving thread exited while explaining');
    if (answer.refusal) throw new ExplainError(answer.refusal.status, answer.refusal.reason, answer.refusal.message);
    return answer.explanation!;
  }

  /** Asks the thread to drain and exit; resolves with its unfinished request count once it has exited. */
  async stop(): Promise<number> {
    this.stopping = true;
    const unfinished = new Promise<number>((resolve) => {
      this.stopped = resolve;
      this.worker.postMessage({ type: 'stop' } satisfies ToServingThread);
    });
    const result = await Promise.race([unfinished, this.exited.then(() => 0)]);
    await this.exited;
    return result;
  }

  /** Null once the thread has exited without answering. */
  private ask(message: Extract<ToServingThread, { id: number }>): Promise<FromServingThread | null> {
    if (this.hasExited) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiting.set(message.id, (answer) => {
        this.waiting.delete(message.id);
        resolve(answer);
      });
      this.worker.postMessage(message);
    });
  }
}
