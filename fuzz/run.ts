import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { startEngine } from '../test/support/engine-process.js';
import { scrape } from '../test/support/rta-client.js';
import { checkEngine, FUZZ_ENGINE_ENV, fuzzEngine, type FuzzStats } from './drive.js';
import { FOUND_DIR, saveFinding } from './found.js';
import { InputSource } from './inputs.js';

/**
 * `npm run fuzz [-- --inputs N --seed S --connections C --timeout-ms T]`: N generated inputs (1,000,000 by default)
 * against the built engine, each judged against the reference; any input that got something it must not is saved
 * in fuzz/found/ and the run exits 1. Without --seed each run draws a new one (printed), so runs add up.
 */

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    connections: { type: 'string', default: '8' },
    'timeout-ms': { type: 'string', default: '3000' },
  },
});

function nonNegativeInteger(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    console.error(`--${name} must be a non-negative integer, not ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return value;
}

const inputs = nonNegativeInteger('inputs', values.inputs);
const seed = values.seed === undefined ? randomInt(2 ** 31) : nonNegativeInteger('seed', values.seed);
const connections = Math.max(1, nonNegativeInteger('connections', values.connections));
const timeoutMs = nonNegativeInteger('timeout-ms', values['timeout-ms']);

console.log(`fuzz: ${inputs.toLocaleString('en')} inputs, seed ${seed}, ${connections} connections, ${timeoutMs} ms per reply at most`);
const source = new InputSource(seed);
const engine = await startEngine(FUZZ_ENGINE_ENV);
const before = await scrape(engine);
const startedAt = performance.now();
const stats = await fuzzEngine(engine, inputs, (index) => source.at(index), {
  connections,
  timeoutMs,
  onProgress: (done, findings) => {
    const seconds = (performance.now() - startedAt) / 1000;
    console.log(`  ${done.toLocaleString('en')} inputs in ${seconds.toFixed(0)} s (${Math.round(done / seconds).toLocaleString('en')}/s), ${findings} findings`);
  },
});
const engineProblems = await checkEngine(engine, before, stats);
await engine.stop();

// Enough to replay each way of failing; one bug hit a thousand times would otherwise bury the folder.
const MAX_SAVED = 25;
const saved = new Set(stats.findings.slice(0, MAX_SAVED).map((finding) => saveFinding(finding, seed)));
printSummary(stats, engineProblems, [...saved]);
if (engineProblems.length > 0) console.log(`\nengine log (errors):\n${engine.output().split('\n').filter((line) => line.includes('"level":"error"')).slice(0, 20).join('\n')}`);
process.exit(stats.failed > 0 || engineProblems.length > 0 ? 1 : 0);

function printSummary(stats: FuzzStats, engineProblems: string[], files: string[]): void {
  const n = (value: number) => value.toLocaleString('en');
  const counts = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]);
  console.log(`\nfuzz summary (seed ${seed}; rerun with: npm run fuzz -- --seed ${seed} --inputs ${inputs})`);
  console.log(`  inputs        ${n(stats.inputs)} in ${(stats.elapsedMs / 1000).toFixed(1)} s, ${n(Math.round(stats.inputs / (stats.elapsedMs / 1000)))} inputs/s`);
  console.log(`  by decoder    ${counts(stats.byDecoder).map(([k, v]) => `${k} ${n(v)}`).join(', ')}`);
  console.log(`  by mutation   ${counts(stats.byMutation).map(([k, v]) => `${k} ${n(v)}`).join(', ')}`);
  console.log('  by outcome');
  for (const [outcome, count] of counts(stats.byOutcome)) console.log(`    ${outcome.padEnd(30)} ${n(count).padStart(10)}`);
  console.log(`  latency       p50 ${stats.latencyMs.p50.toFixed(2)} ms, p99 ${stats.latencyMs.p99.toFixed(2)} ms, max ${stats.latencyMs.max.toFixed(1)} ms (round trip)`);
  console.log(`  findings      ${n(stats.failed)}${files.length > 0 ? `, ${files.length} saved in ${FOUND_DIR.pathname}: ${files.slice(0, 20).join(', ')}${files.length > 20 ? '...' : ''}` : ''}`);
  for (const finding of stats.findings.slice(0, 10)) console.log(`    #${finding.input.index} ${finding.input.decoder} ${finding.outcome}: ${finding.problems.join('; ')}`);
  console.log(`  engine        ${engineProblems.length === 0 ? 'kept running, healthy, its counts agree with the fuzzer' : engineProblems.join('; ')}`);
}
