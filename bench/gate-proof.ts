/**
 * Proof that the perf gate works: `npm run bench:gate-proof [-- --runs 10 --busy-runs 3 --extra 0.10]` (about a
 * minute per count). Counts the unchanged build `--runs` times on an idle machine and `--busy-runs` times with the
 * other core kept busy (`yes > /dev/null`), each judged against bench/baseline.json as the gate judges it; then
 * counts a copy of the build made `--extra` more expensive per request (a loop added to Engine.handle in a
 * temporary copy of dist/, sized from a calibration count) and expects the gate to fail it. Prints the spread per
 * class and every verdict; writes bench/results/tmp/gate-proof.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { costTraffic, measureCost, type CostReport } from './lib/cost.js';
import { ALL_CLASSES, compareCost, costFigures, decide, FIGURES, loadBaseline, loadGateConfig, type CostFigures } from './lib/gate-decision.js';
import { formatPercent } from './lib/results.js';
import { REPO_ROOT } from './lib/servers.js';
import { log } from './lib/session.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    'busy-runs': { type: 'string', default: '3' },
    extra: { type: 'string', default: '0.10' },
  },
});
const config = loadGateConfig(join(REPO_ROOT, 'bench/gate.json'));
const baseline = loadBaseline(join(REPO_ROOT, 'bench/baseline.json')).instructionsPerRequest;
const messages = costTraffic(config.cost.requestsPerClass, config.cost.seed);
const count = (root: string, env: Record<string, string> = {}) =>
  measureCost(messages, { root, env, warmupPasses: config.cost.warmupPasses, rounds: config.cost.rounds, log });
const verdict = (figures: CostFigures) => decide(compareCost(figures, baseline, config.thresholds.maxInstructionIncrease));

interface Counted {
  kind: 'idle' | 'busy' | 'costlier';
  figures: CostFigures;
  passed: boolean;
  report: CostReport;
}
const counted: Counted[] = [];

async function countUnchanged(kind: 'idle' | 'busy', runs: number): Promise<void> {
  for (let i = 0; i < runs; i++) {
    const report = await count(REPO_ROOT);
    const figures = costFigures(report);
    counted.push({ kind, figures, passed: verdict(figures).passed, report });
    log(`${kind} run ${i + 1}/${runs}: ${verdict(figures).passed ? 'passed' : 'FAILED'}, all classes ${Math.round(figures[ALL_CLASSES])}`);
  }
}

/** A copy of the build whose Engine.handle first spins RTA_PROOF_EXTRA_ITERATIONS times: the same work per request. */
function costlierBuild(): string {
  const root = mkdtempSync(join(tmpdir(), 'rta-costlier-'));
  for (const shared of ['node_modules', 'data', 'proto', 'package.json']) symlinkSync(join(REPO_ROOT, shared), join(root, shared));
  cpSync(join(REPO_ROOT, 'dist'), join(root, 'dist'), { recursive: true });
  const engineFile = join(root, 'dist/engine/engine.js');
  const source = readFileSync(engineFile, 'utf8');
  const entry = 'handle(context, sink, receivedAt) {';
  if (!source.includes(entry)) throw new Error(`${engineFile} has no "${entry}": the proof needs updating`);
  const spin = `${entry}\n        for (let i = 0; i < EXTRA_ITERATIONS; i++) extraWork = (extraWork * 31 + i) | 0;`;
  const header = 'const EXTRA_ITERATIONS = Number(process.env.RTA_PROOF_EXTRA_ITERATIONS ?? 0);\nexport let extraWork = 0;\n';
  writeFileSync(engineFile, header + source.replace(entry, spin));
  return root;
}

async function main(): Promise<void> {
  await countUnchanged('idle', Number(values.runs));
  const busy: ChildProcess = spawn('sh', ['-c', 'exec yes > /dev/null'], { stdio: 'ignore' });
  try {
    await countUnchanged('busy', Number(values['busy-runs']));
  } finally {
    busy.kill();
  }

  const root = costlierBuild();
  try {
    const extra = Number(values.extra);
    const calibrationIterations = 2000;
    const unchanged = counted[0]!.figures[ALL_CLASSES];
    const calibration = costFigures(await count(root, { RTA_PROOF_EXTRA_ITERATIONS: String(calibrationIterations) }));
    const perIteration = (calibration[ALL_CLASSES] - unchanged) / calibrationIterations;
    const iterations = Math.ceil((extra * unchanged) / perIteration);
    log(`calibration: ${perIteration.toFixed(2)} instructions per loop iteration; ${iterations} iterations add ${formatPercent(extra, 0)} of a mean request`);
    const report = await count(root, { RTA_PROOF_EXTRA_ITERATIONS: String(iterations) });
    const figures = costFigures(report);
    counted.push({ kind: 'costlier', figures, passed: verdict(figures).passed, report });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }

  const unchangedRuns = counted.filter((c) => c.kind !== 'costlier');
  console.log(`\ngate proof: ${unchangedRuns.length} counts of the unchanged build (${values.runs} idle, ${values['busy-runs']} with the other core busy), then a costlier build`);
  console.log(`${'class'.padEnd(26)} ${'baseline'.padStart(9)} ${'min'.padStart(9)} ${'max'.padStart(9)} ${'spread'.padStart(8)} ${'costlier'.padStart(9)} ${'change'.padStart(8)}`);
  const costlier = counted.at(-1)!;
  for (const name of FIGURES) {
    const list = unchangedRuns.map((c) => c.figures[name]);
    const [min, max] = [Math.min(...list), Math.max(...list)];
    console.log(
      `${name.padEnd(26)} ${String(baseline[name]).padStart(9)} ${String(Math.round(min)).padStart(9)} ${String(Math.round(max)).padStart(9)} ` +
        `${formatPercent(max / min - 1, 2).padStart(8)} ${String(Math.round(costlier.figures[name])).padStart(9)} ${formatPercent(costlier.figures[name] / baseline[name] - 1, 1).padStart(8)}`,
    );
  }
  const passes = (kind: Counted['kind']) => `${counted.filter((c) => c.kind === kind && c.passed).length} of ${counted.filter((c) => c.kind === kind).length}`;
  console.log(`unchanged build passed: idle ${passes('idle')}, other core busy ${passes('busy')}; costlier build passed ${passes('costlier')} (must be 0)`);
  mkdirSync(join(REPO_ROOT, 'bench/results/tmp'), { recursive: true });
  writeFileSync(join(REPO_ROOT, 'bench/results/tmp/gate-proof.json'), `${JSON.stringify(counted, null, 1)}\n`);
  const proven = unchangedRuns.every((c) => c.passed) && !costlier.passed;
  console.log(proven ? 'gate proof: the gate passes what costs nothing and fails what costs more' : 'gate proof FAILED');
  process.exit(proven ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(`gate proof could not run: ${(err as Error).stack ?? err}`);
  process.exit(2);
});
