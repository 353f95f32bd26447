import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createMetrics, type Metrics } from '../../src/observe/metrics.js';
import { loadProfileSchema } from '../../src/store/profile-schema.js';
import { loadSnapshot } from '../../src/store/snapshot.js';
import { freePort } from '../support/redis-server.js';
import { REPO_ROOT } from '../support/engine-process.js';
import { threadsOf } from '../support/threads.js';
import { loadPersonas, metricSum, requestFor, tencent } from '../support/rta-client.js';

/**
 * Supervision of the serving threads, with the real serving threads (uWebSockets.js on a shared port, the demo
 * device store in shared memory). A thread is killed by an exception that escapes all its code: its message
 * handler is sent a message it cannot read (null), so the throw happens outside every request boundary. The other
 * thread keeps serving, the dead one is replaced on the same port, and a thread that keeps dying ends in the
 * crash-loop exit instead of being retried for ever.
 */

// The built module: its serving threads start from dist/server/serving-thread.js.
const BUILT = `${REPO_ROOT}dist/server/serving-threads.js`;
type Module = typeof import('../../src/server/serving-threads.js');
type Threads = Awaited<ReturnType<Module['ServingThreads']['start']>>;

let module: Module;
let threads: Threads;
let metrics: Metrics;
let crashLoops = 0;
let crashLoopHandedOver: () => void;
const crashLoop = new Promise<void>((resolve) => (crashLoopHandedOver = resolve));
let url: string;

/** Throws inside the thread's own message handler, and resolves once the thread has exited. */
async function crash(worker: Worker): Promise<number> {
  const exited = once(worker, 'exit') as Promise<[number]>;
  worker.postMessage(null);
  return (await exited)[0];
}

/** Crashes a thread and resolves once its replacement listens. */
async function crashAndReplace(worker: Worker): Promise<void> {
  const replaced = once(threads, 'replaced');
  await crash(worker);
  await replaced;
}

const gauge = async (name: string) => metricSum(await metrics.registry.metrics(), name);

async function served(): Promise<number> {
  const device = loadPersonas().prime_prospect[0]!;
  const { body, contentType } = tencent.encodeRequest(requestFor(device));
  // A new connection each time, so the kernel may hand it to either thread.
  const reply = await fetch(url, { method: 'POST', body, headers: { 'content-type': contentType, connection: 'close' } });
  await reply.arrayBuffer();
  return reply.status;
}

beforeAll(async () => {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run \`npm run build\` (npm test does it first)`);
  module = (await import(BUILT)) as Module;
  const config = loadConfig({ env: { HOST: '127.0.0.1', RTA_APP_THREADS: '2' } });
  const store = loadSnapshot(config.store.snapshot, loadProfileSchema(config.store.profileSchema)).store;
  metrics = createMetrics({ processMetrics: false });
  const port = await freePort();
  url = `http://127.0.0.1:${port}/rta/tencent`;
  threads = await module.ServingThreads.start({ config, store: store.shareBuffers(), port, servingNice: getPriority(0) }, 2, metrics, () => {
    crashLoops++;
    crashLoopHandedOver();
  });
}, 120_000);

afterAll(async () => {
  await threads?.stop();
});

describe('serving thread supervision', () => {
  test('a thread that dies is replaced on the same port while the other keeps serving; scrapes never wait for the dead one', async () => {
    expect(await gauge('rta_serving_threads')).toBe(2);
    const dying = threads.workers[0]!;
    const survivor = threads.workers[1]!;
    let replaced = once(threads, 'replaced');
    expect(await crash(dying)).toBe(1);

    for (let i = 0; i < 20; i++) expect(await served()).toBe(200);
    expect(await threads.exposition()).toContain('rta_serving_thread_deaths_total 1');

    expect(await replaced).toEqual([0]);
    expect(await gauge('rta_serving_threads')).toBe(2);
    expect(threads.workers[0]).not.toBe(dying);
    expect(threads.workers[1]).toBe(survivor);
    // With the survivor gone too, the replacement alone answers (the survivor's own replacement is still loading).
    replaced = once(threads, 'replaced');
    await crash(survivor);
    for (let i = 0; i < 20; i++) expect(await served()).toBe(200);
    expect(await replaced).toEqual([1]);
    expect(crashLoops).toBe(0);
  }, 60_000);

  // Raising a thread's priority back needs CAP_SYS_NICE, which root has (as in CI); without it the replacement keeps
  // the lowered one and says so (serving_thread_niced), which is not what this test checks.
  test.skipIf(process.platform !== 'linux' || process.getuid?.() !== 0)(
    'a replacement started after the starting thread lowered its priority (as the engine main thread does) serves at the priority it was given',
    async () => {
      const servingNice = getPriority(0);
      const before = new Set(threadsOf('self').map((t) => t.tid));
      setPriority(0, 10);
      try {
        await crashAndReplace(threads.workers[0]!);
        const started = threadsOf('self').filter((t) => !before.has(t.tid));
        expect(started.length).toBeGreaterThan(0);
        for (const t of started) expect(t.nice, `thread ${t.tid}`).toBe(servingNice);
        expect(getPriority(0)).toBe(10);
      } finally {
        setPriority(0, servingNice);
      }
    },
    60_000,
  );

  test('the fifth death within a minute is a crash loop: the rest drained and handed to the process, not replaced', async () => {
    expect(module.CRASH_LOOP_DEATHS).toBe(5);
    // Two or three deaths already happened in the previous tests.
    const before = await gauge('rta_serving_thread_deaths_total');
    for (let death = before + 1; death < module.CRASH_LOOP_DEATHS; death++) await crashAndReplace(threads.workers[1]!);
    expect(crashLoops).toBe(0);
    await crash(threads.workers[1]!);
    await crashLoop;
    expect(crashLoops).toBe(1);
    expect(await gauge('rta_serving_thread_deaths_total')).toBe(module.CRASH_LOOP_DEATHS);
    // The surviving thread was drained before the hand-over: nothing listens any more.
    expect(await gauge('rta_serving_threads')).toBe(0);
    await expect(served()).rejects.toThrow();
  }, 120_000);
});
