import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import type { DecisionSink } from '../engine/engine.js';
import { DeviceIdKind, Os, type BidContext, type Decision } from '../engine/types.js';
import { SLOT_BYTES } from '../store/embedded.js';
import { hasValue } from '../strategy/book.js';
import { DryRunUsageError, offlineEngine } from './dry-run.js';
import { fixed, quantile } from './log-command.js';

/**
 * `rta check --book FILE`: the guardrails that need the audience, not only the file. A sample of the device store
 * is decided with the book by the engine itself; per bidding strategy it reports the median expected value of
 * the devices that reached its value (against `targetValueFen`, where the coefficient is 1.0) and the mean
 * coefficient of those it took, and warns where either is far off: a target far from the audience's value pins
 * most coefficients to a clamp, and a mean coefficient far from 1.0 fights the media's cost guarantee.
 */
export const CHECK_USAGE = `  rta check --book FILE [--devices 20000] [--config FILE]`;

/** Target over median value, and mean coefficient, outside these bounds get a warning. */
const TARGET_RATIO = { low: 1 / 3, high: 3 };
const MEAN_COEFFICIENT = { low: 0.5, high: 2 };

interface StrategyTally {
  values: number[];
  target: number;
  coefficients: number[];
}

export function checkCommand(args: string[]): void {
  const { values } = parseArgs({ args, options: { book: { type: 'string' }, devices: { type: 'string', default: '20000' }, config: { type: 'string' } }, strict: true });
  if (!values.book) throw new DryRunUsageError('--book FILE is required');
  const sample = Number(values.devices);
  if (!Number.isInteger(sample) || sample < 1) throw new DryRunUsageError('--devices must be a positive whole number');
  const { engine, book, store } = offlineEngine(loadConfig({ file: values.config }), values.book);

  const tallies = book.strategiesOutline().map((s) => ({ values: [], target: s.bid.targetValueFen, coefficients: [] }) as StrategyTally);
  const sink: DecisionSink = {
    deliver(_context, decision: Decision) {
      const facts = decision.facts;
      if (facts === null || facts.excludedBy !== null || decision.modelVersion === '') return;
      // The verdicts and values of this decision, valid while it is delivered.
      for (let i = 0; i < facts.mask.length; i++) {
        const verdict = facts.mask[i]!;
        if (hasValue(verdict)) tallies[i]!.values.push(book.scratch.valueFen[i]!);
      }
      for (const s of decision.strategies) tallies[book.bidStrategyIds.indexOf(s.strategyId)]!.coefficients.push(s.coefficient);
    },
    fail(_context, stage) {
      throw new Error(`the engine failed in ${stage}`);
    },
  };
  const slots = store.tableBytes.length / SLOT_BYTES;
  // Every keyCount / sample slots holds one key on average, wherever the table's load factor stands.
  const stride = Math.max(1, Math.floor(store.keyCount / sample));
  let decided = 0;
  for (let slot = 0; slot < slots && decided < sample; slot += stride) {
    const key = store.tableBytes.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + 16);
    if (store.find(key, 0) < 0) continue;
    // The store does not know a device's OS: the sample alternates, so OS-bound strategies see half of it.
    engine.handle(contextFor(key, decided % 2 === 0 ? Os.ANDROID : Os.IOS), sink, performance.now());
    decided++;
  }
  console.log(report(book.bidStrategyIds, tallies, decided));
}

function contextFor(key: Uint8Array, os: Os): BidContext {
  return {
    media: 'check',
    requestId: 'check',
    requestIdBytes: null,
    isPing: false,
    isTest: true,
    os,
    deviceIds: [{ kind: os === Os.IOS ? DeviceIdKind.IDFA_MD5 : DeviceIdKind.OAID_MD5, key: Uint8Array.from(key) }],
    refusedDeviceIds: 0,
    platformExperimentIds: [],
    secondRequest: false,
    candidateAds: [],
    askedStrategyIds: null,
    wantsJson: false,
  };
}

function report(ids: readonly string[], tallies: StrategyTally[], decided: number): string {
  const out = [`${decided} stored devices decided (half as Android, half as iOS)`, ''];
  out.push('strategy                          valued   median value   target   target/median    taken   mean coef');
  const warnings: string[] = [];
  for (const [i, t] of tallies.entries()) {
    const values = t.values.sort((a, b) => a - b);
    const median = quantile(values, 0.5);
    const ratio = t.target / median;
    const mean = t.coefficients.length ? t.coefficients.reduce((a, b) => a + b, 0) / t.coefficients.length : NaN;
    out.push(
      `${ids[i]!.padEnd(33)} ${String(values.length).padStart(6)} ${fixed(median).padStart(14)} ${String(t.target).padStart(8)} ${fixed(ratio).padStart(15)} ${String(t.coefficients.length).padStart(8)} ${fixed(mean).padStart(11)}`,
    );
    if (values.length === 0) warnings.push(`${ids[i]}: no sampled device (stored, without platform experiment ids) reached its value`);
    else if (ratio < TARGET_RATIO.low || ratio > TARGET_RATIO.high)
      warnings.push(`${ids[i]}: targetValueFen ${t.target} is ${fixed(ratio)}x the audience's median value ${fixed(median)}: most coefficients will sit at a clamp`);
    if (mean < MEAN_COEFFICIENT.low || mean > MEAN_COEFFICIENT.high) warnings.push(`${ids[i]}: mean coefficient ${fixed(mean)} is far from 1.0 (the media's cost guarantee works against it)`);
  }
  out.push('', warnings.length === 0 ? 'no warnings' : `${warnings.length} warning${warnings.length > 1 ? 's' : ''}:`, ...warnings.map((w) => `  ${w}`));
  return out.join('\n');
}
