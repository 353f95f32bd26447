import { z } from 'zod';

/**
 * The strategy file (data/strategies.json) the growth team edits: exclusions, bidding strategies, creatives,
 * experiments and cache times. Validated here; compiled to predicates in book.ts.
 */

const range = z
  .object({
    min: z.number().optional(),
    max: z.number().optional(),
    /** What a missing value (unknown device, NaN feature, missing sentinel) does to the test. */
    missing: z.enum(['pass', 'fail']).default('fail'),
  })
  .strict()
  .refine((r) => r.min !== undefined || r.max !== undefined, 'a range needs min, max or both');

export interface ConditionInput {
  os?: ('android' | 'ios' | 'other' | 'unknown')[] | undefined;
  known?: boolean | undefined;
  flagsAll?: string[] | undefined;
  flagsAny?: string[] | undefined;
  flagsNone?: string[] | undefined;
  fields?: Record<string, z.input<typeof range>> | undefined;
  scores?: Record<string, z.input<typeof range>> | undefined;
  platformExperimentsAny?: number[] | undefined;
  anyOf?: ConditionInput[] | undefined;
  not?: ConditionInput | undefined;
}

/** Every key present must hold (AND); `anyOf` needs one of its conditions; `not` must fail. */
export const conditionSchema: z.ZodType<Condition, ConditionInput> = z.lazy(() =>
  z
    .object({
      os: z.array(z.enum(['android', 'ios', 'other', 'unknown'])).min(1).optional(),
      known: z.boolean().optional(),
      flagsAll: z.array(z.string()).min(1).optional(),
      flagsAny: z.array(z.string()).min(1).optional(),
      flagsNone: z.array(z.string()).min(1).optional(),
      fields: z.record(z.string(), range).optional(),
      scores: z.record(z.string(), range).optional(),
      platformExperimentsAny: z.array(z.number().int().nonnegative()).min(1).optional(),
      anyOf: z.array(conditionSchema).min(1).optional(),
      not: conditionSchema.optional(),
    })
    .strict(),
);
export type Range = z.infer<typeof range>;
export interface Condition {
  os?: ('android' | 'ios' | 'other' | 'unknown')[] | undefined;
  known?: boolean | undefined;
  flagsAll?: string[] | undefined;
  flagsAny?: string[] | undefined;
  flagsNone?: string[] | undefined;
  fields?: Record<string, Range> | undefined;
  scores?: Record<string, Range> | undefined;
  platformExperimentsAny?: number[] | undefined;
  anyOf?: Condition[] | undefined;
  not?: Condition | undefined;
}

/** The media clamp bid coefficients to 0.2..5.0; anything outside is ignored by them, so we never send it. */
export const MEDIA_MIN_COEFFICIENT = 0.2;
export const MEDIA_MAX_COEFFICIENT = 5.0;
const coefficient = z.number().min(MEDIA_MIN_COEFFICIENT).max(MEDIA_MAX_COEFFICIENT);

const bidFields = {
  /** Expected value (fen) at which the coefficient is exactly 1.0. */
  targetValueFen: z.number().positive(),
  /** Below this expected value (fen) the strategy does not want the device. */
  minValueFen: z.number(),
  /** coefficient = (value / target) ^ exponent, then clamped: >1 spreads devices further from 1.0. */
  exponent: z.number().min(0).max(4),
  minCoefficient: coefficient,
  maxCoefficient: coefficient,
  /** Re-activation of approved users: their approval is known, so P(approved) is taken as 1. */
  assumeApproved: z.boolean(),
  /** Expected loss (fen) when a funded borrower defaults. */
  lossGivenDefaultFen: z.number().nonnegative(),
  /** Replacement CPA / CPC bids (fen), scaled by the coefficient; 0 leaves the media's bid alone. */
  cpaBidFen: z.number().int().nonnegative(),
  cpcBidFen: z.number().int().nonnegative(),
};

export const bidSchema = z
  .object({
    ...bidFields,
    minValueFen: bidFields.minValueFen.default(0),
    exponent: bidFields.exponent.default(1),
    minCoefficient: bidFields.minCoefficient.default(MEDIA_MIN_COEFFICIENT),
    maxCoefficient: bidFields.maxCoefficient.default(MEDIA_MAX_COEFFICIENT),
    assumeApproved: bidFields.assumeApproved.default(false),
    lossGivenDefaultFen: bidFields.lossGivenDefaultFen.default(200_000),
    cpaBidFen: bidFields.cpaBidFen.default(0),
    cpcBidFen: bidFields.cpcBidFen.default(0),
  })
  .strict()
  .refine((b) => b.minCoefficient <= b.maxCoefficient, 'minCoefficient must not exceed maxCoefficient')
  .refine((b) => b.cpcBidFen === 0 || b.cpcBidFen >= 10, 'cpcBidFen must be 0 (unset) or at least the media floor of 10 fen');

/** An experiment arm's changes to a strategy's bid: only the fields it names, no defaults filled in. */
const bidOverrideSchema = z.object(bidFields).partial().strict();
export type BidParams = z.infer<typeof bidSchema>;

const creativeSchema = z
  .object({
    id: z.number().int().positive(),
    when: conditionSchema.optional(),
    /**
     * With the strategy's creativeSampling: this creative's weight among those whose `when` holds for a device
     * (equal weights where absent). Written by the creative controller from Thompson sampling, or by a person.
     */
    share: z.number().min(0).max(1).optional(),
  })
  .strict();

const strategyId = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'strategy ids are the ids registered with the media: 1-64 of A-Z a-z 0-9 _ . -');

const exclusionSchema = z
  .object({
    id: strategyId,
    kind: z.literal('exclude'),
    description: z.string().optional(),
    enabled: z.boolean().default(true),
    reason: z.enum(['existing_borrower', 'blacklisted', 'high_risk']),
    when: conditionSchema,
  })
  .strict();

const bidStrategySchema = z
  .object({
    id: strategyId,
    kind: z.literal('bid'),
    description: z.string().optional(),
    enabled: z.boolean().default(true),
    when: conditionSchema.default({}),
    /** The media it bids on, by their registered names (media/registry.ts); every media when absent. */
    media: z.array(z.string().min(1)).min(1).optional(),
    /** Its id on a media where that differs from `id`, by media name: the id registered there (Ocean: an RTA id). */
    mediaIds: z.record(z.string(), z.string().min(1).max(64)).optional(),
    /**
     * When it bids, in China Standard Time (UTC+8, the media's day): hours 0-23 and ISO weekdays, 1 Monday to 7
     * Sunday; every hour or every day where one is absent.
     */
    schedule: z
      .object({
        hours: z.array(z.number().int().min(0).max(23)).min(1).optional(),
        weekdays: z.array(z.number().int().min(1).max(7)).min(1).optional(),
      })
      .strict()
      .optional(),
    /**
     * Decided, logged and explained like any other strategy, but never sent: where it would have taken the device
     * its verdict reads `shadow`, with the coefficient and creative it would have sent. For trying a strategy on
     * live traffic before it bids.
     */
    shadow: z.boolean().default(false),
    /** Who stays in a reply capped by maxStrategiesPerReply: higher priority first, then higher coefficient, then file order. */
    priority: z.number().int().min(-1000).max(1000).default(0),
    bid: bidSchema,
    /**
     * Bid tuning (controllers/bid-tuning.ts): when present, the controller moves bid.targetValueFen so that the
     * strategy's cost per approved customer approaches the target, a bounded step at a time.
     */
    tuning: z
      .object({
        targetCostPerApprovedFen: z.number().int().positive(),
        /** Approvals since the last look below which the controller does not act (too little to be sure). */
        minApprovals: z.number().int().min(1).default(20),
        /** The largest change of the coefficients in one step: 0.1 moves them by at most 10 %. */
        maxStep: z.number().gt(0).max(0.5).default(0.1),
        /** The coefficients stay within 1/maxChange..maxChange of those of the last book a person applied. */
        maxChange: z.number().min(1).max(4).default(2),
        /**
         * Pause the strategy (make it a shadow) when its cost per approved customer is above this multiple of the
         * target for pauseAfterLooks looks in a row, each with at least minApprovals' worth of spend; never when absent.
         */
        pauseAbove: z.number().min(1.5).max(100).optional(),
        pauseAfterLooks: z.number().int().min(1).max(100).default(2),
        /** A strategy the controller paused bids again this long after (0: only a person resumes it). */
        resumeAfterHours: z.number().min(0).max(24 * 90).default(24),
      })
      .strict()
      .optional(),
    /**
     * Its own expected value in fen, as a formula over score.<model>, field.<profile field> and bid.<number>
     * (value-formula.ts); without one, the book's expected profit from its valueModels.
     */
    value: z.string().min(1).optional(),
    /** First match wins; the last entry must have no `when` so every device gets a creative. */
    creatives: z
      .array(creativeSchema)
      // Aborts: zod would still run the checks below, and they read the last entry of the list.
      .min(1, { error: 'a bidding strategy needs at least one creative', abort: true })
      .refine((list) => list[list.length - 1]!.when === undefined, 'the last creative must have no `when` (the default)')
      // A repeated id is a copied entry whose id was not changed: the creative meant there would never serve.
      .superRefine((list, ctx) => {
        const firstAt = new Map<number, number>();
        for (const [j, creative] of list.entries()) {
          const first = firstAt.get(creative.id);
          if (first === undefined) firstAt.set(creative.id, j);
          else ctx.addIssue({ code: 'custom', path: [j, 'id'], message: `creative id ${creative.id} is listed twice (also creatives[${first}])` });
        }
      }),
    /**
     * Creative choice by Thompson sampling (controllers/creative-sampling.ts): every creative whose `when` holds is
     * a candidate, and each device gets one of them by the creatives' shares (stable per device and share), which
     * the controller moves toward each creative's chance of being the best at approvals per impression.
     */
    creativeSampling: z
      .object({
        /** No creative's share falls below this, so every one keeps being tried (0.05: 5 %). */
        floorShare: z.number().min(0).max(0.5).default(0.05),
        /** Impressions of a strategy's creatives since the start of the results before the controller moves shares. */
        minImpressions: z.number().int().min(1).default(200),
      })
      .strict()
      .optional(),
    secondRequest: z
      .object({
        /** Extra factor for the creative we would have chosen for this device. */
        preferredCreativeBoost: coefficient.default(1.2),
        /** Factor by creative template id, for templates that work better or worse for this strategy. */
        templateFactors: z.record(z.string().regex(/^\d+$/), coefficient).default({}),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const layerId = z.string().regex(/^[a-z0-9_]{1,32}$/);

const layerSchema = z
  .object({
    id: layerId,
    description: z.string().optional(),
    /** Changing the salt reshuffles the layer's devices into new buckets. */
    salt: z.string().min(1),
  })
  .strict();

const experimentSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9_]{1,32}$/),
    description: z.string().optional(),
    /**
     * The layer whose traffic this experiment takes a share of; experiments of one layer never share a device.
     * Without one, the experiment is a layer of its own, bucketed by its own salt.
     */
    layer: layerId.optional(),
    /** Changing the salt reshuffles devices into new buckets (experiments without a layer only). */
    salt: z.string().min(1).optional(),
    /** Share of the layer's devices in this experiment; the layer's experiments take theirs in file order. */
    percent: z.number().positive().max(100).default(100),
    strategies: z.array(strategyId).min(1),
    arms: z
      .array(
        z
          .object({
            /** Reported to the media as dsp_tag_str: at most 20 bytes. */
            name: z.string().min(1).refine((s) => Buffer.byteLength(s) <= 20, 'arm names go on the wire as dsp_tag_str: at most 20 bytes'),
            /** Reported to the media as dsp_tag. */
            tag: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
            /** Share of the experiment's devices in this arm. */
            percent: z.number().positive().max(100),
            overrides: z.record(strategyId, bidOverrideSchema).default({}),
            /** A creative this arm imposes, per strategy: one of the strategy's own creatives. */
            creatives: z.record(strategyId, z.number().int().positive()).default({}),
            /** The media's own experiment ids whose devices are in this arm whatever their bucket. */
            platformExperimentIds: z.array(z.number().int().nonnegative()).default([]),
          })
          .strict(),
      )
      .min(1)
      .superRefine((arms, ctx) => {
        const sum = arms.reduce((s, a) => s + a.percent, 0);
        // toFixed drops the binary noise of the sum (50 + 49.99), not a real third decimal (refused on its own below).
        if (Math.abs(sum - 100) >= 1e-9) ctx.addIssue({ code: 'custom', message: `arm percents add up to ${Number(sum.toFixed(6))}, not 100` });
      })
      .refine((arms) => arms.every((a) => Math.abs(a.percent * 100 - Math.round(a.percent * 100)) < 1e-6), 'arm percents have at most two decimals (buckets are 0.01 %)')
      .refine((arms) => new Set(arms.map((a) => a.name)).size === arms.length, 'arm names must differ: attribution tells arms apart by them')
      .refine((arms) => new Set(arms.map((a) => a.tag)).size === arms.length, 'arm tags must differ: attribution tells arms apart by them'),
  })
  .strict();

const cacheTime = z.number().int().min(3600).max(604800);

export const strategyFileSchema = z
  .object({
    description: z.string().optional(),
    /** Seconds a media may cache our answer for this device (Tencent allows 3600..604800). */
    cacheTtlSeconds: z
      .object({ take: cacheTime.default(3600), reject: cacheTime.default(86400), fallback: cacheTime.default(3600) })
      .strict()
      .prefault({}),
    /** Names of the models (from the model manifest) the expected-value formula reads. */
    valueModels: z
      .object({ apply: z.string(), approve: z.string(), risk: z.string(), ltv: z.string() })
      .strict()
      .default({ apply: 'apply', approve: 'approve', risk: 'risk', ltv: 'ltv' }),
    /** At most this many strategies in one reply (by priority); every strategy that wants the device when absent. */
    maxStrategiesPerReply: z.number().int().positive().optional(),
    strategies: z.array(z.discriminatedUnion('kind', [exclusionSchema, bidStrategySchema])).min(1),
    layers: z.array(layerSchema).default([]),
    experiments: z.array(experimentSchema).default([]),
  })
  .strict();

export type StrategyFile = z.infer<typeof strategyFileSchema>;
export type ExclusionStrategy = z.infer<typeof exclusionSchema>;
export type BidStrategy = z.infer<typeof bidStrategySchema>;
export type Experiment = z.infer<typeof experimentSchema>;
