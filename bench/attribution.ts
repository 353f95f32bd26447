/**
 * What attribution costs, in process, on the main thread where the engine runs it: reading the decision log (per
 * decision record), joining posted events (per event), and the memory per remembered taken decision. The log is
 * the real one: the engine decides the in-process benchmarks' Tencent requests and a DecisionLogRecorder writes
 * them to files; each pass reads them with a fresh Attribution, at the priority of the engine's main thread
 * (server.mainThreadNice), where the reading does not pause (src/attribution/follower.ts). Run: npm run bench:attribution
 */
import { mkdtempSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { Attribution } from '../src/attribution/attribution.js';
import { loadConfig } from '../src/config.js';
import { Engine, type DecisionSink } from '../src/engine/engine.js';
import { tencentAdapter } from '../src/media/tencent/adapter.js';
import { DecisionLogRecorder } from '../src/observe/decision-log/recorder.js';
import { readDecisionLog } from '../src/observe/decision-log/reader.js';
import { createMetrics } from '../src/observe/metrics.js';
import { InlineScorer } from '../src/scoring/inline-scorer.js';
import { BatchScorer } from '../src/scoring/scorer.js';
import { loadProfileSchema } from '../src/store/profile-schema.js';
import { loadSnapshot } from '../src/store/snapshot.js';
import { loadStrategyBook } from '../src/strategy/book.js';
import { spread } from './lib/stats.js';
import { stageTraffic } from './lib/stage-traffic.js';

const REQUESTS = 200_000;
const PASSES = 5;
const BATCH = 1000;

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (npm run bench:attribution does)');

const config = loadConfig({ env: {} });
if (process.platform === 'linux') setPriority(0, config.server.mainThreadNice);
const profile = loadProfileSchema(config.store.profileSchema);
const { store } = loadSnapshot(config.store.snapshot, profile);
const scorer = new BatchScorer(config.scoring.manifest, config.store.profileSchema);
const book = loadStrategyBook(config.strategies, profile, scorer.modelNames);
const engine = new Engine({ config: config.engine, media: config.media, book, store, scorer: new InlineScorer(scorer), profile, metrics: createMetrics({ processMetrics: false }) });

const logDir = mkdtempSync(join(tmpdir(), 'rta-bench-attribution-log-'));
const metrics = createMetrics({ processMetrics: false });
const recorder = await DecisionLogRecorder.open({ ...config.decisionLog, dir: logDir }, 1, metrics.decisionLogRecords, (error) => {
  throw error;
});
const sink: DecisionSink = {
  deliver: (context, decision) => recorder.record(context, decision, Date.now(), null),
  fail: (_context, stage) => {
    throw new Error(`${stage} failed`);
  },
};
const bodies = stageTraffic(store, REQUESTS);
// In slices, so the recorder's blocks go to disk between them instead of filling its ring.
for (let i = 0; i < bodies.length; i += 5000) {
  for (const body of bodies.slice(i, i + 5000)) engine.handle(tencentAdapter.decode(body, ''), sink, performance.now());
  await new Promise((resolve) => setTimeout(resolve, 5));
}
await recorder.close();

// Events as a media would send them: an impression per taken decision, a click for 30 %, an approval for 5 %.
const lines: string[] = [];
let records = 0;
let takenDecisions = 0;
for (const entry of readDecisionLog([logDir])) {
  records++;
  const taken = entry.strategies.find((s) => s.verdict === 'taken');
  if (!taken) continue;
  const event = (kind: string, costFen?: number) =>
    lines.push(JSON.stringify({ trace_id: entry.traceId, media: 'tencent', strategy_id: taken.strategyId, event: kind, ...(costFen ? { cost_fen: costFen } : {}), event_time: entry.timeMs + 1000 }));
  event('impression', 3);
  if (takenDecisions % 10 < 3) event('click', 80);
  if (takenDecisions % 20 === 0) event('credit_approved');
  takenDecisions++;
}
const batches: Buffer[] = [];
for (let i = 0; i < lines.length; i += BATCH) batches.push(Buffer.from(lines.slice(i, i + BATCH).join('\n')));
console.log(`${records} decision records (${takenDecisions} taken), ${lines.length} events in batches of ${BATCH}`);

/** The JS heap and the typed arrays' memory outside it. */
const memory = () => {
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
};

const readMicros: number[] = [];
const eventMicros: number[] = [];
const bytesPerDecision: number[] = [];
for (let pass = 0; pass < PASSES; pass++) {
  gc();
  const before = memory();
  // Room for exactly the taken decisions, so the ring's typed arrays count as used.
  const attribution = new Attribution(
    { ...config.attribution, maxDecisions: takenDecisions, dir: mkdtempSync(join(tmpdir(), 'rta-bench-attribution-events-')) },
    logDir,
    ['tencent', 'native'],
    new Registry(),
  );
  let started = performance.now();
  attribution.start();
  const { rememberedDecisions } = await attribution.report([]);
  readMicros.push(((performance.now() - started) * 1000) / records);
  gc();
  // The first pass only: later ones start while V8 may still hold the last pass's memory.
  if (pass === 0) bytesPerDecision.push((memory() - before) / rememberedDecisions);
  started = performance.now();
  let joined = 0;
  for (const batch of batches) joined += (await attribution.takeEvents(batch, 'application/x-ndjson')).joined;
  eventMicros.push(((performance.now() - started) * 1000) / lines.length);
  if (joined !== lines.length) throw new Error(`only ${joined} of ${lines.length} events joined`);
  attribution.stop();
}
const show = (name: string, values: number[], unit: string) => {
  const s = spread(values);
  console.log(`${name.padEnd(40)} ${s.median.toFixed(2).padStart(8)} ${unit}   (passes ${s.min.toFixed(2)}..${s.max.toFixed(2)})`);
};
show('reading the log, per decision record', readMicros, 'us');
show('joining an event (JSON Lines, kept on disk)', eventMicros, 'us');
show('memory per remembered taken decision', bytesPerDecision, 'bytes');
console.log('(memory: JS heap and typed arrays, ring sized to the taken decisions, results rows included)');
