import { readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { COST_CLASSES, STAGE_NAMES, type CostClass, type CostReport, type StageName } from './cost.js';
import { formatMicros, formatPercent } from './results.js';
import type { Spread } from './stats.js';

/**
 * The perf gate's config (bench/gate.json), its baseline (bench/baseline.json) and its decision. Pure apart from
 * reading and writing those two files, so the rule itself is tested without valgrind or load.
 *
 * The gate judges cost in instructions per request, which does not move with the machine's speed or its
 * neighbours, against the last accepted build. Of the wall-clock figures only the mission's own budget is gated
 * (p99.9 within 2 ms at the gate's load, nothing failed): it holds with a wide margin on any machine of this class.
 */

const fraction = z.number().gt(0).max(1);

export const gateConfigSchema = z
  .object({
    description: z.string(),
    /** How the thresholds were set: the spread measured over repeated gate runs, and the margin taken. */
    derivation: z.string(),
    thresholds: z
      .object({
        /** A class (or the all-classes figure) costing this much more than its baseline fails the gate. */
        maxInstructionIncrease: fraction,
        /** The mission's budget: server-side p99.9 at the gate's load. */
        maxServerP999Micros: z.number().positive(),
      })
      .strict(),
    cost: z
      .object({
        requestsPerClass: z.number().int().min(10).max(10_000),
        rounds: z.number().int().min(1).max(10),
        /** Passes over every class, uninstrumented, before counting: enough that V8 compiles nothing more. */
        warmupPasses: z.number().int().min(1).max(1000),
        seed: z.number().int().min(0),
      })
      .strict(),
    load: z
      .object({
        /** Fixed-rate load for the latency check, as a fraction of the engine's maximum measured in the same run. */
        fraction,
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

/** The figure that keeps garbage collection in: one line beside the classes. */
export const ALL_CLASSES = 'all classes, GC included';
export const FIGURES = [...COST_CLASSES, ALL_CLASSES] as const;
export type CostFigureName = (typeof FIGURES)[number];
export type CostFigures = Record<CostFigureName, number>;

export const baselineSchema = z
  .object({
    description: z.string(),
    accepted: z
      .object({
        at: z.string(),
        /** Why this cost was accepted: the change that costs it. */
        why: z.string().min(1),
        /** HEAD when it was counted (the change itself may have been uncommitted then). */
        onTopOf: z.string(),
        /** What the count depends on besides the code: V8 and glibc pick code paths by CPU features. */
        cpu: z.string(),
        node: z.string(),
        valgrind: z.string(),
      })
      .strict(),
    instructionsPerRequest: z.object(Object.fromEntries(FIGURES.map((name) => [name, z.number().positive()])) as Record<CostFigureName, z.ZodNumber>).strict(),
    /** Each class by stage (bench/lib/cost.ts), printed beside the build's own: not gated, the classes are. */
    stagesPerRequest: z.record(z.enum(COST_CLASSES), z.record(z.enum(STAGE_NAMES), z.number())).optional(),
  })
  .strict();

export type Baseline = z.infer<typeof baselineSchema>;

function loadJson<T>(path: string, schema: z.ZodType<T>, what: string): T {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${what} ${path}: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new Error(`${what} ${path} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export const loadGateConfig = (path: string) => loadJson(path, gateConfigSchema, 'gate config');
export const loadBaseline = (path: string) => loadJson(path, baselineSchema, 'baseline');

export function costFigures(report: CostReport): CostFigures {
  const figures = { [ALL_CLASSES]: report.allClassesWithGc } as CostFigures;
  for (const name of COST_CLASSES) figures[name] = report.classes[name].instructionsPerRequest;
  return figures;
}

export type StageFigures = Record<CostClass, Record<StageName, number>>;

export function stageFigures(report: CostReport): StageFigures {
  return Object.fromEntries(COST_CLASSES.map((name) => [name, report.classes[name].stages])) as StageFigures;
}

export function writeBaseline(path: string, figures: CostFigures, stages: StageFigures, accepted: Baseline['accepted']): void {
  const baseline: Baseline = {
    description:
      'Instructions per request of the last accepted build, per traffic class, counted by `npm run bench:ci` (bench/lib/cost.ts). ' +
      'Rewritten only by `npm run bench:ci -- --accept "why"`, committed together with the change that costs it.',
    accepted,
    instructionsPerRequest: Object.fromEntries(FIGURES.map((name) => [name, Math.round(figures[name])])) as CostFigures,
    stagesPerRequest: Object.fromEntries(
      COST_CLASSES.map((name) => [name, Object.fromEntries(STAGE_NAMES.map((stage) => [stage, Math.round(stages[name][stage])]))]),
    ) as StageFigures,
  };
  writeFileSync(path, `${JSON.stringify(baseline, null, 2)}\n`);
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

/** One check per class: the build counted now against the reference (the baseline file, or another revision). */
export function compareCost(now: CostFigures, reference: CostFigures, maxIncrease: number): GateCheck[] {
  return FIGURES.map((name) => {
    const change = now[name] / reference[name] - 1;
    return {
      name: `instructions per request, ${name}`,
      measured: `${Math.round(now[name]).toLocaleString('en-US')} against ${Math.round(reference[name]).toLocaleString('en-US')} (${change >= 0 ? '+' : ''}${formatPercent(change, 2)})`,
      limit: `<= +${formatPercent(maxIncrease, 0)}`,
      // NaN (a figure that was not counted) must fail, hence the positive comparison.
      passed: change <= maxIncrease,
    };
  });
}

export interface LoadFigures {
  /** Server-side p99.9 at the gate's load, per run, in microseconds. */
  serverP999Micros: Spread;
  /** Errors, timeouts and non-2xx responses over every gate window. */
  failedRequests: number;
}

export function checkLoad(figures: LoadFigures, thresholds: GateConfig['thresholds']): GateCheck[] {
  const p999 = figures.serverP999Micros.median;
  return [
    {
      name: 'server-side p99.9 at the gate load (median)',
      measured: `${formatMicros(p999)} (runs ${formatMicros(figures.serverP999Micros.min)}–${formatMicros(figures.serverP999Micros.max)})`,
      limit: `<= ${formatMicros(thresholds.maxServerP999Micros)}`,
      passed: p999 <= thresholds.maxServerP999Micros,
    },
    {
      name: 'errors, timeouts and non-2xx responses',
      measured: String(figures.failedRequests),
      limit: '0',
      passed: figures.failedRequests === 0,
    },
  ];
}

export function decide(checks: GateCheck[]): GateDecision {
  return { passed: checks.every((c) => c.passed), checks };
}
