import { z } from 'zod';
import type { MediaRules } from './module.js';

/** What the media's rules make of a coefficient: clamped into its range, rounded to its decimals; NaN stays NaN. */
export function coefficientFor(rules: MediaRules, coefficient: number): number {
  const { min, max, decimals } = rules.coefficient;
  const scale = 10 ** decimals;
  return Math.round(Math.min(max, Math.max(min, coefficient)) * scale) / scale;
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
          max: z.number().positive().max(100).default(defaults.coefficient.max),
          decimals: z.number().int().min(0).max(6).default(defaults.coefficient.decimals),
        })
        .strict()
        .prefault({})
        .refine((c) => c.min <= c.max, { error: 'min must not be above max' }),
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
