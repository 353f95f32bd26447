/**
 * Cost of the strategy book alone, in process, on one thread: `screen` (profile-only exclusions, and which bidding
 * strategies can still want the device) and `screen` + `decide` (score conditions, value, coefficient, creative,
 * experiment arms), for a generated book at the industry reference's scale (bench/lib/big-book.ts: 350 strategies,
 * 200 experiments) and the demo book side by side. The requests are bench/stages.ts's: Tencent requests for devices
 * of the demo snapshot (70 % stored, 30 % unknown), decoded and looked up once; every device's real scores are
 * computed once beforehand, so scoring is not in the figures. Median pass, ns per request.
 * Budget (design.md): 350 strategies evaluated <= 30 us per request.
 *
 *   npx tsx bench/strategies.ts [--book FILE] [--seed S] [--requests N] [--passes P]
 *
 * `--book FILE` replaces the generated book (seed S) with a book file. Instructions per request (design.md,
 * "Measuring cost"): `--instructions` does nothing after the set-up but WARM_UP_PASSES and then P passes of
 * screen + decide over the N requests for the generated book (or FILE: `--book data/strategies.json` counts the
 * demo book), so two runs under callgrind that differ only in P count the same start-up and warm-up:
 *
 *   npx tsx bench/strategies.ts --instructions --passes 1 --requests 500   # outside valgrind first: tsx caches its transforms
 *   for P in 2 6; do valgrind --tool=callgrind --callgrind-out-file=/dev/null node --predictable --import tsx bench/strategies.ts --instructions --passes $P 2>&1 | grep -E 'Collected|counted'; done
 *
 *   instructions per request = (Collected at P=6 - Collected at P=2) / (4 x N)
 *
 * Start-up under valgrind (loading and checking the 116 MB snapshot, scoring every device once) takes minutes.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { stageTraffic } from './lib/stage-traffic.js';
import type { BidContext } from '../src/engine/types.js';
import { tencentAdapter } from '../src/media/tencent/adapter.js';
import { allocateBatch, BatchScorer } from '../src/scoring/scorer.js';
import { loadProfileSchema, readField } from '../src/store/profile-schema.js';
import { loadSnapshot } from '../src/store/snapshot.js';
import { compileStrategyBook, loadStrategyBook, type StrategyBook } from '../src/strategy/book.js';
import type { DeviceView } from '../src/strategy/device-view.js';
import { bigBook } from './lib/big-book.js';

/** Untimed and uncounted passes first: V8 has compiled the book's closures by the end of them. */
const WARM_UP_PASSES = 3;

const { values } = parseArgs({
  options: {
    book: { type: 'string' },
    seed: { type: 'string', default: '1' },
    requests: { type: 'string', default: '20000' },
    passes: { type: 'string', default: '7' },
    instructions: { type: 'boolean', default: false },
  },
  strict: true,
});
const requests = Number(values.requests);
const passes = Number(values.passes);
const seed = Number(values.seed);
if (!Number.isSafeInteger(requests) || requests < 1) throw new Error(`--requests must be a positive integer, got ${values.requests}`);
if (!Number.isSafeInteger(passes) || passes < 1) throw new Error(`--passes must be a positive integer, got ${values.passes}`);
if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);

const config = loadConfig({ env: {} });
const profile = loadProfileSchema(config.store.profileSchema);
const { store } = loadSnapshot(config.store.snapshot, profile);
const scorer = new BatchScorer(config.scoring.manifest, config.store.profileSchema);
const flagsField = profile.field('flags');

const big = values.book
  ? { book: loadStrategyBook(values.book, profile, scorer.modelNames), name: values.book }
  : { book: compileStrategyBook(bigBook(seed), `generated book (seed ${seed})`, profile, scorer.modelNames), name: `generated book (seed ${seed})` };

const contexts: BidContext[] = stageTraffic(store, requests).map((body) => tencentAdapter.decode(body, ''));
const keys = contexts.map((c) => c.deviceIds[0]!.key);
const views: DeviceView[] = contexts.map((c, i) => {
  const offset = store.find(keys[i]!, 0);
  return {
    media: c.media,
    os: c.os,
    records: offset >= 0 ? store.records : null,
    recordOffset: Math.max(0, offset),
    flags: offset >= 0 ? readField(store.records, offset, flagsField) : 0,
    platformExperimentIds: c.platformExperimentIds,
    askedStrategyIds: c.askedStrategyIds,
    scores: new Float32Array(scorer.modelCount),
    scoresOffset: 0,
  };
});
const batch = allocateBatch(1, store.recordBytes, scorer.modelCount);
batch.count = 1;
for (const view of views) {
  batch.known[0] = view.records !== null ? 1 : 0;
  if (view.records !== null) batch.records.set(view.records.subarray(view.recordOffset, view.recordOffset + store.recordBytes));
  batch.os[0] = view.os;
  scorer.scoreBatch(batch);
  view.scores.set(batch.scores);
}

let sink = 0;

/** What the engine does around scoring: decide only when the screen left a candidate and no exclusion. */
function screenAndDecide(book: StrategyBook, mask: Uint8Array): void {
  for (let i = 0; i < views.length; i++) {
    const screen = book.screen(views[i]!, mask);
    if (screen.exclusion === null && screen.candidates > 0) sink += book.decide(views[i]!, mask, keys[i]!, 0, []).strategies.length;
  }
}

function screenOnly(book: StrategyBook, mask: Uint8Array): void {
  for (const view of views) sink += book.screen(view, mask).candidates;
}

function medianNsPerRequest(run: () => void): number {
  for (let p = 0; p < WARM_UP_PASSES; p++) run();
  const times: number[] = [];
  for (let p = 0; p < passes; p++) {
    const started = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - started) / requests);
  }
  times.sort((a, b) => a - b);
  return times[passes >> 1]!;
}

/** Per request: candidates after the screen, strategies taken, and which share of requests an exclusion rejected. */
function outcomes(book: StrategyBook): { candidates: number; taken: number; excluded: number } {
  const mask = new Uint8Array(book.bidStrategyCount);
  let candidates = 0;
  let taken = 0;
  let excluded = 0;
  for (let i = 0; i < views.length; i++) {
    const screen = book.screen(views[i]!, mask);
    candidates += screen.candidates;
    if (screen.exclusion !== null) excluded++;
    else if (screen.candidates > 0) {
      const outcome = book.decide(views[i]!, mask, keys[i]!, 0, []);
      if (outcome.exclusion !== null) excluded++;
      else taken += outcome.strategies.length;
    }
  }
  return { candidates: candidates / requests, taken: taken / requests, excluded: excluded / requests };
}

if (values.instructions) {
  const mask = new Uint8Array(big.book.bidStrategyCount);
  for (let p = 0; p < WARM_UP_PASSES + passes; p++) screenAndDecide(big.book, mask);
  console.log(`counted: ${WARM_UP_PASSES} warm-up + ${passes} passes x ${requests} requests of screen + decide, ${big.name} (${big.book.bidStrategyCount} strategies)`);
} else {
  const demo = { book: loadStrategyBook(config.strategies, profile, scorer.modelNames), name: 'demo book' };
  const columns = [big, demo].map(({ book, name }) => {
    const mask = new Uint8Array(book.bidStrategyCount);
    const screen = medianNsPerRequest(() => screenOnly(book, mask));
    const both = medianNsPerRequest(() => screenAndDecide(book, mask));
    const experiments = book.layersOutline().reduce((n, layer) => n + new Set(layer.arms.map((arm) => arm.experiment)).size, 0);
    return { name, size: `${book.bidStrategyCount} strategies, ${experiments} experiment${experiments === 1 ? '' : 's'}`, screen, both, ...outcomes(book) };
  });
  console.log(`node ${process.version}, ${requests} Tencent requests (70 % stored devices), median of ${passes} passes after ${WARM_UP_PASSES} warm-up\n`);
  const width = Math.max(...columns.flatMap((c) => [c.name.length, c.size.length])) + 3;
  const row = (label: string, cell: (c: (typeof columns)[number]) => string) => console.log(label.padEnd(28) + columns.map((c) => cell(c).padStart(width)).join(''));
  row('', (c) => c.name);
  row('', (c) => c.size);
  row('screen, ns/request', (c) => c.screen.toFixed(0));
  row('screen + decide, ns/request', (c) => c.both.toFixed(0));
  row('candidates/request', (c) => c.candidates.toFixed(1));
  row('taken/request', (c) => c.taken.toFixed(2));
  row('excluded', (c) => `${(c.excluded * 100).toFixed(1)} %`);
}
if (sink === 42) console.log('');
