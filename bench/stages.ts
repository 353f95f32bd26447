/**
 * Cost of each stage of the hot path, in process, on one thread: decode, device lookup, strategy screening,
 * scoring, strategy decision, encode, and the whole pipeline (engine with inline scoring). Every stage runs over the
 * same 20,000 pre-encoded Tencent requests (70 % stored devices, 30 % unknown), several passes, and reports the
 * median pass as ns per request. Run: npx tsx bench/stages.ts
 */
import { loadConfig } from '../src/config.js';
import { stageTraffic } from './lib/stage-traffic.js';
import { Engine, type DecisionSink } from '../src/engine/engine.js';
import type { BidContext, Decision } from '../src/engine/types.js';
import { tencentAdapter } from '../src/media/tencent/adapter.js';
import type { DecisionLogFiles } from '../src/observe/decision-log/files.js';
import { DecisionLogRecorder } from '../src/observe/decision-log/recorder.js';
import { createMetrics } from '../src/observe/metrics.js';
import { InlineScorer } from '../src/scoring/inline-scorer.js';
import { allocateBatch, BatchScorer } from '../src/scoring/scorer.js';
import { loadProfileSchema, readField } from '../src/store/profile-schema.js';
import { loadSnapshot } from '../src/store/snapshot.js';
import { loadStrategyBook } from '../src/strategy/book.js';
import type { DeviceView } from '../src/strategy/device-view.js';

const REQUESTS = 20_000;
const PASSES = 7;

const config = loadConfig({ env: {} });
const profile = loadProfileSchema(config.store.profileSchema);
const { store } = loadSnapshot(config.store.snapshot, profile);
const scorer = new BatchScorer(config.scoring.manifest, config.store.profileSchema);
const book = loadStrategyBook(config.strategies, profile, scorer.modelNames);
const flagsField = profile.field('flags');

const bodies = stageTraffic(store, REQUESTS);

function measure(name: string, run: () => void): number {
  const passes: number[] = [];
  run();
  for (let p = 0; p < PASSES; p++) {
    const started = process.hrtime.bigint();
    run();
    passes.push(Number(process.hrtime.bigint() - started) / REQUESTS);
  }
  passes.sort((a, b) => a - b);
  const median = passes[PASSES >> 1]!;
  console.log(`${name.padEnd(34)} ${median.toFixed(0).padStart(7)} ns/request   (passes ${passes[0]!.toFixed(0)}..${passes[PASSES - 1]!.toFixed(0)})`);
  return median;
}

const contexts: BidContext[] = bodies.map((b) => tencentAdapter.decode(b, ''));
const offsets = contexts.map((c) => store.find(c.deviceIds[0]!.key, 0));
const views: DeviceView[] = contexts.map((c, i) => ({
  media: c.media,
  os: c.os,
  records: offsets[i]! >= 0 ? store.records : null,
  recordOffset: Math.max(0, offsets[i]!),
  flags: offsets[i]! >= 0 ? readField(store.records, offsets[i]!, flagsField) : 0,
  platformExperimentIds: c.platformExperimentIds,
  askedStrategyIds: c.askedStrategyIds,
  scores: new Float32Array(scorer.modelCount),
  scoresOffset: 0,
}));
const mask = new Uint8Array(book.bidStrategyCount);
const batch = allocateBatch(1, store.recordBytes, scorer.modelCount);
batch.count = 1;
for (const [i, view] of views.entries()) {
  batch.known[0] = view.records !== null ? 1 : 0;
  if (view.records !== null) batch.records.set(store.records.subarray(offsets[i]!, offsets[i]! + store.recordBytes));
  batch.os[0] = view.os;
  scorer.scoreBatch(batch);
  view.scores.set(batch.scores);
}
const decisions: Decision[] = [];
let sink = 0;

console.log(`node ${process.version}, ${REQUESTS} Tencent requests (70 % stored devices), median of ${PASSES} passes\n`);
const stages = {
  decode: measure('decode (wire check + one-pass read)', () => {
    for (const body of bodies) sink += tencentAdapter.decode(body, '').deviceIds.length;
  }),
  lookup: measure('device lookup (embedded store)', () => {
    for (const c of contexts) sink += store.find(c.deviceIds[0]!.key, 0);
  }),
  screen: measure('strategies: screen before scoring', () => {
    for (const v of views) sink += book.screen(v, mask).candidates;
  }),
  score: measure('scoring: 4 models, batch of 1', () => {
    for (const [i, view] of views.entries()) {
      batch.known[0] = view.records !== null ? 1 : 0;
      if (view.records !== null) batch.records.set(store.records.subarray(offsets[i]!, offsets[i]! + store.recordBytes));
      batch.os[0] = view.os;
      scorer.scoreBatch(batch);
    }
  }),
  decide: measure('strategies: screen + decide', () => {
    for (const [i, v] of views.entries()) {
      book.screen(v, mask);
      sink += book.decide(v, mask, contexts[i]!.deviceIds[0]!.key, 0, []).strategies.length;
    }
  }),
};
for (const [i, v] of views.entries()) {
  book.screen(v, mask);
  const outcome = book.decide(v, mask, contexts[i]!.deviceIds[0]!.key, 0, []);
  decisions.push({ code: outcome.strategies.length ? 0 : 1, reason: '', strategies: outcome.strategies, adResults: [], cacheTtlSeconds: 3600, experimentTag: outcome.experimentTag, experimentTagName: outcome.experimentTagName, processingTimeUs: 120, modelVersion: '', bookVersion: book.version, mediaStrategyIds: book.strategyIdsOn('tencent'), facts: null });
}
const encode = measure('encode', () => {
  for (const [i, c] of contexts.entries()) sink += (tencentAdapter.encode(c, decisions[i]!).body as Uint8Array).length;
});

const engine = new Engine({ config: config.engine, media: config.media, book, store, scorer: new InlineScorer(scorer), profile, metrics: createMetrics({ processMetrics: false }) });
const encodingSink: DecisionSink = {
  deliver(context, decision) {
    sink += (tencentAdapter.encode(context, decision).body as Uint8Array).length;
  },
  fail(_context, stage) {
    throw new Error(`${stage} failed`);
  },
};
const whole = measure('whole pipeline (decode..encode)', () => {
  for (const body of bodies) engine.handle(tencentAdapter.decode(body, ''), encodingSink, performance.now());
});
const parts = stages.decode + stages.lookup + stages.score + stages.decide + encode;
console.log(`\nsum of stages ${parts.toFixed(0)} ns; pipeline overhead beyond the stages ${(whole - parts).toFixed(0)} ns (metrics, request object, key ordering)`);
if (sink === 42) console.log('');

// The decision log at its default settings, on top of the whole pipeline: each decision encoded into the ring, blocks
// handed to a disk that takes them at once (the real one writes on libuv's thread pool, off this thread).
const logConfig = config.decisionLog;
const instantDisk = { write: (_block: Uint8Array, _length: number, written: () => void) => written(), close: async () => {} } as unknown as DecisionLogFiles;
const recorder = new DecisionLogRecorder(logConfig, instantDisk, 0, createMetrics({ processMetrics: false }).decisionLogRecords);
const loggingSink: DecisionSink = {
  deliver(context, decision) {
    const reply = tencentAdapter.encode(context, decision);
    sink += (reply.body as Uint8Array).length;
    recorder.record(context, decision, Date.now(), null);
  },
  fail(_context, stage) {
    throw new Error(`${stage} failed`);
  },
};
const logged = measure('whole pipeline + decision log record', () => {
  for (const body of bodies) engine.handle(tencentAdapter.decode(body, ''), loggingSink, performance.now());
});
console.log(`decision log: ${(logged - whole).toFixed(0)} ns per request`);
await recorder.close();
