import { PERCENTILE_KEYS, type LatencyPercentiles } from './latency.js';
import type { Pinning, ServerKind } from './servers.js';
import type { ClosedRun, MachineDescription, OpenRun } from './session.js';
import type { PreparedTraffic } from './prepare.js';
import { spread, type Spread } from './stats.js';

/** The benchmark's result file: raw runs, their summaries (median, min, max), and the goals checked against them. */

export type PercentileSpreads = Record<keyof LatencyPercentiles, Spread>;

export interface ThroughputSummary {
  requestsPerSecond: Partial<Record<ServerKind, Spread>>;
  /** Per run, the server's rate over the bare ceiling measured right beside it. */
  shareOfCeiling: Partial<Record<ServerKind, Spread>>;
  /**
   * Per run, the bare server's CPU per request over this server's, measured beside it: the same share, read from
   * CPU instead of rate, so it holds even where the generator limits the rate.
   */
  cpuShare: Partial<Record<ServerKind, Spread>>;
  serverCpu: Partial<Record<ServerKind, Spread>>;
  generatorCpu: Partial<Record<ServerKind, Spread>>;
  backgroundCpu: Partial<Record<ServerKind, Spread>>;
  errors: Partial<Record<ServerKind, number>>;
  deadlineFallbacks: Partial<Record<ServerKind, number>>;
  peakRssBytes: Partial<Record<ServerKind, Spread>>;
}

export interface PointSummary {
  achievedRate: Spread;
  client: PercentileSpreads;
  /** From the server's own histogram; null for a server without one. */
  server: PercentileSpreads | null;
  dispatchLagP99: Spread;
  scheduled: number;
  waitedForConnection: number;
  errors: number;
  non200: number;
  timeouts: number;
  deadlineFallbacks: number;
  deadlineFallbackShare: number;
  outcomes: Record<string, number>;
  serverCpu: Spread;
  generatorCpu: Spread;
  backgroundCpu: Spread;
  peakRssBytes: Spread;
}

export interface LatencyPoint {
  /** Offered load as a fraction of the engine's measured maximum. */
  fraction: number;
  offeredRate: number;
  servers: Partial<Record<ServerKind, PointSummary>>;
}

export interface GoalCheck {
  goal: string;
  target: string;
  measured: string;
  /** null when the run did not measure it. */
  met: boolean | null;
}

export interface BenchResult {
  kind: 'rta-load-benchmark';
  startedAt: string;
  finishedAt: string;
  machine: MachineDescription;
  pinning: Pinning;
  options: Record<string, unknown>;
  traffic: PreparedTraffic['description'];
  servers: Partial<Record<ServerKind, Record<string, unknown>>>;
  throughput: ThroughputSummary;
  latency: LatencyPoint[];
  goals: GoalCheck[];
  raw: {
    closedLoop: Partial<Record<ServerKind, ClosedRun[]>>;
    openLoop: { fraction: number; offeredRate: number; runs: Partial<Record<ServerKind, OpenRun[]>> }[];
  };
}

export function summarizeThroughput(runs: Partial<Record<ServerKind, ClosedRun[]>>): ThroughputSummary {
  const summary: ThroughputSummary = {
    requestsPerSecond: {},
    shareOfCeiling: {},
    cpuShare: {},
    serverCpu: {},
    generatorCpu: {},
    backgroundCpu: {},
    errors: {},
    deadlineFallbacks: {},
    peakRssBytes: {},
  };
  const bare = runs.bare ?? [];
  for (const [kind, list] of Object.entries(runs) as [ServerKind, ClosedRun[]][]) {
    if (list.length === 0) continue;
    summary.requestsPerSecond[kind] = spread(list.map((r) => r.load.requestsPerSecond));
    summary.serverCpu[kind] = spread(list.map((r) => r.server.cpu.server));
    summary.generatorCpu[kind] = spread(list.map((r) => r.server.cpu.generator));
    summary.backgroundCpu[kind] = spread(list.map((r) => r.server.cpu.background));
    summary.errors[kind] = list.reduce((sum, r) => sum + r.load.errors + r.load.timeouts + r.load.non2xx, 0);
    summary.deadlineFallbacks[kind] = list.reduce((sum, r) => sum + r.server.deadlineFallbacks, 0);
    summary.peakRssBytes[kind] = spread(list.map((r) => r.server.peakRssBytes));
    if (kind !== 'bare' && bare.length === list.length) {
      summary.shareOfCeiling[kind] = spread(list.map((r, i) => r.load.requestsPerSecond / bare[i]!.load.requestsPerSecond));
      summary.cpuShare[kind] = spread(list.map((r, i) => cpuPerRequest(bare[i]!) / cpuPerRequest(r)));
    }
  }
  return summary;
}

/** Server CPU seconds per answered request in one closed-loop run. */
export function cpuPerRequest(run: ClosedRun): number {
  return run.server.cpu.server / run.load.requestsPerSecond;
}

/** A generator this close to a whole core cannot tell its own limit from the server's. */
export const SATURATED_GENERATOR_CORES = 0.95;

export function summarizePoint(runs: readonly OpenRun[]): PointSummary {
  const percentiles = (pick: (run: OpenRun) => LatencyPercentiles): PercentileSpreads =>
    Object.fromEntries(PERCENTILE_KEYS.map((key) => [key, spread(runs.map((r) => pick(r)[key]))])) as PercentileSpreads;
  const serverSide = runs.every((r) => r.server.latency !== null) ? percentiles((r) => r.server.latency!) : null;
  const outcomes: Record<string, number> = {};
  for (const run of runs) for (const [outcome, count] of Object.entries(run.server.outcomes)) outcomes[outcome] = (outcomes[outcome] ?? 0) + count;
  const answered = Object.values(outcomes).reduce((a, b) => a + b, 0);
  const deadlineFallbacks = runs.reduce((sum, r) => sum + r.server.deadlineFallbacks, 0);
  return {
    achievedRate: spread(runs.map((r) => r.load.achievedRate)),
    client: percentiles((r) => r.load.latency),
    server: serverSide,
    dispatchLagP99: spread(runs.map((r) => r.load.dispatchLag.p99)),
    scheduled: runs.reduce((sum, r) => sum + r.load.scheduled, 0),
    waitedForConnection: runs.reduce((sum, r) => sum + r.load.waitedForConnection, 0),
    errors: runs.reduce((sum, r) => sum + r.load.errors, 0),
    non200: runs.reduce((sum, r) => sum + r.load.non200, 0),
    timeouts: runs.reduce((sum, r) => sum + r.load.timeouts, 0),
    deadlineFallbacks,
    deadlineFallbackShare: answered > 0 ? deadlineFallbacks / answered : 0,
    outcomes,
    serverCpu: spread(runs.map((r) => r.server.cpu.server)),
    generatorCpu: spread(runs.map((r) => r.server.cpu.generator)),
    backgroundCpu: spread(runs.map((r) => r.server.cpu.background)),
    peakRssBytes: spread(runs.map((r) => r.server.peakRssBytes)),
  };
}

/** The fraction of the engine's maximum at which the latency and error goals are stated. */
export const GOAL_FRACTION = 0.75;

export function checkGoals(throughput: ThroughputSummary, latency: readonly LatencyPoint[]): GoalCheck[] {
  const share = throughput.shareOfCeiling.engine;
  const cpuShare = throughput.cpuShare.engine;
  const point = latency.find((p) => Math.abs(p.fraction - GOAL_FRACTION) < 1e-9)?.servers.engine;
  const at = `at ${GOAL_FRACTION * 100} % of the engine's maximum`;
  const micros = (value: number | undefined) => (value === undefined ? 'not measured' : formatMicros(value));
  const check = (goal: string, target: string, measured: string, met: boolean | undefined): GoalCheck => ({ goal, target, measured, met: met ?? null });
  const failures = point ? point.errors + point.non200 + point.timeouts : undefined;
  return [
    check('engine throughput, share of the bare-server ceiling (requests/s, wrk)', '>= 50 %', share ? formatPercent(share.median) : 'not measured', share && share.median >= 0.5),
    check('engine cost, share by CPU per request (bare / engine)', '>= 50 %', cpuShare ? formatPercent(cpuShare.median) : 'not measured', cpuShare && cpuShare.median >= 0.5),
    check(`server-side p99 ${at}`, '<= 1 ms', micros(point?.server?.p99.median), point?.server ? point.server.p99.median <= 1000 : undefined),
    check(`server-side p99.9 ${at}`, '<= 2 ms', micros(point?.server?.p999.median), point?.server ? point.server.p999.median <= 2000 : undefined),
    check(`client-observed p99 ${at} (loopback)`, '<= 2 ms', micros(point?.client.p99.median), point ? point.client.p99.median <= 2000 : undefined),
    check(`errors, timeouts and non-200 ${at}`, '0', failures === undefined ? 'not measured' : String(failures), failures === undefined ? undefined : failures === 0),
    check(
      `deadline fallbacks ${at}`,
      '<= 0.1 %',
      point ? `${formatPercent(point.deadlineFallbackShare, 3)} (${point.deadlineFallbacks})` : 'not measured',
      point ? point.deadlineFallbackShare <= 0.001 : undefined,
    ),
  ];
}

export function formatMicros(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? 'n/a' : '> 25 ms';
  if (value >= 10_000) return `${(value / 1000).toFixed(1)} ms`;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} ms`;
  return `${Math.round(value)} us`;
}

export function formatPercent(share: number, digits = 1): string {
  return `${(share * 100).toFixed(digits)} %`;
}
