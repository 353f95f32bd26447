import type { Attribution } from '../attribution/attribution.js';
import type { Config } from '../config.js';
import { log } from '../observe/log.js';
import type { BookVersions } from '../strategy/versions.js';

/**
 * Bid tuning: on a schedule, each strategy with a `tuning` block gets its bid.targetValueFen moved so that its cost
 * per approved customer approaches tuning.targetCostPerApprovedFen. A proportional step on the log of the ratio,
 * damped by `gain`, limited to tuning.maxStep per look and to tuning.maxChange around the last book a person
 * applied; it acts only on tuning.minApprovals approvals or more since its last look. Every change is a new book
 * version (author `controller:bid-tuning`, the reason as its message): listed, diffed and rolled back like a
 * person's. A person's change starts the controller afresh from that book.
 */
export const CONTROLLER_AUTHOR = 'controller:bid-tuning';

/** What one look concluded for one strategy. */
export interface TuningStep {
  strategy: string;
  costFen: number;
  approvals: number;
  /** The new targetValueFen, or null when the controller leaves the strategy alone (see reason). */
  targetValueFen: number | null;
  reason: string;
}

interface TunedStrategy {
  id: string;
  bid: { targetValueFen: number; exponent?: number };
  tuning: { targetCostPerApprovedFen: number; minApprovals?: number; maxStep?: number; maxChange?: number };
}

/**
 * The step for one strategy: coefficients scale as targetValueFen^-exponent, so moving them by a factor f means
 * dividing targetValueFen by f^(1/exponent). `baseTargetFen` is the person's value, the centre of the bounds.
 */
export function tuningStep(
  strategy: TunedStrategy,
  observed: { costFen: number; approvals: number },
  baseTargetFen: number,
  gain: number,
): TuningStep {
  const { id, bid, tuning } = strategy;
  const minApprovals = tuning.minApprovals ?? 20;
  const maxStep = tuning.maxStep ?? 0.1;
  const maxChange = tuning.maxChange ?? 2;
  const exponent = bid.exponent ?? 1;
  const leave = (reason: string): TuningStep => ({ strategy: id, ...observed, targetValueFen: null, reason });
  if (observed.approvals < minApprovals) return leave(`${observed.approvals} approvals since the last look, fewer than minApprovals ${minApprovals}`);
  if (exponent === 0) return leave('bid.exponent is 0: its coefficients do not depend on targetValueFen');
  const cpa = observed.costFen / observed.approvals;
  const wanted = Math.pow(tuning.targetCostPerApprovedFen / Math.max(cpa, 1), gain);
  const factor = Math.min(1 + maxStep, Math.max(1 / (1 + maxStep), wanted));
  const bound = Math.pow(maxChange, 1 / exponent);
  const target = Math.round(Math.min(baseTargetFen * bound, Math.max(baseTargetFen / bound, bid.targetValueFen / Math.pow(factor, 1 / exponent))));
  const observedText = `cost per approved ${Math.round(cpa)} fen over ${observed.approvals} approvals, target ${tuning.targetCostPerApprovedFen}`;
  if (target === bid.targetValueFen) return leave(`${observedText}: at its bound (maxChange ${maxChange} around ${baseTargetFen}) or on target`);
  const coefficientChange = Math.pow(bid.targetValueFen / target, exponent) - 1;
  const direction = coefficientChange > 0 ? 'up' : 'down';
  return {
    strategy: id,
    ...observed,
    targetValueFen: target,
    reason: `${observedText}: targetValueFen ${bid.targetValueFen} -> ${target} (coefficients ${direction} ${Math.abs(coefficientChange * 100).toFixed(1)} %)`,
  };
}

export interface ControllerState {
  enabled: boolean;
  intervalMinutes: number;
  gain: number;
  lastLook: string | null;
  /** The last look's conclusions, per tuned strategy. */
  steps: TuningStep[];
  /** The book versions it made, newest first (at most 50). */
  actions: { time: string; book: string; message: string }[];
}

export class BidTuning {
  private enabled: boolean;
  private timer: NodeJS.Timeout | null = null;
  /** Each strategy's cost and approvals at the last look: the next look acts on what came after. */
  private seen = new Map<string, { costFen: number; approvals: number }>();
  private lastLook: string | null = null;
  private steps: TuningStep[] = [];
  private readonly actions: ControllerState['actions'] = [];

  constructor(
    private readonly config: Config['controllers']['bidTuning'],
    private readonly books: BookVersions,
    private readonly attribution: Attribution,
  ) {
    this.enabled = config.enabled;
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.enabled) this.look().catch((err: Error) => log('error', 'bid_tuning_failed', { message: err.message }));
    }, this.config.intervalMinutes * 60_000).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** A person switches it on or off; off, the schedule makes no change (a person may still ask for a look). */
  setEnabled(enabled: boolean): ControllerState {
    this.enabled = enabled;
    return this.state();
  }

  state(): ControllerState {
    return { enabled: this.enabled, intervalMinutes: this.config.intervalMinutes, gain: this.config.gain, lastLook: this.lastLook, steps: this.steps, actions: this.actions };
  }

  /** One look at every tuned strategy, now (the schedule's, or a person's); a change becomes a new book version. */
  async look(): Promise<ControllerState> {
    const listing = this.books.list();
    if (listing.live === null) return this.state();
    const book = structuredClone(this.books.show(listing.live).book) as { strategies: (TunedStrategy & { kind: string })[] };
    const base = this.personsBook(listing);
    const rows = (await this.attribution.report(['strategy'])).rows;
    const steps: TuningStep[] = [];
    for (const strategy of book.strategies) {
      if (strategy.kind !== 'bid' || !strategy.tuning) continue;
      const row = rows.find((r) => r.strategy === strategy.id);
      const now = { costFen: row?.costFen ?? 0, approvals: row?.events.credit_approved ?? 0 };
      const before = this.seen.get(strategy.id);
      this.seen.set(strategy.id, now);
      if (!before) {
        steps.push({ strategy: strategy.id, costFen: 0, approvals: 0, targetValueFen: null, reason: 'first look: counting from now' });
        continue;
      }
      const baseTarget = base?.strategies.find((s) => s.id === strategy.id)?.bid.targetValueFen ?? strategy.bid.targetValueFen;
      const step = tuningStep(strategy, { costFen: now.costFen - before.costFen, approvals: now.approvals - before.approvals }, baseTarget, this.config.gain);
      steps.push(step);
      if (step.targetValueFen !== null) strategy.bid.targetValueFen = step.targetValueFen;
    }
    this.lastLook = new Date().toISOString();
    this.steps = steps;
    const changes = steps.filter((s) => s.targetValueFen !== null);
    if (changes.length > 0) {
      const message = changes.map((s) => `${s.strategy}: ${s.reason}`).join('; ');
      const applied = await this.books.propose(book, { author: CONTROLLER_AUTHOR, message });
      this.actions.unshift({ time: this.lastLook, book: String(applied.book), message });
      this.actions.splice(50);
      log('info', 'bid_tuning_applied', { book: applied.book, message });
    }
    return this.state();
  }

  /** The book of the newest version a person put in service: the centre of the controller's bounds. */
  private personsBook(listing: ReturnType<BookVersions['list']>): { strategies: TunedStrategy[] } | null {
    const event = listing.events.find((e) => e.result !== 'refused' && e.author !== CONTROLLER_AUTHOR);
    return event ? (this.books.show(event.id).book as { strategies: TunedStrategy[] }) : null;
  }
}
