import { build, type Histogram } from 'hdr-histogram-js';

/** Latency percentiles in microseconds, client- or server-side. */
export interface LatencyPercentiles {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export const PERCENTILE_KEYS = ['p50', 'p90', 'p99', 'p999', 'max'] as const;
export const PERCENTILE_LABELS: Record<(typeof PERCENTILE_KEYS)[number], string> = { p50: 'p50', p90: 'p90', p99: 'p99', p999: 'p99.9', max: 'max' };

/** 1 us resolution, 3 significant digits (so within 0.1 %), up to a minute. */
export function microsecondHistogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

export function percentilesOf(histogram: Histogram): LatencyPercentiles {
  if (histogram.totalCount === 0) return { p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN };
  return {
    p50: histogram.getValueAtPercentile(50),
    p90: histogram.getValueAtPercentile(90),
    p99: histogram.getValueAtPercentile(99),
    p999: histogram.getValueAtPercentile(99.9),
    max: histogram.maxValue,
  };
}
