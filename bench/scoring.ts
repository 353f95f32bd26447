/**
 * Per-record scoring cost of each demo model, compiled vs the reference evaluator, at several batch sizes; then the
 * whole batch scorer (feature extraction + every model). Run: npx tsx bench/scoring.ts
 * Budget (design.md): <= 50 us per request for a 300-tree GBDT plus a logistic model.
 */
import { readFileSync } from 'node:fs';
import { loadManifestModels, readManifest, DEFAULT_MANIFEST_PATH } from '../src/scoring/manifest.js';
import { loadLogisticModel } from '../src/scoring/logistic.js';
import { referenceLogistic, referenceXgboost } from '../src/scoring/reference.js';
import { allocateBatch, BatchScorer } from '../src/scoring/scorer.js';
import { loadXgboostModel } from '../src/scoring/xgboost.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../src/store/profile-schema.js';

const BATCH_SIZES = [1, 8, 64, 256];
const ROWS = 256;
const MEASURE_MS = 150;
/** Generated tree code runs in V8's interpreter until TurboFan has compiled it, which takes a few thousand rows. */
const WARM_UP_MS = 1000;

interface Device {
  record: string;
  os: number;
  known: boolean;
}
const devicesPath = new URL('../test/fixtures/scoring/devices-scores.json', import.meta.url);
const devices = (JSON.parse(readFileSync(devicesPath, 'utf8')) as { devices: Device[] }).devices;

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const manifest = readManifest(DEFAULT_MANIFEST_PATH, schema);
const models = loadManifestModels(manifest, schema);

const batch = allocateBatch(ROWS, schema.recordBytes, models.length);
for (let i = 0; i < ROWS; i++) {
  const device = devices[i % devices.length]!;
  batch.records.set(Buffer.from(device.record, 'hex'), i * schema.recordBytes);
  batch.known[i] = device.known ? 1 : 0;
  batch.os[i] = device.os;
}

/**
 * Nanoseconds per record of run(first, batchSize), each call scoring records first..first+batchSize-1, repeated for
 * MEASURE_MS. `first` moves on every call: scoring one row over and over would let the branch predictor learn its
 * paths and flatter small batches.
 */
function nsPerRecord(batchSize: number, run: (first: number, batchSize: number) => void): number {
  let first = 0;
  const step = () => {
    run(first, batchSize);
    first = first + 2 * batchSize > ROWS ? 0 : first + batchSize;
  };
  const warmUntil = performance.now() + MEASURE_MS / 3;
  while (performance.now() < warmUntil) step();
  let records = 0;
  const start = performance.now();
  let now = start;
  while (now - start < MEASURE_MS) {
    for (let k = 0; k < 20; k++) step();
    records += 20 * batchSize;
    now = performance.now();
  }
  return ((now - start) * 1e6) / records;
}

/** Runs batches of 64 for WARM_UP_MS, so that the first batch size measured does not pay for V8's compilation. */
function warmUp(run: (first: number, batchSize: number) => void): void {
  const until = performance.now() + WARM_UP_MS;
  for (let first = 0; performance.now() < until; first = (first + 64) % (ROWS - 64)) run(first, 64);
}

const us = (ns: number) => (ns / 1000).toFixed(2).padStart(8);
console.log(`per-record cost in microseconds (node ${process.version})`);
console.log(`${'model'.padEnd(22)}${BATCH_SIZES.map((b) => `batch ${b}`.padStart(18)).join('')}`);
console.log(`${''.padEnd(22)}${BATCH_SIZES.map(() => '  compiled     ref').join('')}`);

const compiledAtOne = new Map<string, number>();
let sink = 0;
for (const { entry, extractor, model } of models) {
  const width = extractor.featureCount;
  const rows = new Float32Array(ROWS * width);
  for (let i = 0; i < ROWS; i++) extractor.fill(batch.records, i * schema.recordBytes, batch.known[i] === 1, batch.os[i]!, rows, i * width);
  const out = new Float32Array(ROWS);
  const rowsFrom = Array.from({ length: ROWS }, (_, first) => rows.subarray(first * width));
  let reference: (row: number) => number;
  if (entry.format === 'xgboost-json') {
    const parsed = loadXgboostModel(entry.file);
    reference = (row) => referenceXgboost(parsed, rows, row * width);
  } else {
    const parsed = loadLogisticModel(entry.file);
    reference = (row) => referenceLogistic(parsed, entry.features, rows, row * width);
  }
  const cells: string[] = [];
  warmUp((first, n) => model.scoreRows(rowsFrom[first]!, n, out, 0, 1));
  for (const size of BATCH_SIZES) {
    const compiled = nsPerRecord(size, (first, n) => model.scoreRows(rowsFrom[first]!, n, out, 0, 1));
    const walked = nsPerRecord(size, (first, n) => {
      for (let row = first; row < first + n; row++) sink += reference(row);
    });
    if (size === 1) compiledAtOne.set(entry.name, compiled);
    cells.push(`${us(compiled)}${us(walked)}`);
  }
  console.log(`${`${entry.name} (${entry.format})`.padEnd(22)}${cells.join('  ')}`);
}

const scorer = new BatchScorer(DEFAULT_MANIFEST_PATH);
const batches = Array.from({ length: ROWS }, (_, first) => ({
  count: 0,
  records: batch.records.subarray(first * schema.recordBytes),
  known: batch.known.subarray(first),
  os: batch.os.subarray(first),
  scores: batch.scores.subarray(first * models.length),
}));
const scoreSlice = (first: number, n: number) => {
  const slice = batches[first]!;
  slice.count = n;
  scorer.scoreBatch(slice);
};
warmUp(scoreSlice);
const whole = BATCH_SIZES.map((size) => us(nsPerRecord(size, scoreSlice)));
console.log(`${'all 4 + extraction'.padEnd(22)}${whole.map((cell) => `${cell}${''.padStart(10)}`).join('')}`);
const budget = (compiledAtOne.get('apply') ?? 0) + (compiledAtOne.get('approve') ?? 0);
console.log(`apply (300 trees) + approve (logistic), batch 1: ${us(budget).trim()} us per request (budget 50 us)`);
if (Number.isNaN(sink)) console.log('');
