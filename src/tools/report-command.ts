import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { AttributionReport, EventsOutcome } from '../attribution/attribution.js';
import { EVENT_KINDS } from '../attribution/events.js';
import type { ResultRow } from '../attribution/results.js';
import type { ControllerState } from '../controllers/controller.js';
import type { LearningState } from '../learning/online-learning.js';
import { ADMIN_OPTIONS, adminCall } from './admin-call.js';

/**
 * `rta events FILE`: posts outcome events to the admin port; `rta report`: what the decisions led to, per strategy
 * and arm (or any grouping of strategy, arm, creative, book), from the admin port's /results; `rta tuning` and
 * `rta creatives`: the controllers.
 */
export const REPORT_USAGE = `  rta events FILE|- [--protobuf]                  outcome events (JSON Lines, or an EventBatch) to POST /events
  rta report [--by strategy,arm] [--format text|json]   results per strategy and arm: takes, funnel, cost per approved
             [--admin http://127.0.0.1:8081] [--token T]
  rta tuning [status | run | on | off --author A --message M]      the bid-tuning controller: its last look and changes
  rta creatives [status | run | on | off --author A --message M]   the creative-sampling controller, the same way
  rta learning [status | run | on | off | rollback --author A --message M]   online learning: its looks and versions`;

export class ReportUsageError extends Error {}

export async function eventsCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...ADMIN_OPTIONS, protobuf: { type: 'boolean', default: false } } });
  if (positionals.length !== 1) throw new ReportUsageError('rta events takes one file (- for stdin)');
  let body: Uint8Array;
  try {
    body = readFileSync(positionals[0] === '-' ? 0 : positionals[0]!);
  } catch (err) {
    throw new ReportUsageError(`cannot read ${positionals[0]}: ${(err as Error).message}`);
  }
  const outcome = (await adminCall(values, 'POST', '/events', body, values.protobuf ? 'application/x-protobuf' : 'application/x-ndjson')) as EventsOutcome;
  console.log(`joined ${outcome.joined}, duplicates ${outcome.duplicates}, late ${outcome.late}, unmatched ${outcome.unmatched}, refused ${outcome.refused}`);
  for (const r of outcome.refusals) console.log(`  line ${r.line}: ${r.reason}: ${r.message}`);
}

export async function reportCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { ...ADMIN_OPTIONS, by: { type: 'string', default: 'strategy,arm' }, format: { type: 'string', default: 'text' } } });
  if (values.format !== 'text' && values.format !== 'json') throw new ReportUsageError('--format must be text or json');
  const report = (await adminCall(values, 'GET', `/results?by=${encodeURIComponent(values.by)}`)) as AttributionReport;
  if (values.format === 'json') return void console.log(JSON.stringify(report, null, 2));
  const memory = report.rememberedDecisions === null ? 'taken decisions remembered in the shared memory (Redis' : `${report.rememberedDecisions} taken decisions remembered (oldest ${report.oldestDecision ?? 'none'}`;
  console.log(`decisions since ${report.since ?? '(none yet)'}; ${memory}, window ${report.windowDays} days)`);
  console.log(reportTable(report.rows, values.by.split(',').filter(Boolean)));
}

/** Column heads for the funnel stages, short enough for one line per row. */
const STAGE_HEADS = ['impr', 'clicks', 'activ', 'regist', 'applied', 'approved', 'drawn', 'overdue'];
const yuan = (fen: number | null) => (fen === null ? '-' : (fen / 100).toFixed(2));

/** One line per row; money in yuan. */
export function reportTable(rows: ResultRow[], by: string[]): string {
  const header = [...by, 'decisions', 'takes', ...STAGE_HEADS, 'cost_yuan', 'yuan/approved', 'low_risk', 'value_yuan'];
  const lines = rows.map((row) => [
    ...by.map((d) => String(row[d as keyof ResultRow] ?? '')),
    String(row.decisions),
    String(row.takes),
    ...EVENT_KINDS.map((k) => String(row.events[k] ?? 0)),
    yuan(row.costFen),
    yuan(row.costPerApprovedFen),
    String(row.approvedLowRisk),
    yuan(row.valueFen),
  ]);
  if (lines.length === 0) return '(no decisions yet)';
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) => cells.map((c, i) => (i < by.length ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [format(header), ...lines.map(format)].join('\n');
}

/** GET `path`, or a person's signed POST `path/<action>` for one of `actions`. */
async function signedCall(args: string[], path: string, actions: readonly string[]): Promise<unknown> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { ...ADMIN_OPTIONS, author: { type: 'string' }, message: { type: 'string' } } });
  const action = positionals[0] ?? 'status';
  if (action === 'status') return adminCall(values, 'GET', path);
  if (!actions.includes(action)) throw new ReportUsageError(`unknown action "${action}" (status, ${actions.join(', ')})`);
  if (!values.author || !values.message) throw new ReportUsageError('say who and why: --author and --message are required');
  return adminCall(values, 'POST', `${path}/${action}`, { author: values.author, message: values.message });
}

/** `rta tuning` and `rta creatives`: one controller's last look and changes, or a person's on, off or run. */
export async function controllerCommand(name: 'bid-tuning' | 'creatives', args: string[]): Promise<void> {
  const state = (await signedCall(args, `/controllers/${name}`, ['run', 'on', 'off'])) as ControllerState & Record<string, unknown>;
  const setting = name === 'bid-tuning' ? `gain ${state.gain}` : `${state.draws} draws`;
  console.log(`${name} ${state.enabled ? 'on' : 'off'}, every ${state.intervalMinutes} min, ${setting}; last look ${state.lastLook ?? 'never'}`);
  for (const step of state.steps) {
    const switched = (step as { switched?: string }).switched;
    console.log(`  ${step.strategy}: ${switched ?? (step.changed ? 'changed' : 'left alone')}: ${step.reason}`);
  }
  for (const a of state.actions) console.log(`  ${a.time}  book ${a.book}  ${a.message}`);
}

/** `rta learning`: the online learner's model in service and its looks, or a person's on, off, run or rollback. */
export async function learningCommand(args: string[]): Promise<void> {
  const state = (await signedCall(args, '/learning', ['run', 'on', 'off', 'rollback'])) as LearningState;
  console.log(`learning ${state.model} ${state.enabled ? 'on' : 'off'}, every ${state.intervalMinutes} min; in service ${state.model}@${state.inService}`);
  console.log(`  examples: ${state.examples.positive} approved, ${state.examples.negative} not; ${state.pendingApplications} applications waiting${state.failed ? `; FAILED: ${state.failed}` : ''}`);
  for (const look of state.looks) console.log(`  ${look.time}  ${look.result}  ${look.version}: ${look.reason}`);
}
