import { Counter, type Registry } from 'prom-client';
import { CREDIT_APPROVED, EVENT_KINDS } from './events.js';

/**
 * What the decisions led to, per strategy, arm, creative and book version, since this process started: the
 * decisions that listed the strategy and the takes among them (from the decision log), then every joined funnel
 * event, its cost and value (from POST /events). Kept in rows for the admin call and `rta report`, and exported to
 * Prometheus per strategy and arm only (creatives and book versions would multiply the series without bound).
 */

export const RESULT_DIMENSIONS = ['strategy', 'arm', 'creative', 'book'] as const;
export type ResultDimension = (typeof RESULT_DIMENSIONS)[number];

interface Row {
  strategy: string;
  arm: string;
  /** 0 for decisions that did not take the device (no creative was chosen). */
  creative: number;
  book: string;
  decisions: number;
  takes: number;
  events: number[];
  costFen: number;
  valueFen: number;
  approvedLowRisk: number;
}

export interface ResultRow {
  strategy?: string;
  arm?: string;
  creative?: number;
  book?: string;
  decisions: number;
  takes: number;
  /** Joined events per funnel stage, by EVENT_KINDS name. */
  events: Record<string, number>;
  costFen: number;
  valueFen: number;
  /** costFen / credit_approved; null before the first approval. */
  costPerApprovedFen: number | null;
  /** Approved customers whose risk score at decision time was below attribution.lowRiskBelow. */
  approvedLowRisk: number;
}

/** The row every result past maxResultRows is summed into, so totals stay right when detail runs out. */
const OVERFLOW = '(overflow)';

export class AttributionResults {
  private readonly rows: Row[] = [];
  /** strategy -> arm -> book -> creative -> row: every decision looks its rows up, and nested lookups by the texts the record scan shares never build a key. */
  private readonly index = new Map<string, Map<string, Map<string, Map<number, Row>>>>();

  constructor(
    private readonly maxRows: number,
    registry: Registry,
  ) {
    // Rendered from the rows at scrape time: the request and event paths never touch prom-client.
    const results = this;
    const counter = (name: string, help: string, value: (row: ResultRow) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['strategy', 'arm'] as const,
        registers: [registry],
        collect() {
          this.reset();
          for (const row of results.report(['strategy', 'arm'])) this.inc({ strategy: row.strategy!, arm: row.arm! }, value(row));
        },
      });
    counter('rta_attribution_takes_total', 'Taken decisions read from the decision log, by strategy and arm: the denominator of every funnel rate.', (r) => r.takes);
    counter('rta_funnel_cost_fen_total', 'Media cost of joined events, in fen, by strategy and arm.', (r) => r.costFen);
    counter('rta_funnel_value_fen_total', 'Value of joined events, in fen, by strategy and arm.', (r) => Math.max(0, r.valueFen));
    counter('rta_funnel_approved_low_risk_total', 'Joined credit approvals whose risk score at decision time was below attribution.lowRiskBelow.', (r) => r.approvedLowRisk);
    new Counter({
      name: 'rta_funnel_events_total',
      help: 'Outcome events joined to a taken decision, by strategy, arm and funnel stage.',
      labelNames: ['strategy', 'arm', 'event'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const row of results.report(['strategy', 'arm']))
          for (const event of EVENT_KINDS) if (row.events[event]! > 0) this.inc({ strategy: row.strategy!, arm: row.arm!, event }, row.events[event]!);
      },
    });
  }

  /** Cost and approvals per strategy, over every book version: what the controllers act on, never capped. */
  readonly totals = new Map<string, { costFen: number; approvals: number }>();

  countDecision(strategy: string, arm: string, book: string, creative: number | null): void {
    const row = this.row(strategy, arm, creative ?? 0, book);
    row.decisions++;
    if (creative !== null) row.takes++;
  }

  countEvent(strategy: string, arm: string, creative: number, book: string, kind: number, costFen: number, valueFen: number, lowRisk: boolean): void {
    const row = this.row(strategy, arm, creative, book);
    row.events[kind]!++;
    row.costFen += costFen;
    const total = this.totals.get(strategy) ?? this.totals.set(strategy, { costFen: 0, approvals: 0 }).get(strategy)!;
    total.costFen += costFen;
    if (kind === CREDIT_APPROVED) total.approvals++;
    row.valueFen += valueFen;
    if (kind === CREDIT_APPROVED && lowRisk) row.approvedLowRisk++;
  }

  /** The rows summed over every dimension not in `by`, largest cost first (then most takes). */
  report(by: readonly ResultDimension[]): ResultRow[] {
    const groups = new Map<string, ResultRow>();
    for (const row of this.rows) {
      const key = by.map((d) => String(row[d])).join('\t');
      let group = groups.get(key);
      if (!group) {
        group = { decisions: 0, takes: 0, events: Object.fromEntries(EVENT_KINDS.map((k) => [k, 0])), costFen: 0, valueFen: 0, costPerApprovedFen: null, approvedLowRisk: 0 };
        for (const d of by) Object.assign(group, { [d]: row[d] });
        groups.set(key, group);
      }
      group.decisions += row.decisions;
      group.takes += row.takes;
      EVENT_KINDS.forEach((k, i) => (group.events[k]! += row.events[i]!));
      group.costFen += row.costFen;
      group.valueFen += row.valueFen;
      group.approvedLowRisk += row.approvedLowRisk;
    }
    const rows = [...groups.values()];
    for (const row of rows) {
      const approved = row.events.credit_approved!;
      row.costPerApprovedFen = approved > 0 ? Math.round(row.costFen / approved) : null;
    }
    return rows.sort((a, b) => b.costFen - a.costFen || b.takes - a.takes);
  }

  private row(strategy: string, arm: string, creative: number, book: string): Row {
    const found = this.index.get(strategy)?.get(arm)?.get(book)?.get(creative);
    if (found) return found;
    if (this.rows.length >= this.maxRows && strategy !== OVERFLOW) return this.row(OVERFLOW, OVERFLOW, 0, OVERFLOW);
    const byArm = this.index.get(strategy) ?? this.index.set(strategy, new Map()).get(strategy)!;
    const byBook = byArm.get(arm) ?? byArm.set(arm, new Map()).get(arm)!;
    const byCreative = byBook.get(book) ?? byBook.set(book, new Map()).get(book)!;
    const row = { strategy, arm, creative, book, decisions: 0, takes: 0, events: EVENT_KINDS.map(() => 0), costFen: 0, valueFen: 0, approvedLowRisk: 0 };
    this.rows.push(row);
    byCreative.set(creative, row);
    return row;
  }
}
