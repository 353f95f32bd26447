import { parseArgs } from 'node:util';
import { DEVICE_ID_KIND_NAMES, type DeviceIdKind } from '../engine/types.js';
import { decisionLogFiles, readDecisionLog, type DecisionEntry } from '../observe/decision-log/reader.js';

/**
 * `rta log tail|grep|stats`: the decision log for people. Reads the files directly (a running engine keeps writing
 * them), so it works on a copy taken off a node as well.
 */
export const LOG_USAGE = `  rta log tail  [--dir data/decision-log] [-n 20] [--json]
  rta log grep  [--dir ...] [--trace-id ID] [--device MD5] [--strategy ID] [--reason R] [--media M] [--json]
  rta log stats [--dir ...] [--since ISO-TIME]
  rta experiments report [--dir ...] [--since ISO-TIME]`;

const OPTIONS = {
  dir: { type: 'string', multiple: true },
  n: { type: 'string', short: 'n', default: '20' },
  json: { type: 'boolean', default: false },
  'trace-id': { type: 'string' },
  device: { type: 'string' },
  strategy: { type: 'string' },
  reason: { type: 'string' },
  media: { type: 'string' },
  since: { type: 'string' },
} as const;

export class LogUsageError extends Error {}

/** `rta experiments report`: the arms of every experiment side by side, from the decision log. */
export function experimentsCommand(args: string[]): void {
  const [sub, ...rest] = args;
  if (sub !== 'report') throw new LogUsageError(sub ? `unknown experiments command "${sub}"` : 'rta experiments needs report');
  logCommand(['experiments', ...rest]);
}

export function logCommand(args: string[]): void {
  const [sub, ...rest] = args;
  const { values } = parseArgs({ args: rest, options: OPTIONS, strict: true });
  const paths = values.dir ?? [new URL('../../data/decision-log', import.meta.url).pathname];
  if (decisionLogFiles(paths).length === 0) throw new LogUsageError(`no decision log files in ${paths.join(', ')}`);
  const warn = (file: string, bytes: number) => console.error(`(${file}: the last ${bytes} bytes are a record still being written or cut short, skipped)`);
  const print = (e: DecisionEntry) => console.log(values.json ? JSON.stringify(e, jsonBytes) : line(e));
  if (sub === 'tail') {
    const n = Number(values.n);
    if (!Number.isInteger(n) || n < 1) throw new LogUsageError('-n must be a positive whole number');
    const last: DecisionEntry[] = [];
    for (const e of readDecisionLog(paths, warn)) {
      last.push(e);
      if (last.length > n) last.shift();
    }
    last.sort((a, b) => a.timeMs - b.timeMs).forEach(print);
  } else if (sub === 'grep') {
    const matches = (e: DecisionEntry) =>
      (values['trace-id'] === undefined || e.traceId === values['trace-id']) &&
      (values.device === undefined || e.deviceKey === values.device.toLowerCase()) &&
      (values.strategy === undefined || e.strategies.some((s) => s.strategyId === values.strategy)) &&
      (values.reason === undefined || e.reason === values.reason) &&
      (values.media === undefined || e.media === values.media);
    for (const e of readDecisionLog(paths, warn)) if (matches(e)) print(e);
  } else if (sub === 'stats' || sub === 'experiments') {
    const since = values.since === undefined ? -Infinity : Date.parse(values.since);
    if (Number.isNaN(since)) throw new LogUsageError(`--since "${values.since}" is not a time`);
    console.log((sub === 'stats' ? stats : armsReport)(readDecisionLog(paths, warn), since));
  } else {
    throw new LogUsageError(sub ? `unknown log command "${sub}"` : 'rta log needs tail, grep or stats');
  }
}

function jsonBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value;
}

const OS_NAMES = ['unknown', 'ios', 'android', 'other'];

function line(e: DecisionEntry): string {
  const device = e.deviceKey ? `${DEVICE_ID_KIND_NAMES[e.deviceIdKind as DeviceIdKind] ?? 'id'}=${e.deviceKey}${e.known ? '' : ' (unknown)'}` : 'no usable id';
  const strategies = e.excludedBy
    ? [`excluded by ${e.excludedBy}`]
    : e.strategies.map((s) => {
        const arm = s.armName ? ` [${s.armName}]` : '';
        if (s.verdict === 'taken') return `${s.strategyId} ${s.coefficient} creative ${s.creativeId}${arm}`;
        // What a capped or shadow strategy would have sent.
        if (s.coefficient !== null) return `${s.strategyId} ${s.verdict} ${s.coefficient} creative ${s.creativeId}${arm}`;
        return `${s.strategyId} ${s.verdict}`;
      });
  return [
    e.time,
    e.media,
    e.traceId,
    device,
    OS_NAMES[e.os],
    `code ${e.code} ${e.reason}`,
    ...strategies,
    `${e.processingTimeUs} us`,
    `book ${e.bookVersion || '-'}`,
  ].join('  ');
}

interface Tally {
  candidates: number;
  taken: number;
  coefficients: number[];
}

/** Decisions by outcome; per strategy and per arm: candidates, takes, take share, coefficient mean and quantiles. */
function stats(entries: Iterable<DecisionEntry>, since: number): string {
  let decisions = 0;
  let test = 0;
  const byReason = new Map<string, number>();
  const byStrategy = new Map<string, Tally>();
  const tally = (map: Map<string, Tally>, key: string) => {
    let t = map.get(key);
    if (!t) map.set(key, (t = { candidates: 0, taken: 0, coefficients: [] }));
    return t;
  };
  let first = Infinity;
  let last = -Infinity;
  for (const e of entries) {
    if (e.timeMs < since) continue;
    if (e.test) {
      test++;
      continue;
    }
    decisions++;
    first = Math.min(first, e.timeMs);
    last = Math.max(last, e.timeMs);
    byReason.set(e.reason, (byReason.get(e.reason) ?? 0) + 1);
    for (const s of e.strategies) {
      const keys = [s.strategyId, ...(s.armName ? [`${s.strategyId} [${s.armName}]`] : [])];
      for (const key of keys) {
        const t = tally(byStrategy, key);
        t.candidates++;
        if (s.verdict === 'taken') {
          t.taken++;
          t.coefficients.push(s.coefficient ?? 1);
        }
      }
    }
  }
  const out: string[] = [];
  out.push(`decisions ${decisions}${test ? `  (and ${test} test requests, left out)` : ''}`);
  if (decisions > 0) out.push(`from ${new Date(first).toISOString()} to ${new Date(last).toISOString()}`);
  out.push('', 'outcome                      count   share');
  for (const [reason, count] of [...byReason].sort((a, b) => b[1] - a[1])) out.push(`${reason.padEnd(28)} ${String(count).padStart(5)}  ${pct(count, decisions)}`);
  out.push('', 'strategy [arm]                       candidates   taken  take share  mean coef   p10   p50   p90');
  for (const [key, t] of [...byStrategy].sort((a, b) => a[0].localeCompare(b[0]))) {
    const sorted = t.coefficients.sort((a, b) => a - b);
    const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : NaN;
    out.push(
      `${key.padEnd(36)} ${String(t.candidates).padStart(10)} ${String(t.taken).padStart(7)} ${pct(t.taken, t.candidates).padStart(11)}` +
        `  ${fixed(mean).padStart(9)} ${fixed(quantile(sorted, 0.1)).padStart(5)} ${fixed(quantile(sorted, 0.5)).padStart(5)} ${fixed(quantile(sorted, 0.9)).padStart(5)}`,
    );
  }
  return out.join('\n');
}

interface ArmTally extends Tally {
  layer: string;
  tag: number;
  /** Decisions in which the device was in this arm (one of its candidate strategies looked at the layer). */
  requests: number;
}

/**
 * Per experiment, its arms side by side: how many decisions found the device in the arm, how many of the
 * experiment's strategy verdicts there got past their score conditions (eligible), took it, and at what
 * coefficient. Conversions join here once outcomes are attributed (the feedback-loop issue).
 */
function armsReport(entries: Iterable<DecisionEntry>, since: number): string {
  const byExperiment = new Map<string, Map<string, ArmTally>>();
  for (const e of entries) {
    if (e.timeMs < since || e.test) continue;
    for (const arm of e.arms) {
      const arms = byExperiment.get(arm.experiment) ?? new Map<string, ArmTally>();
      byExperiment.set(arm.experiment, arms);
      let t = arms.get(arm.arm);
      if (!t) arms.set(arm.arm, (t = { layer: arm.layer, tag: arm.tag, requests: 0, candidates: 0, taken: 0, coefficients: [] }));
      t.requests++;
      for (const s of e.strategies) {
        if (s.armTag !== arm.tag || s.armName !== arm.arm || s.valueFen === null) continue;
        t.candidates++;
        if (s.verdict === 'taken') {
          t.taken++;
          t.coefficients.push(s.coefficient ?? 1);
        }
      }
    }
  }
  if (byExperiment.size === 0) return 'no experiment arms in these records';
  const out: string[] = [];
  for (const [experiment, arms] of [...byExperiment].sort((a, b) => a[0].localeCompare(b[0]))) {
    const requests = [...arms.values()].reduce((sum, t) => sum + t.requests, 0);
    out.push(`${experiment} (layer ${arms.values().next().value!.layer})`);
    out.push('  arm                   tag  requests  share  eligible   taken  take share  mean coef   p10   p50   p90');
    for (const [name, t] of arms) {
      const sorted = t.coefficients.sort((a, b) => a - b);
      const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : NaN;
      out.push(
        `  ${name.padEnd(20)} ${String(t.tag).padStart(6)} ${String(t.requests).padStart(9)} ${pct(t.requests, requests).padStart(6)} ${String(t.candidates).padStart(9)} ${String(t.taken).padStart(7)} ${pct(t.taken, t.candidates).padStart(11)}` +
          `  ${fixed(mean).padStart(9)} ${fixed(quantile(sorted, 0.1)).padStart(5)} ${fixed(quantile(sorted, 0.5)).padStart(5)} ${fixed(quantile(sorted, 0.9)).padStart(5)}`,
      );
    }
  }
  return out.join('\n');
}

const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : '-');
export const fixed = (n: number) => (Number.isNaN(n) ? '-' : n.toFixed(2));
export function quantile(sorted: number[], q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
