import type { Attribution } from '../attribution/attribution.js';
import type { Config } from '../config.js';
import type { BookVersions } from '../strategy/versions.js';
import { BookController, type ControllerStep, type LiveBook } from './controller.js';

/**
 * Bid tuning: on a schedule, each strategy with a `tuning` block gets its bid.targetValueFen moved so that its cost
 * per approved customer approaches tuning.targetCostPerApprovedFen. A proportional step on the log of the ratio,
 * damped by `gain`, limited to tuning.maxStep per look and to tuning.maxChange around the last book a person
 * applied; it acts only on tuning.minApprovals approvals or more since its last look. With tuning.pauseAbove, a
 * strategy far too costly for several looks in a row is paused, and bids again after tuning.resumeAfterHours. A
 * paused strategy is a shadow one: still decided and logged (what it would have bought stays visible), never sent,
 * and still in its experiments. Every change is a new book version (author `controller:bid-tuning`, the reason as its
 * message): listed, diffed and rolled back like a person's. A person's change starts the controller afresh from
 * that book.
 */
export const CONTROLLER_AUTHOR = 'controller:bid-tuning';

/** What one look concluded for one strategy. */
export interface TuningStep extends ControllerStep {
  costFen: number;
  approvals: number;
  /** The new targetValueFen, or null when the controller leaves the strategy's bids alone (see reason). */
  targetValueFen: number | null;
  /** Paused or resumed by this look. */
  switched?: 'paused' | 'resumed';
}

interface TunedStrategy {
  id: string;
  shadow?: boolean;
  bid: { targetValueFen: number; exponent?: number };
  tuning: {
    targetCostPerApprovedFen: number;
    minApprovals?: number;
    maxStep?: number;
    maxChange?: number;
    pauseAbove?: number;
    pauseAfterLooks?: number;
    resumeAfterHours?: number;
  };
}

/**
 * Whether one look's spend is far too costly to keep bidding: cost per approval (every fen counted against at
 * least one approval, so spend without any counts) above pauseAbove x target, on at least minApprovals' worth of
 * target spend, so a few unlucky fen never pause a strategy. Null: the strategy has no pauseAbove.
 */
export function tooCostly(strategy: TunedStrategy, observed: { costFen: number; approvals: number }): string | null {
  const { pauseAbove, targetCostPerApprovedFen: target, minApprovals = 20 } = strategy.tuning;
  if (pauseAbove === undefined) return null;
  const perApproval = observed.costFen / Math.max(observed.approvals, 1);
  if (perApproval <= pauseAbove * target || observed.costFen < pauseAbove * target * minApprovals) return null;
  return `cost per approved ${Math.round(perApproval)} fen (${observed.costFen} fen over ${observed.approvals} approvals), above ${pauseAbove} x target ${target}`;
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
  const leave = (reason: string): TuningStep => ({ strategy: id, changed: false, ...observed, targetValueFen: null, reason });
  if (observed.approvals < minApprovals) return leave(`${observed.approvals} approvals since the last look, fewer than minApprovals ${minApprovals}`);
  if (exponent === 0) return leave('bid.exponent is 0: its coefficients do not depend on targetValueFen');
  const cpa = observed.costFen / observed.approvals;
  const wanted = Math.pow(tuning.targetCostPerApprovedFen / Math.max(cpa, 1), gain);
  const factor = Math.min(1 + maxStep, Math.max(1 / (1 + maxStep), wanted));
  const bound = Math.pow(maxChange, 1 / exponent);
  // Whole fen, and never 0 (the book refuses a target of 0); below about 20 fen rounding may exceed maxStep.
  const target = Math.max(1, Math.round(Math.min(baseTargetFen * bound, Math.max(baseTargetFen / bound, bid.targetValueFen / Math.pow(factor, 1 / exponent)))));
  const observedText = `cost per approved ${Math.round(cpa)} fen over ${observed.approvals} approvals, target ${tuning.targetCostPerApprovedFen}`;
  if (target === bid.targetValueFen) return leave(`${observedText}: at its bound (maxChange ${maxChange} around ${baseTargetFen}) or on target`);
  const coefficientChange = Math.pow(bid.targetValueFen / target, exponent) - 1;
  const direction = coefficientChange > 0 ? 'up' : 'down';
  return {
    strategy: id,
    changed: true,
    ...observed,
    targetValueFen: target,
    reason: `${observedText}: targetValueFen ${bid.targetValueFen} -> ${target} (coefficients ${direction} ${Math.abs(coefficientChange * 100).toFixed(1)} %)`,
  };
}

export class BidTuning extends BookController<TuningStep> {
  /** Each strategy's cost and approvals at the last look: the next look acts on what came after. */
  private seen = new Map<string, { costFen: number; approvals: number }>();
  /** Looks in a row that found the strategy too costly. */
  private costlyLooks = new Map<string, number>();
  /** When the controller paused a strategy (one a person made a shadow is never resumed by it). */
  private paused = new Map<string, number>();

  constructor(
    private readonly config: Config['controllers']['bidTuning'],
    books: BookVersions,
    private readonly attribution: Attribution,
  ) {
    super('bid-tuning', CONTROLLER_AUTHOR, config, books);
  }

  protected override settings(): Record<string, unknown> {
    return { gain: this.config.gain };
  }

  protected async decide(live: LiveBook, listing: ReturnType<BookVersions['list']>, nowMs: number): Promise<TuningStep[]> {
    const book = live as unknown as { strategies: (TunedStrategy & { kind: string })[] };
    const base = this.personsBook(listing);
    const totals = await this.attribution.strategyTotals();
    const steps: TuningStep[] = [];
    for (const strategy of book.strategies) {
      if (strategy.kind !== 'bid' || !strategy.tuning) continue;
      if (strategy.shadow === true) {
        const resumed = this.resume(strategy, nowMs);
        if (resumed) steps.push(resumed);
        continue;
      }
      this.paused.delete(strategy.id);
      // A copy: the totals keep counting after this look.
      const total = totals.get(strategy.id);
      const now = { costFen: total?.costFen ?? 0, approvals: total?.approvals ?? 0 };
      const before = this.seen.get(strategy.id);
      this.seen.set(strategy.id, now);
      if (!before) {
        steps.push({ strategy: strategy.id, changed: false, costFen: 0, approvals: 0, targetValueFen: null, reason: 'first look: counting from now' });
        continue;
      }
      const observed = { costFen: now.costFen - before.costFen, approvals: now.approvals - before.approvals };
      const costly = tooCostly(strategy, observed);
      const looks = costly === null ? 0 : (this.costlyLooks.get(strategy.id) ?? 0) + 1;
      this.costlyLooks.set(strategy.id, looks);
      if (costly !== null && looks >= (strategy.tuning.pauseAfterLooks ?? 2)) {
        strategy.shadow = true;
        this.paused.set(strategy.id, nowMs);
        this.costlyLooks.delete(strategy.id);
        const resume = strategy.tuning.resumeAfterHours ?? 24;
        const when = resume > 0 ? `resumes in ${resume} h` : 'a person resumes it';
        steps.push({ strategy: strategy.id, changed: true, ...observed, targetValueFen: null, switched: 'paused', reason: `paused: ${costly} for ${looks} looks in a row; ${when}` });
        continue;
      }
      const baseTarget = base?.strategies.find((s) => s.id === strategy.id)?.bid.targetValueFen ?? strategy.bid.targetValueFen;
      const step = tuningStep(strategy, observed, baseTarget, this.config.gain);
      steps.push(step);
      if (step.targetValueFen !== null) strategy.bid.targetValueFen = step.targetValueFen;
    }
    return steps;
  }

  /** A strategy this controller paused, once resumeAfterHours have passed: bidding again, counted afresh. */
  private resume(strategy: TunedStrategy, nowMs: number): TuningStep | null {
    const pausedAt = this.paused.get(strategy.id);
    const hours = strategy.tuning.resumeAfterHours ?? 24;
    if (pausedAt === undefined || hours === 0 || nowMs - pausedAt < hours * 3_600_000) return null;
    strategy.shadow = false;
    this.paused.delete(strategy.id);
    this.seen.delete(strategy.id);
    return { strategy: strategy.id, changed: true, costFen: 0, approvals: 0, targetValueFen: null, switched: 'resumed', reason: `resumed: paused ${hours} h ago (at ${new Date(pausedAt).toISOString()})` };
  }

  /** The book of the newest version a person put in service: the centre of the controller's bounds. */
  private personsBook(listing: ReturnType<BookVersions['list']>): { strategies: TunedStrategy[] } | null {
    const event = listing.events.find((e) => e.result !== 'refused' && !e.author.startsWith('controller:'));
    return event ? (this.books.show(event.id).book as { strategies: TunedStrategy[] }) : null;
  }
}
