import { Histogram, Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import {
  bucketDelta,
  bucketTotal,
  histogramBuckets,
  histogramMaxBound,
  histogramQuantile,
  parsePrometheusText,
  sumBy,
  sumSamples,
} from '../../bench/lib/prometheus.js';

const BUCKETS = [0.000025, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.025];

/** Real exposition text from prom-client for the given observations (seconds), split over two media labels. */
async function exposition(observations: readonly number[]): Promise<string> {
  const registry = new Registry();
  const histogram = new Histogram({ name: 'rta_request_processing_seconds', help: 'h', labelNames: ['media'], buckets: BUCKETS, registers: [registry] });
  observations.forEach((value, i) => histogram.observe({ media: i % 3 === 0 ? 'native' : 'tencent' }, value));
  return registry.metrics();
}

/** The exact q-quantile of a sample (nearest rank). */
function exactQuantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

/** Width of the bucket holding `value`: interpolation can be off by at most that much. */
function bucketWidth(value: number): number {
  const upper = BUCKETS.findIndex((b) => value <= b);
  return upper <= 0 ? BUCKETS[0]! : BUCKETS[upper]! - BUCKETS[upper - 1]!;
}

describe('parsePrometheusText', () => {
  test('reads names, labels and values, skipping comments', () => {
    const samples = parsePrometheusText(
      '# HELP x y\n# TYPE x counter\nrta_requests_total{media="tencent",outcome="take"} 12\nrta_requests_total{outcome="ping",media="native"} 3\nup 1\nx_bucket{le="+Inf"} 5\nratio Nan\n',
    );
    expect(samples).toEqual([
      { name: 'rta_requests_total', labels: { media: 'tencent', outcome: 'take' }, value: 12 },
      { name: 'rta_requests_total', labels: { outcome: 'ping', media: 'native' }, value: 3 },
      { name: 'up', labels: {}, value: 1 },
      { name: 'x_bucket', labels: { le: '+Inf' }, value: 5 },
      { name: 'ratio', labels: {}, value: NaN },
    ]);
    expect(sumSamples(samples, 'rta_requests_total')).toBe(15);
    expect(sumSamples(samples, 'rta_requests_total', { media: 'native' })).toBe(3);
    expect(sumBy(samples, 'rta_requests_total', 'outcome')).toEqual({ take: 12, ping: 3 });
  });

  test('refuses a line that is not a sample, saying which', () => {
    expect(() => parsePrometheusText('ok 1\nthis is not a sample\n')).toThrow(/line 2/);
    expect(() => parsePrometheusText('ok one\n')).toThrow(/not a Prometheus sample value: one/);
  });
});

describe('histogram percentiles from bucket deltas', () => {
  // Latencies spread log-uniformly from 20 us to 3 ms, as a server's would be.
  const observations = Array.from({ length: 5000 }, (_, i) => 20e-6 * 150 ** (((i * 7919) % 5000) / 5000));

  test('interpolated percentiles stay within the width of the bucket holding the true value', async () => {
    const buckets = histogramBuckets(parsePrometheusText(await exposition(observations)), 'rta_request_processing_seconds');
    expect(bucketTotal(buckets)).toBe(observations.length);
    for (const q of [0.5, 0.9, 0.99, 0.999]) {
      const truth = exactQuantile(observations, q);
      expect(Math.abs(histogramQuantile(buckets, q) - truth)).toBeLessThanOrEqual(bucketWidth(truth));
    }
    expect(histogramMaxBound(buckets)).toBe(BUCKETS.find((b) => b >= Math.max(...observations)));
  });

  test('inside a bucket the interpolation is linear: evenly spread latencies give their percentiles almost exactly', async () => {
    const span = 0.002;
    const even = Array.from({ length: 10_000 }, (_, i) => ((i + 0.5) / 10_000) * span);
    const buckets = histogramBuckets(parsePrometheusText(await exposition(even)), 'rta_request_processing_seconds');
    for (const q of [0.01, 0.3, 0.5, 0.9, 0.99, 0.999]) expect(Math.abs(histogramQuantile(buckets, q) - q * span)).toBeLessThan(span / 5000);
  });

  test('the difference of two scrapes describes only what happened between them', async () => {
    const early = observations.slice(0, 2000).map((v) => v / 4);
    const late = observations.slice(2000);
    const before = histogramBuckets(parsePrometheusText(await exposition(early)), 'rta_request_processing_seconds');
    const after = histogramBuckets(parsePrometheusText(await exposition([...early, ...late])), 'rta_request_processing_seconds');
    const window = bucketDelta(after, before);
    expect(bucketTotal(window)).toBe(late.length);
    const truth = exactQuantile(late, 0.99);
    expect(Math.abs(histogramQuantile(window, 0.99) - truth)).toBeLessThanOrEqual(bucketWidth(truth));
    expect(() => bucketDelta(before, after)).toThrow(/went down/);
  });

  test('a percentile past the last finite bucket is Infinity, an empty histogram gives NaN', async () => {
    const slow = [...Array.from({ length: 90 }, () => 0.0001), ...Array.from({ length: 10 }, () => 0.5)];
    const buckets = histogramBuckets(parsePrometheusText(await exposition(slow)), 'rta_request_processing_seconds');
    expect(histogramQuantile(buckets, 0.5)).toBeLessThanOrEqual(0.0001);
    expect(histogramQuantile(buckets, 0.99)).toBe(Infinity);
    expect(histogramMaxBound(buckets)).toBe(Infinity);
    expect(histogramQuantile(bucketDelta(buckets, buckets), 0.5)).toBeNaN();
  });
});
