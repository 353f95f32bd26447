import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../config.js';
import type { PreparedModels } from '../scoring/manifest.js';
import { log } from '../observe/log.js';
import { EmbeddedDeviceStore, type SharedDeviceStoreBuffers } from '../store/embedded.js';
import { loadProfileSchema } from '../store/profile-schema.js';
import { boot } from './boot.js';
import { createMediaApp, drain, listen } from './media-app.js';
import type { Explanation } from '../observe/explain.js';
import { ExplainError, explainRequest } from './explain.js';
import { inFlight } from './media-route.js';
import { reloadRuntime, type ReloadTarget } from './reload.js';
import { loadNativeUws } from './uws.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';

/**
 * One serving thread of the app-per-thread mode: its own uWebSockets.js app on the shared media port, its own
 * engine scoring inline, the device store read through the main thread's shared memory. Talks to the main thread
 * in messages: listening / failed / stopped out; metrics, reload and stop in, each answered.
 */
export interface ServingThreadData {
  config: Config;
  /** The embedded store's shared memory; absent when the store is Redis (each thread connects itself). */
  store: SharedDeviceStoreBuffers | undefined;
  thread: number;
  /** The media port to listen on (the first thread's actual port when the config says 0). */
  port: number;
  /** The nice value serving threads run at: the process's own, from before the main thread lowered itself. */
  servingNice: number;
}

export type ToServingThread =
  | { type: 'metrics'; id: number }
  | { type: 'reload'; id: number; target: ReloadTarget; store?: SharedDeviceStoreBuffers; models?: PreparedModels }
  | { type: 'explain'; id: number; media: string; body: Uint8Array; contentType: string }
  | { type: 'stop' };
export type FromServingThread =
  | { type: 'listening'; port: number }
  | { type: 'failed'; message: string }
  | { type: 'metrics'; id: number; metrics: unknown }
  | { type: 'reloaded'; id: number; summary?: Record<string, unknown>; error?: string }
  | { type: 'explained'; id: number; explanation?: Explanation; refusal?: { status: ExplainError['status']; reason: string; message: string } }
  | { type: 'stopped'; unfinished: number };

const port = parentPort!;
const data = workerData as ServingThreadData;
const send = (message: FromServingThread) => port.postMessage(message);

const uws = loadNativeUws();
let serving: { app: TemplatedApp; socket: us_listen_socket } | null = null;

/**
 * Whatever escapes every boundary ends this thread only, for the main thread to replace. uWebSockets.js must be
 * closed first: a thread that exits with its sockets open aborts the whole process (libuv refuses to close a loop
 * with open handles), which is also why the main thread never terminates a serving thread from outside.
 */
function crash(error: unknown): void {
  const { name, message } = error instanceof Error ? error : new Error(String(error));
  log('error', 'serving_thread_crashed', { thread: data.thread, error: name, message });
  if (serving) {
    uws.us_listen_socket_close(serving.socket);
    (serving.app as unknown as { close(): void }).close();
    serving = null;
  }
  // One turn for the closed sockets' handles to be released.
  setImmediate(() => process.exit(1));
}
process.on('uncaughtException', crash);
process.on('unhandledRejection', crash);

/**
 * A replacement thread is started by the main thread after it lowered its own priority, and inherits it: it asks
 * for the serving priority back, which the kernel grants only to a privileged process (CAP_SYS_NICE).
 */
function takeServingPriority(thread: number, nice: number): void {
  if (process.platform !== 'linux' || getPriority(0) === nice) return;
  try {
    setPriority(0, nice);
  } catch {
    log('warn', 'serving_thread_niced', { thread, nice: getPriority(0), servingNice: nice, why: 'a replacement inherits the main thread\'s priority; raising it needs CAP_SYS_NICE' });
  }
}

try {
  const { config, thread } = data;
  takeServingPriority(thread, data.servingNice);
  const store = data.store ? EmbeddedDeviceStore.open(data.store, loadProfileSchema(config.store.profileSchema)) : undefined;
  const runtime = await boot(config, { scoring: 'inline', store, processMetrics: false, thread });
  const app = createMediaApp(uws, runtime, config);
  const socket = await listen(app, config.server.host, data.port, `media (thread ${thread})`);
  serving = { app, socket };
  runtime.metrics.ready.set(1);
  port.on('message', (message: ToServingThread) => {
    if (message.type === 'metrics') {
      void runtime.metrics.registry.getMetricsAsJSON().then((metrics) => send({ type: 'metrics', id: message.id, metrics }));
    } else if (message.type === 'explain') {
      explainRequest(runtime, message.media, message.body, message.contentType).then(
        (explanation) => send({ type: 'explained', id: message.id, explanation }),
        (err: Error) => {
          const { status, reason } = err instanceof ExplainError ? err : { status: '500 Internal Server Error' as const, reason: 'explain_failed' };
          send({ type: 'explained', id: message.id, refusal: { status, reason, message: err.message } });
        },
      );
    } else if (message.type === 'reload') {
      const store = message.store ? EmbeddedDeviceStore.open(message.store, runtime.profile) : undefined;
      reloadRuntime(runtime, config, message.target, { store, models: message.models }).then(
        (summary) => send({ type: 'reloaded', id: message.id, summary }),
        (err: Error) => send({ type: 'reloaded', id: message.id, error: err.message }),
      );
    } else {
      runtime.metrics.ready.set(0);
      uws.us_listen_socket_close(socket);
      serving = null;
      void drain(inFlight, config.server.drainTimeoutMs).then(async (unfinished) => {
        // Closes the idle keep-alive connections too, so the thread's event loop empties and the thread exits.
        (app as unknown as { close(): void }).close();
        await runtime.close();
        send({ type: 'stopped', unfinished });
        port.close();
      });
    }
  });
  send({ type: 'listening', port: uws.us_socket_local_port(socket) });
} catch (err) {
  log('error', 'serving_thread_failed', { thread: data.thread, message: (err as Error).message });
  send({ type: 'failed', message: (err as Error).message });
}
