/**
 * The perf CI gate: `npm run bench:ci [-- flags]`, the last step of .ci/run.
 *
 *   (no flags)              count this build's instructions per request and compare them with bench/baseline.json;
 *                           then check the mission's budget under load (p99.9 within 2 ms, nothing failed)
 *   --baseline REV          build REV in a temporary worktree and count both in this run, instead of the file
 *   --accept "why"          count this build and rewrite bench/baseline.json with it (commit it with the change)
 *   --instructions-only     skip the load check
 *   --config FILE           another gate config (default bench/gate.json)
 *   --keep-dumps DIR        keep every window's callgrind dump and the perf map (read them with bench/instruction-profile.ts)
 *
 * Exit 0 passed, 1 failed, 2 could not run. Figures of every run go to bench/results/tmp/gate-*.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { callgrindAvailable } from './lib/callgrind.js';
import { runClosedLoop, wrkAvailable } from './lib/closed-loop.js';
import { COST_CLASSES, costTraffic, measureCost, STAGE_NAMES, type CostReport } from './lib/cost.js';
import {
  checkLoad,
  compareCost,
  costFigures,
  decide,
  FIGURES,
  loadBaseline,
  stageFigures,
  loadGateConfig,
  writeBaseline,
  type GateCheck,
  type CostFigureName,
  type CostFigures,
  type GateConfig,
  type LoadFigures,
  type StageFigures,
} from './lib/gate-decision.js';
import { collectGarbage, prepareTraffic } from './lib/prepare.js';
import { formatMicros, formatPercent } from './lib/results.js';
import { pinProcesses, REPO_ROOT, startServer, type RunningServer } from './lib/servers.js';
import { describeMachine, log, measureClosedLoop, OpenLoopSession, type ClosedRun, type OpenRun } from './lib/session.js';
import { spread } from './lib/stats.js';
import { DEFAULT_MIX } from './lib/traffic.js';
import { buildRevision, headCommit, lastCommitOf, valgrindVersion } from './lib/worktree.js';

const BASELINE_FILE = join(REPO_ROOT, 'bench/baseline.json');

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: join(REPO_ROOT, 'bench/gate.json') },
      baseline: { type: 'string' },
      accept: { type: 'string' },
      'instructions-only': { type: 'boolean', default: false },
      'keep-dumps': { type: 'string' },
    },
  });
  const config = loadGateConfig(values.config!);
  const configPath = relative(REPO_ROOT, values.config!) || values.config!;
  const missing = callgrindAvailable() ?? (values['instructions-only'] ? null : wrkAvailable());
  if (missing) throw new Error(`${missing}: .ci/run installs it; by hand: apt-get install valgrind wrk time`);
  if (values.accept !== undefined && values.baseline !== undefined) throw new Error('--accept rewrites the baseline file; it does not go with --baseline REV');
  const started = performance.now();
  const machine = describeMachine();
  console.log(`perf gate (${configPath}): ${machine.cpuModel}, ${machine.logicalCpus} CPUs, Node ${process.version}, ${valgrindVersion()}`);

  const checks: GateCheck[] = [];
  const messages = costTraffic(config.cost.requestsPerClass, config.cost.seed);
  const keepDumps = values['keep-dumps'] ?? null;
  const count = (root: string, kind: 'engine' | 'bare' = 'engine') =>
    measureCost(messages, { kind, root, warmupPasses: config.cost.warmupPasses, rounds: config.cost.rounds, keepDumps: root === REPO_ROOT ? keepDumps : null, log });
  let reference: { label: string; report: CostReport | null; figures: ReturnType<typeof costFigures>; stages: StageFigures | null } | null = null;
  const countRevision = async (revision: string, why: string) => {
    const built = buildRevision(REPO_ROOT, revision, log);
    try {
      const report = await count(built.root);
      return { label: `${revision} (${built.commit.slice(0, 10)}), counted in this run${why}`, report, figures: costFigures(report), stages: stageFigures(report) };
    } finally {
      built.remove();
    }
  };
  if (values.baseline !== undefined) reference = await countRevision(values.baseline, '');
  else if (values.accept === undefined) {
    const baseline = loadBaseline(BASELINE_FILE);
    const here = { cpu: machine.cpuModel, node: process.version, valgrind: valgrindVersion() };
    const differs = (Object.keys(here) as (keyof typeof here)[]).filter((key) => baseline.accepted[key] !== here[key]);
    const acceptedIn = lastCommitOf(REPO_ROOT, 'bench/baseline.json');
    if (differs.length > 0 && acceptedIn !== headCommit(REPO_ROOT)) {
      // Counts from another CPU, Node or valgrind are not comparable: count the accepted commit here instead.
      const was = differs.map((key) => `${key} ${baseline.accepted[key]}, here ${here[key]}`).join('; ');
      reference = await countRevision(acceptedIn, `, because the baseline file was counted elsewhere (${was})`);
    } else {
      reference = {
        label: `bench/baseline.json (accepted ${baseline.accepted.at.slice(0, 10)}: ${baseline.accepted.why})`,
        report: null,
        figures: baseline.instructionsPerRequest,
        stages: baseline.stagesPerRequest ?? null,
      };
      if (differs.length > 0) console.log(`  note: the baseline was counted with another ${differs.join(', ')}, and it was accepted in this very commit`);
    }
  }
  const now = await count(REPO_ROOT);
  const bare = await count(REPO_ROOT, 'bare');
  printCost(now);
  const figures = costFigures(now);
  printStages(stageFigures(now), values.accept === undefined ? (reference?.stages ?? null) : null);
  printShare(costFigures(bare), figures, values.accept === undefined ? reference!.figures : null);
  if (values.accept !== undefined) {
    writeBaseline(BASELINE_FILE, figures, stageFigures(now), {
      at: new Date().toISOString(),
      why: values.accept,
      onTopOf: headCommit(REPO_ROOT),
      cpu: machine.cpuModel,
      node: process.version,
      valgrind: valgrindVersion(),
    });
    console.log(`  wrote bench/baseline.json: commit it together with the change it accepts`);
  } else {
    console.log(`  against ${reference!.label}:`);
    checks.push(...compareCost(figures, reference!.figures, config.thresholds.maxInstructionIncrease));
  }

  let load: LoadFigures | null = null;
  if (!values['instructions-only']) {
    load = await measureLoad(config);
    checks.push(...checkLoad(load, config.thresholds));
  }

  const decision = decide(checks);
  for (const check of decision.checks) console.log(`  ${check.passed ? 'ok  ' : 'FAIL'} ${check.name}: ${check.measured}, threshold ${check.limit}`);
  const seconds = (performance.now() - started) / 1000;
  if (values.accept !== undefined && decision.passed) console.log(`perf gate: baseline accepted, ${seconds.toFixed(0)} s`);
  else
    console.log(
      decision.passed
        ? `perf gate passed, ${seconds.toFixed(0)} s`
        : `perf gate FAILED: ${decision.checks.filter((c) => !c.passed).map((c) => c.name).join('; ')} (thresholds in ${configPath}; ` +
            'a deliberate cost is accepted with npm run bench:ci -- --accept "why")',
    );

  const tmp = join(REPO_ROOT, 'bench/results/tmp');
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, `gate-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), `${JSON.stringify({ now, bare, reference, load, decision, seconds }, (_key, value: unknown) => (value instanceof Map ? undefined : value), 1)}\n`);
  return decision.passed ? 0 : 1;
}

function printCost(report: CostReport): void {
  const left = report.leftOut;
  console.log(
    `  counted ${report.requestsPerClass} requests per class x ${report.classes.ping.rounds.length} rounds through the real server under callgrind in ${report.seconds.toFixed(0)} s; ` +
      `left out of the class figures, per request: GC ${Math.round(left.gc)}, V8 compiling ${Math.round(left.compile)}, timers ${Math.round(left.timers)}`,
  );
  for (const [name, cost] of Object.entries(report.classes)) {
    const rounds = spread(cost.rounds);
    console.log(`    ${name.padEnd(16)} ${Math.round(cost.instructionsPerRequest).toLocaleString('en-US').padStart(9)}   (rounds ${Math.round(rounds.min)}..${Math.round(rounds.max)})`);
  }
}

const thousands = (n: number) => Math.round(n).toLocaleString('en-US');

function printStages(now: StageFigures, reference: StageFigures | null): void {
  console.log(`  by stage (median of rounds${reference ? '; the reference in brackets' : ''}):`);
  const width = 20;
  console.log(`    ${'stage'.padEnd(28)}${COST_CLASSES.map((name) => name.padStart(width)).join('')}`);
  for (const stage of STAGE_NAMES) {
    const cells = COST_CLASSES.map((name) => {
      const was = reference?.[name]?.[stage];
      return `${thousands(now[name][stage])}${was === undefined ? '' : ` (${thousands(was)})`}`.padStart(width);
    });
    console.log(`    ${stage.padEnd(28)}${cells.join('')}`);
  }
  const unseen = STAGE_NAMES.filter((stage) => COST_CLASSES.every((name) => now[name][stage] === 0));
  if (unseen.length > 0) console.log(`    counted nothing in any class, so V8 inlined its entry and its instructions are in "other JavaScript": ${unseen.join(', ')}`);
}

/** The issue's goal is a share of at least 0.5: the bare server's instructions over the engine's, on the same requests. */
function printShare(bare: CostFigures, now: CostFigures, reference: CostFigures | null): void {
  const share = (engine: CostFigures, name: CostFigureName) => (bare[name] / engine[name]).toFixed(2);
  const cells = FIGURES.map((name) => `${name} ${share(now, name)}${reference ? ` (${share(reference, name)})` : ''}`);
  console.log(`  the bare uWebSockets.js server's instructions over the engine's${reference ? ' (the reference in brackets)' : ''}: ${cells.join(', ')}`);
  console.log(`    bare server per request: ${FIGURES.map((name) => `${name} ${thousands(bare[name])}`).join(', ')}`);
}

/** The mission's budget at the gate's load: the engine's maximum (wrk), then fixed-rate runs at a fraction of it. */
async function measureLoad(config: GateConfig): Promise<LoadFigures> {
  const { load } = config;
  const traffic = prepareTraffic({ seed: load.seed, distinct: load.distinct, population: load.population, mix: DEFAULT_MIX });
  collectGarbage();
  const pinning = pinProcesses(true);
  const policy = { maxBackgroundCores: load.maxBackgroundCores, retries: load.retries };
  let engine: RunningServer | null = null;
  const closedRuns: ClosedRun[] = [];
  const openRuns: OpenRun[] = [];
  try {
    engine = await startServer('engine', { cpus: pinning.serverCpus, engineEnv: {}, cpuProfileDir: null });
    const closed = { connections: load.connections, durationSeconds: load.closedSeconds };
    await runClosedLoop({ url: engine.mediaUrl, requests: traffic.requests, ...closed, durationSeconds: Math.max(2, load.warmupSeconds) });
    for (let i = 0; i < load.runs; i++) closedRuns.push(await measureClosedLoop(engine, traffic.requests, closed, policy));
    const rate = Math.round(load.fraction * spread(closedRuns.map((r) => r.load.requestsPerSecond)).median);
    const session = new OpenLoopSession(traffic.requests, load.openConnections, policy);
    for (let i = 0; i < load.runs; i++) openRuns.push(await session.measure(engine, { rate, durationSeconds: load.openSeconds, seed: load.seed + i, graceSeconds: 5 }, i === 0 ? load.warmupSeconds : 0));
    session.close();
    const median = (values: number[]) => spread(values).median;
    const fallbacks = openRuns.reduce((sum, r) => sum + r.server.deadlineFallbacks, 0);
    const answered = openRuns.reduce((sum, r) => sum + Object.values(r.server.outcomes).reduce((a, b) => a + b, 0), 0);
    console.log(
      `  load (${pinning.note}): engine maximum ${Math.round(median(closedRuns.map((r) => r.load.requestsPerSecond)))} req/s (wrk, generator ` +
        `${median(closedRuns.map((r) => r.server.cpu.generator)).toFixed(2)} cores); at ${rate} req/s = ${formatPercent(load.fraction, 0)} of it: ` +
        `server p99 ${formatMicros(median(openRuns.map((r) => r.server.latency?.p99 ?? NaN)))}, client p99 ${formatMicros(median(openRuns.map((r) => r.load.latency.p99)))}, ` +
        `deadline fallbacks ${fallbacks} of ${answered}; other processes up to ${Math.max(...[...closedRuns, ...openRuns].map((r) => r.server.cpu.background)).toFixed(2)} cores (reported, not gated)`,
    );
  } finally {
    await engine?.stop();
  }
  return {
    serverP999Micros: spread(openRuns.map((r) => r.server.latency?.p999 ?? NaN)),
    failedRequests:
      closedRuns.reduce((sum, r) => sum + r.load.errors + r.load.timeouts + r.load.non2xx, 0) + openRuns.reduce((sum, r) => sum + r.load.errors + r.load.timeouts + r.load.non200, 0),
  };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`perf gate could not run: ${(err as Error).stack ?? err}`);
    process.exit(2);
  },
);
