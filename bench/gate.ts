/**
 * The perf CI gate: `npm run bench:ci` (well under two minutes). Runs the bare uWebSockets.js ceiling and the engine
 * side by side on the same traffic, so the speed of the machine cancels out, and fails when the engine's share of
 * the ceiling or its server-side p99 at a fixed fraction of its own maximum falls past the thresholds in
 * bench/gate.json. Prints the figures either way; writes them to bench/results/tmp/ for spread studies.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { runClosedLoop } from './lib/closed-loop.js';
import { decideGate, loadGateConfig, type GateFigures } from './lib/gate-decision.js';
import { collectGarbage, prepareTraffic } from './lib/prepare.js';
import { formatMicros, formatPercent } from './lib/results.js';
import { pinProcesses, REPO_ROOT, startServer, type RunningServer } from './lib/servers.js';
import { describeMachine, log, measureClosedLoop, OpenLoopSession, type ClosedRun, type OpenRun } from './lib/session.js';
import { spread } from './lib/stats.js';
import { DEFAULT_MIX } from './lib/traffic.js';

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { config: { type: 'string', default: join(REPO_ROOT, 'bench/gate.json') } } });
  const configPath = relative(REPO_ROOT, values.config!) || values.config!;
  const config = loadGateConfig(values.config!);
  const { run } = config;
  const started = performance.now();
  const traffic = prepareTraffic({ seed: run.seed, distinct: run.distinct, population: run.population, mix: DEFAULT_MIX });
  collectGarbage();
  const pinning = pinProcesses(true);
  log(pinning.note);
  const policy = { maxBackgroundCores: run.maxBackgroundCores, retries: run.retries };

  let bare: RunningServer | null = null;
  let engine: RunningServer | null = null;
  const bareRuns: ClosedRun[] = [];
  const engineRuns: ClosedRun[] = [];
  const latencyRuns: OpenRun[] = [];
  let rate = 0;
  try {
    const options = { cpus: pinning.serverCpus, engineEnv: {}, cpuProfileDir: null };
    bare = await startServer('bare', options);
    engine = await startServer('engine', options);
    const closed = { connections: run.connections, durationSeconds: run.closedSeconds };
    for (const server of [bare, engine]) await runClosedLoop({ url: server.mediaUrl, requests: traffic.requests, ...closed, durationSeconds: Math.max(2, run.warmupSeconds) });
    for (let i = 0; i < run.runs; i++) {
      bareRuns.push(await measureClosedLoop(bare, traffic.requests, closed, policy));
      engineRuns.push(await measureClosedLoop(engine, traffic.requests, closed, policy));
      log(`run ${i + 1}/${run.runs}: bare ${Math.round(bareRuns[i]!.load.requestsPerSecond)} req/s, engine ${Math.round(engineRuns[i]!.load.requestsPerSecond)} req/s`);
    }
    rate = Math.round(run.fraction * spread(engineRuns.map((r) => r.load.requestsPerSecond)).median);
    const session = new OpenLoopSession(traffic.requests, run.openConnections, policy);
    for (let i = 0; i < run.runs; i++) {
      latencyRuns.push(await session.measure(engine, { rate, durationSeconds: run.openSeconds, seed: run.seed + i, graceSeconds: 5 }, i === 0 ? run.warmupSeconds : 0));
      log(`fixed rate ${rate} req/s run ${i + 1}/${run.runs}: server p99 ${Math.round(latencyRuns[i]!.server.latency?.p99 ?? NaN)} us`);
    }
    session.close();
  } finally {
    await bare?.stop();
    await engine?.stop();
  }

  const figures: GateFigures = {
    engineShareOfCeiling: spread(engineRuns.map((r, i) => r.load.requestsPerSecond / bareRuns[i]!.load.requestsPerSecond)),
    serverP99Micros: spread(latencyRuns.map((r) => r.server.latency?.p99 ?? NaN)),
    failedRequests: [...bareRuns, ...engineRuns].reduce((sum, r) => sum + r.load.errors + r.load.timeouts + r.load.non2xx, 0) +
      latencyRuns.reduce((sum, r) => sum + r.load.errors + r.load.timeouts + r.load.non200, 0),
  };
  const decision = decideGate(figures, config.thresholds);
  const seconds = (performance.now() - started) / 1000;
  const median = (values: number[]) => spread(values).median;
  const answered = latencyRuns.reduce((sum, r) => sum + Object.values(r.server.outcomes).reduce((a, b) => a + b, 0), 0);
  const fallbacks = latencyRuns.reduce((sum, r) => sum + r.server.deadlineFallbacks, 0);
  const info = [
    `machine: ${describeMachine().logicalCpus} CPUs, Node ${process.version}; ${pinning.note}`,
    `closed loop (${run.runs} x ${run.closedSeconds} s, ${run.connections} connections): bare ${Math.round(median(bareRuns.map((r) => r.load.requestsPerSecond)))} req/s, ` +
      `engine ${Math.round(median(engineRuns.map((r) => r.load.requestsPerSecond)))} req/s`,
    `fixed rate ${rate} req/s = ${formatPercent(run.fraction, 0)} of the engine's maximum (${run.runs} x ${run.openSeconds} s): ` +
      `server p99 ${formatMicros(figures.serverP99Micros.median)}, p99.9 ${formatMicros(median(latencyRuns.map((r) => r.server.latency?.p999 ?? NaN)))}, ` +
      `client p99 ${formatMicros(median(latencyRuns.map((r) => r.load.latency.p99)))}, deadline fallbacks ${fallbacks} of ${answered}`,
    `other processes on the machine: up to ${Math.max(...[...bareRuns, ...engineRuns, ...latencyRuns].map((r) => r.server.cpu.background)).toFixed(2)} cores in a kept window; ` +
      `${[...bareRuns, ...engineRuns, ...latencyRuns].filter((r) => r.attempts > 1).length} windows re-measured`,
  ];
  console.log(`\nperf gate (${configPath}), ${seconds.toFixed(0)} s`);
  for (const line of info) console.log(`  ${line}`);
  for (const check of decision.checks) console.log(`  ${check.passed ? 'ok  ' : 'FAIL'} ${check.name}: ${check.measured}, threshold ${check.limit}`);
  console.log(decision.passed ? 'perf gate passed' : `perf gate FAILED: ${decision.checks.filter((c) => !c.passed).map((c) => c.name).join('; ')} (thresholds in ${configPath})`);

  const tmp = join(REPO_ROOT, 'bench/results/tmp');
  mkdirSync(tmp, { recursive: true });
  writeFileSync(
    join(tmp, `gate-${new Date().toISOString().replace(/[:.]/g, '-')}.json`),
    `${JSON.stringify({ figures, decision, rate, seconds, bareRuns, engineRuns, latencyRuns }, null, 1)}\n`,
  );
  return decision.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`perf gate could not run: ${(err as Error).stack ?? err}`);
    process.exit(2);
  },
);
