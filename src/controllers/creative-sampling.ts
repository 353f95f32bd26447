import type { Attribution } from '../attribution/attribution.js';
import type { Config } from '../config.js';
import type { BookVersions } from '../strategy/versions.js';
import { BookController, type ControllerStep, type LiveBook } from './controller.js';

/**
 * Creative choice by Thompson sampling, in batches: on a schedule, for each strategy with `creativeSampling`, every
 * creative's approvals per impression is drawn many times from its posterior, click-through (clicks of
 * impressions) times approvals per click, each a Beta distribution; a creative's new share is how often it drew
 * the best, lifted to the strategy's floorShare so none stops being tried. Serving then splits devices by share
 * (strategy/book.ts, chooseCreative): in expectation the allocation Thompson sampling would make per request,
 * without a random draw on the hot path. Approvals are rare, so each creative's approvals per click starts from the
 * strategy's own rate, weighted as PRIOR_CLICKS clicks. Every change is a new book version (author
 * `controller:creatives`).
 */
export const CREATIVES_AUTHOR = 'controller:creatives';
const PRIOR_CLICKS = 20;

export interface CreativeFeedback {
  creative: number;
  impressions: number;
  clicks: number;
  approvals: number;
}

export interface SharesStep extends ControllerStep {
  /** Each creative's feedback and share after this look (the share it had where left alone). */
  creatives: (CreativeFeedback & { share: number })[];
}

interface SampledStrategy {
  id: string;
  creatives: { id: number; share?: number }[];
  creativeSampling: { floorShare?: number; minImpressions?: number };
}

/**
 * Shares from how often each creative draws the best; `random` is uniform in [0, 1) (seeded in tests). Shares have
 * three decimals and add up to 1 within rounding.
 */
export function thompsonShares(feedback: readonly CreativeFeedback[], floorShare: number, draws: number, random: () => number): number[] {
  const clicks = feedback.reduce((s, f) => s + f.clicks, 0);
  const approvals = feedback.reduce((s, f) => s + f.approvals, 0);
  const priorRate = (approvals + 1) / (clicks + 2);
  const wins = new Array<number>(feedback.length).fill(0);
  for (let d = 0; d < draws; d++) {
    let best = 0;
    let bestValue = -1;
    for (const [i, f] of feedback.entries()) {
      const clickRate = beta(1 + f.clicks, 1 + Math.max(0, f.impressions - f.clicks), random);
      const approvalRate = beta(priorRate * PRIOR_CLICKS + f.approvals, (1 - priorRate) * PRIOR_CLICKS + Math.max(0, f.clicks - f.approvals), random);
      if (clickRate * approvalRate > bestValue) {
        bestValue = clickRate * approvalRate;
        best = i;
      }
    }
    wins[best]!++;
  }
  const floor = Math.min(floorShare, 1 / feedback.length);
  return wins.map((w) => Math.round((floor + (1 - floor * feedback.length) * (w / draws)) * 1000) / 1000);
}

export class CreativeSampling extends BookController<SharesStep> {
  constructor(
    private readonly config: Config['controllers']['creatives'],
    books: BookVersions,
    private readonly attribution: Attribution,
  ) {
    super('creatives', CREATIVES_AUTHOR, config, books);
  }

  protected override settings(): Record<string, unknown> {
    return { draws: this.config.draws };
  }

  protected async decide(live: LiveBook): Promise<SharesStep[]> {
    const report = await this.attribution.report(['strategy', 'creative']);
    const steps: SharesStep[] = [];
    for (const strategy of live.strategies as unknown as (SampledStrategy & { kind: string })[]) {
      if (strategy.kind !== 'bid' || !strategy.creativeSampling || strategy.creatives.length < 2) continue;
      const feedback = strategy.creatives.map((c): CreativeFeedback => {
        const row = report.rows.find((r) => r.strategy === strategy.id && r.creative === c.id);
        return { creative: c.id, impressions: row?.events.impression ?? 0, clicks: row?.events.click ?? 0, approvals: row?.events.credit_approved ?? 0 };
      });
      const before = strategy.creatives.map((c) => c.share ?? 1 / strategy.creatives.length);
      const shown = (shares: number[]) => feedback.map((f, i) => ({ ...f, share: shares[i]! }));
      const impressions = feedback.reduce((s, f) => s + f.impressions, 0);
      const minImpressions = strategy.creativeSampling.minImpressions ?? 200;
      if (impressions < minImpressions) {
        steps.push({ strategy: strategy.id, changed: false, creatives: shown(before), reason: `${impressions} impressions so far, fewer than minImpressions ${minImpressions}` });
        continue;
      }
      const shares = thompsonShares(feedback, strategy.creativeSampling.floorShare ?? 0.05, this.config.draws, Math.random);
      // Three standard errors of a share drawn `draws` times: smaller moves are the draws' own noise.
      const noise = Math.max(0.01, 3 / Math.sqrt(this.config.draws));
      const moved = shares.some((s, i) => Math.abs(s - before[i]!) >= noise);
      const text = feedback.map((f, i) => `${f.creative} ${f.approvals}/${f.clicks}/${f.impressions} -> ${shares[i]}`).join(', ');
      if (moved) strategy.creatives.forEach((c, i) => (c.share = shares[i]!));
      steps.push({
        strategy: strategy.id,
        changed: moved,
        creatives: shown(moved ? shares : before),
        reason: `${moved ? 'shares' : `shares unchanged (under ${noise.toFixed(3)} apart)`}, creative approvals/clicks/impressions -> share: ${text}`,
      });
    }
    return steps;
  }
}

/** Marsaglia and Tsang's gamma sampler; below shape 1, from shape + 1 scaled by U^(1/shape). */
function gamma(shape: number, random: () => number): number {
  if (shape < 1) return gamma(shape + 1, random) * Math.pow(1 - random(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - random();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

function beta(a: number, b: number, random: () => number): number {
  const x = gamma(a, random);
  return x / (x + gamma(b, random));
}
