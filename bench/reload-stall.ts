/**
 * The worst stall a reload causes, seen from the media's side: fixed-rate (open-loop) traffic against the engine,
 * windows without reloads and windows with a models and a strategies reload every second (shedding off, so a
 * stalled thread shows as waiting, not as shed replies), client-side latency of
 * each (from the scheduled send, so a request that waited behind a blocked thread counts its whole wait).
 *
 *   npm run bench:reload [-- --rate 4000 --seconds 8 --rounds 3 --baseline REV]
 *
 * With --baseline REV the same rounds run against REV too, built in a temporary worktree, alternating, so the two
 * are compared on one machine in one run.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_MIX } from './lib/traffic.js';
import { OpenLoopClient } from './lib/open-loop.js';
import { collectGarbage, prepareTraffic } from './lib/prepare.js';
import { REPO_ROOT, startServer, type RunningServer } from './lib/servers.js';
import { buildRevision, type BuiltRevision } from './lib/worktree.js';
import type { LatencyPercentiles } from './lib/latency.js';

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '4000' },
    seconds: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    baseline: { type: 'string' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const log = (message: string) => console.error(`[reload] ${message}`);

interface Window {
  reloads: number;
  /** The worst event-loop delay a serving thread reported for its reloads (builds that report it); ms. */
  worstDelayMillis: number;
  refused: number;
  non200: number;
  errors: number;
  latency: LatencyPercentiles;
}

async function window(server: RunningServer, client: OpenLoopClient, withReloads: boolean, seed: number): Promise<Window> {
  let reloads = 0;
  let refused = 0;
  let worstDelayMillis = NaN;
  let running = true;
  const reloading = (async () => {
    for (let i = 0; withReloads && running; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      if (!running) break;
      const target = i % 2 === 0 ? 'models' : 'strategies';
      const reply = await fetch(`${server.adminUrl}/reload/${target}`, { method: 'POST' });
      const text = await reply.text();
      if (reply.status !== 200) {
        refused++;
        continue;
      }
      reloads++;
      const reported = (JSON.parse(text) as { worstDelayMillis?: number }).worstDelayMillis;
      if (reported !== undefined) worstDelayMillis = Math.max(reported, Number.isNaN(worstDelayMillis) ? 0 : worstDelayMillis);
    }
  })();
  const result = await client.runAt({ rate, durationSeconds: seconds, seed, graceSeconds: 5 }, true);
  running = false;
  await reloading;
  return { reloads, worstDelayMillis, refused, non200: result.non200, errors: result.errors + result.timeouts, latency: result.latency };
}

interface Target {
  name: string;
  root: string;
  windows: { quiet: Window[]; reloading: Window[] };
}

const traffic = prepareTraffic({ seed: 7, mix: DEFAULT_MIX, distinct: 20_000, population: 20_000 });
collectGarbage();
let baseline: BuiltRevision | null = null;
const targets: Target[] = [{ name: 'this tree', root: REPO_ROOT, windows: { quiet: [], reloading: [] } }];
if (values.baseline) {
  baseline = buildRevision(REPO_ROOT, values.baseline, log);
  targets.push({ name: `${values.baseline} (${baseline.commit.slice(0, 10)})`, root: baseline.root, windows: { quiet: [], reloading: [] } });
}

try {
  for (let round = 0; round < rounds; round++) {
    for (const target of targets) {
      const server = await startServer('engine', { cpus: null, engineEnv: { RTA_SHED_AFTER_MICROS: '0' }, cpuProfileDir: null, root: target.root });
      const client = new OpenLoopClient(server.host, server.port, 64, traffic.requests);
      try {
        await window(server, client, false, 1000 + round);
        target.windows.quiet.push(await window(server, client, false, 2000 + round));
        target.windows.reloading.push(await window(server, client, true, 3000 + round));
        const last = target.windows.reloading.at(-1)!;
        log(`${target.name}, round ${round + 1}: quiet max ${target.windows.quiet.at(-1)!.latency.max} us, reloading max ${last.latency.max} us (${last.reloads} reloads)`);
      } finally {
        client.close();
        await server.stop();
      }
    }
  }
} finally {
  baseline?.remove();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`Reload stall at ${rate} requests/s offered (open loop, 64 connections), ${seconds} s windows, ${rounds} rounds; client-side latency in us, median of the rounds`);
console.log('| build | window | reloads | worst thread delay, ms (reported) | non-200 | errors | p99 | p99.9 | max (median) | max (worst) |');
console.log('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const target of targets) {
  for (const [name, windows] of Object.entries(target.windows)) {
    const sum = (pick: (w: Window) => number) => windows.reduce((a, w) => a + pick(w), 0);
    const cells = [
      target.name,
      name,
      sum((w) => w.reloads),
      windows.some((w) => !Number.isNaN(w.worstDelayMillis)) ? Math.max(...windows.map((w) => w.worstDelayMillis).filter((d) => !Number.isNaN(d))) : 'n/a',
      sum((w) => w.non200),
      sum((w) => w.errors),
      median(windows.map((w) => w.latency.p99)),
      median(windows.map((w) => w.latency.p999)),
      median(windows.map((w) => w.latency.max)),
      Math.max(...windows.map((w) => w.latency.max)),
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
}
