import { z } from 'zod';
import type { MediaRules } from './module.js';

/**
 * What the media's rules make of a coefficient: rounded to its decimals, then kept within its range rounded inward
 * (min 0.2 at 0 decimals is 1), so rounding never takes it out of the range; NaN stays NaN.
 */
export function coefficientFor(rules: MediaRules, coefficient: number): number {
  const { min, max, decimals } = rules.coefficient;
  const scale = 10 ** decimals;
  // The slack keeps 0.2 x 100 = 20.000000000000004 from rounding up to 21.
  const lowest = Math.ceil(min * scale - 1e-9);
  const highest = Math.floor(max * scale + 1e-9);
  return Math.min(highest, Math.max(lowest, Math.round(coefficient * scale))) / scale;
}

/** 0 stays "not set"; a price the platform would ignore is raised to its floor. */
export function cpcPriceFor(rules: MediaRules, fen: number): number {
  return fen > 0 ? Math.max(rules.cpcFloorFen, fen) : 0;
}

export function cacheSecondsFor(rules: MediaRules, seconds: number): number {
  return Math.min(rules.cacheSeconds.max, Math.max(rules.cacheSeconds.min, seconds));
}

/** The config's `media.<name>` section: each rule defaults to what the media's module states. */
export function mediaRulesSchema(defaults: MediaRules) {
  const seconds = z.number().int().min(0).max(30 * 86_400);
  return z
    .object({
      coefficient: z
        .object({
          min: z.number().positive().default(defaults.coefficient.min),
          // The book never makes more than 5 (strategy/schema.ts), whatever a media would take.
          max: z.number().positive().max(5).default(defaults.coefficient.max),
          decimals: z.number().int().min(0).max(6).default(defaults.coefficient.decimals),
        })
        .strict()
        .prefault({})
        .refine((c) => Math.ceil(c.min * 10 ** c.decimals - 1e-9) <= Math.floor(c.max * 10 ** c.decimals + 1e-9), {
          error: 'no coefficient with that many decimals lies between min and max',
        }),
      cpcFloorFen: z.number().int().min(0).max(100_000).default(defaults.cpcFloorFen),
      cacheSeconds: z
        .object({ min: seconds.default(defaults.cacheSeconds.min), max: seconds.default(defaults.cacheSeconds.max) })
        .strict()
        .prefault({})
        .refine((c) => c.min <= c.max, { error: 'min must not be above max' }),
      declineStatus: z.union([z.literal(200), z.literal(204)]).default(defaults.declineStatus),
    })
    .strict()
    .prefault({});
}
