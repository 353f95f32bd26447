import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config.js';
import { Engine, type DecisionSink } from '../engine/engine.js';
import { Os, type BidContext, type Decision, type DeviceIdKind } from '../engine/types.js';
import { readDecisionLog, type DecisionEntry } from '../observe/decision-log/reader.js';
import { createMetrics } from '../observe/metrics.js';
import { InlineScorer } from '../scoring/inline-scorer.js';
import { BatchScorer } from '../scoring/scorer.js';
import { loadProfileSchema } from '../store/profile-schema.js';
import { loadSnapshot } from '../store/snapshot.js';
import { compileStrategyBook, type StrategyBook } from '../strategy/book.js';
import type { EmbeddedDeviceStore } from '../store/embedded.js';
import { fixed, quantile } from './log-command.js';

/**
 * `rta dry-run --book proposed.json`: the recorded requests of the decision log decided again with a proposed book,
 * by the engine itself with the models and device store the config names, and compared with what was answered:
 * per strategy, take rate, coefficient mean and quantiles, and creative mix, before and after. Each request is
 * rebuilt from its record (device key, OS, platform experiment ids); second requests are left out, as their
 * candidate ads are not recorded.
 */
export const DRY_RUN_USAGE = `  rta dry-run --book FILE [--dir data/decision-log] [--config FILE] [--since ISO-TIME]`;

export class DryRunUsageError extends Error {}

interface Side {
  taken: number;
  coefficients: number[];
  creatives: Map<number, number>;
}
type Tally = { before: Side; after: Side };

export async function dryRunCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { book: { type: 'string' }, dir: { type: 'string', multiple: true }, config: { type: 'string' }, since: { type: 'string' } }, strict: true });
  if (!values.book) throw new DryRunUsageError('--book FILE is required: the proposed strategy book');
  const since = values.since === undefined ? -Infinity : Date.parse(values.since);
  if (Number.isNaN(since)) throw new DryRunUsageError(`--since "${values.since}" is not a time`);
  const config = loadConfig({ file: values.config });
  const { engine, book } = offlineEngine(config, values.book);

  const tallies = new Map<string, Tally>();
  const tally = (id: string) => {
    let t = tallies.get(id);
    if (!t) tallies.set(id, (t = { before: side(), after: side() }));
    return t;
  };
  let replayed = 0;
  let skipped = 0;
  let answered: Decision | null = null;
  const sink: DecisionSink = {
    deliver: (_context, decision) => (answered = decision),
    fail: (_context, stage) => {
      throw new Error(`the engine failed in ${stage} while replaying`);
    },
  };
  for (const record of readDecisionLog(values.dir ?? [config.decisionLog.dir])) {
    if (record.timeMs < since || record.test || record.secondRequest || record.deviceKey === '') {
      skipped++;
      continue;
    }
    replayed++;
    for (const s of record.strategies) if (s.verdict === 'taken') count(tally(s.strategyId).before, s.coefficient ?? 1, s.creativeId);
    answered = null;
    engine.handle(contextOf(record), sink, performance.now());
    // Inline scoring and the embedded store answer synchronously.
    for (const s of (answered as Decision | null)?.strategies ?? []) count(tally(s.strategyId).after, s.coefficient, s.creativeId);
  }
  console.log(report(tallies, replayed, skipped, book.version));
}

/**
 * The engine as a serving thread builds it, on this thread, for tools that decide recorded or sampled devices with a
 * book that is not in service: the config's models (scored inline) and embedded device store, the deadline off (a
 * tool measures the book, not this machine's speed).
 */
export function offlineEngine(config: Config, bookFile: string): { engine: Engine; book: StrategyBook; store: EmbeddedDeviceStore } {
  const profile = loadProfileSchema(config.store.profileSchema);
  const scorer = new InlineScorer(new BatchScorer(config.scoring.manifest, config.store.profileSchema));
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(bookFile, 'utf8'));
  } catch (err) {
    throw new DryRunUsageError(`--book ${bookFile}: ${(err as Error).message}`);
  }
  const book = compileStrategyBook(json, bookFile, profile, scorer.modelNames);
  const { store } = loadSnapshot(config.store.snapshot, profile);
  const engine = new Engine({ config: { ...config.engine, scoreDeadlineMicros: 0 }, media: config.media, book, store, scorer, profile, metrics: createMetrics({ processMetrics: false }) });
  return { engine, book, store };
}

function side(): Side {
  return { taken: 0, coefficients: [], creatives: new Map() };
}

function count(s: Side, coefficient: number, creativeId: number): void {
  s.taken++;
  s.coefficients.push(coefficient);
  s.creatives.set(creativeId, (s.creatives.get(creativeId) ?? 0) + 1);
}

/** The request a record describes, as an adapter would have decoded it (test traffic: no metrics of the book). */
function contextOf(record: DecisionEntry): BidContext {
  return {
    media: record.media,
    requestId: record.traceId,
    requestIdBytes: null,
    isPing: false,
    isTest: true,
    os: record.os as Os,
    deviceIds: [{ kind: record.deviceIdKind as DeviceIdKind, key: Buffer.from(record.deviceKey, 'hex') }],
    refusedDeviceIds: 0,
    platformExperimentIds: record.platformExperimentIds,
    secondRequest: false,
    candidateAds: [],
    askedStrategyIds: null,
    wantsJson: false,
  };
}

function report(tallies: Map<string, Tally>, replayed: number, skipped: number, version: string): string {
  const out = [`replayed ${replayed} recorded decisions with book ${version}${skipped ? ` (${skipped} left out: test traffic, second requests, no usable id, or before --since)` : ''}`, ''];
  out.push('strategy                          take rate before -> after   mean coef before -> after   p10 / p50 / p90 after     creatives after');
  for (const [id, t] of [...tallies].sort((a, b) => a[0].localeCompare(b[0]))) {
    const rate = (s: Side) => (replayed > 0 ? `${((100 * s.taken) / replayed).toFixed(1)} %` : '-');
    const after = [...t.after.coefficients].sort((a, b) => a - b);
    const creatives = [...t.after.creatives].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${((100 * n) / Math.max(1, t.after.taken)).toFixed(0)} %`);
    out.push(
      `${id.padEnd(33)} ${rate(t.before).padStart(9)} -> ${rate(t.after).padEnd(9)}   ${fixed(mean(t.before.coefficients)).padStart(9)} -> ${fixed(mean(after)).padEnd(9)}` +
        `   ${[0.1, 0.5, 0.9].map((q) => fixed(quantile(after, q))).join(' / ').padEnd(22)}  ${creatives.join(', ') || '-'}`,
    );
  }
  return out.join('\n');
}

const mean = (values: number[]) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN);
