import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatMicros, formatPercent } from './results.js';
import type { Spread } from './stats.js';

/**
 * The perf gate's config (bench/gate.json) and its decision: pass or fail from the medians of a short run, against
 * thresholds kept in the repo. Pure, so the rule itself is tested without load.
 */

export const gateConfigSchema = z
  .object({
    description: z.string(),
    /** How the thresholds were set: the spread measured over repeated gate runs, and the margin taken. */
    derivation: z.string(),
    thresholds: z
      .object({
        minEngineShareOfCeiling: z.number().gt(0).lt(1.5),
        maxServerP99Micros: z.number().positive(),
      })
      .strict(),
    run: z
      .object({
        /** Fixed-rate load for the latency check, as a fraction of the engine's maximum measured in the same run. */
        fraction: z.number().gt(0).max(1),
        runs: z.number().int().min(1).max(10),
        closedSeconds: z.number().min(1).max(60),
        openSeconds: z.number().min(1).max(60),
        warmupSeconds: z.number().min(0).max(30),
        connections: z.number().int().min(1).max(1000),
        openConnections: z.number().int().min(1).max(1000),
        seed: z.number().int().min(0),
        distinct: z.number().int().min(100),
        population: z.number().int().min(100),
        /** A window in which other processes used more than this many cores is measured again (up to `retries`). */
        maxBackgroundCores: z.number().min(0),
        retries: z.number().int().min(0).max(5),
      })
      .strict(),
  })
  .strict();

export type GateConfig = z.infer<typeof gateConfigSchema>;

export function loadGateConfig(path: string): GateConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`gate config ${path}: ${(err as Error).message}`);
  }
  const parsed = gateConfigSchema.safeParse(raw);
  if (!parsed.success) throw new Error(`gate config ${path} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export interface GateFigures {
  /** Per paired run: engine requests/s over the bare ceiling measured beside it. */
  engineShareOfCeiling: Spread;
  /** Server-side p99 at the configured fraction of the engine's own maximum, in microseconds. */
  serverP99Micros: Spread;
  /** Errors, timeouts and non-2xx responses over every gate window. */
  failedRequests: number;
}

export interface GateCheck {
  name: string;
  measured: string;
  limit: string;
  passed: boolean;
}

export interface GateDecision {
  passed: boolean;
  checks: GateCheck[];
}

export function decideGate(figures: GateFigures, thresholds: GateConfig['thresholds']): GateDecision {
  const share = figures.engineShareOfCeiling.median;
  const p99 = figures.serverP99Micros.median;
  const checks: GateCheck[] = [
    {
      name: 'engine share of the bare-server ceiling (median)',
      measured: `${formatPercent(share)} (runs ${formatPercent(figures.engineShareOfCeiling.min)}–${formatPercent(figures.engineShareOfCeiling.max)})`,
      limit: `>= ${formatPercent(thresholds.minEngineShareOfCeiling)}`,
      passed: share >= thresholds.minEngineShareOfCeiling,
    },
    {
      name: 'server-side p99 at the gate load (median)',
      measured: `${formatMicros(p99)} (runs ${formatMicros(figures.serverP99Micros.min)}–${formatMicros(figures.serverP99Micros.max)})`,
      limit: `<= ${formatMicros(thresholds.maxServerP99Micros)}`,
      // NaN (no request measured) must fail, hence the positive comparison.
      passed: p99 <= thresholds.maxServerP99Micros,
    },
    {
      name: 'errors, timeouts and non-2xx responses',
      measured: String(figures.failedRequests),
      limit: '0',
      passed: figures.failedRequests === 0,
    },
  ];
  return { passed: checks.every((c) => c.passed), checks };
}
