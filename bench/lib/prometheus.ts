/**
 * Reading the engine's own /metrics: counters and the server-side latency histogram. Percentiles come from the
 * difference of two scrapes (before and after a measured window), so warm-up and earlier runs drop out.
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** One cumulative bucket: `count` observations were at most `le` (seconds; Infinity for +Inf). */
export interface CumulativeBucket {
  le: number;
  count: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses the Prometheus text exposition format; comment lines are skipped, a malformed line is an error. */
export function parsePrometheusText(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE_LINE.exec(line);
    if (!match) throw new Error(`metrics line ${index + 1} is not a Prometheus sample: ${line.slice(0, 120)}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(LABEL_PAIR)) labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: parseValue(match[3]!) });
  }
  return samples;
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  // prom-client writes NaN as "Nan".
  if (/^nan$/i.test(text)) return NaN;
  const value = Number(text);
  if (Number.isNaN(value)) throw new Error(`not a Prometheus sample value: ${text}`);
  return value;
}

function matches(sample: PromSample, name: string, filter: Record<string, string>): boolean {
  if (sample.name !== name) return false;
  for (const [key, value] of Object.entries(filter)) if (sample.labels[key] !== value) return false;
  return true;
}

/** Sum of every series of `name` whose labels include `filter` (0 when there is none yet). */
export function sumSamples(samples: readonly PromSample[], name: string, filter: Record<string, string> = {}): number {
  let total = 0;
  for (const sample of samples) if (matches(sample, name, filter)) total += sample.value;
  return total;
}

/** Per-label-value sums, e.g. requests by outcome. */
export function sumBy(samples: readonly PromSample[], name: string, label: string): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const sample of samples) {
    if (sample.name !== name) continue;
    const key = sample.labels[label] ?? '';
    sums[key] = (sums[key] ?? 0) + sample.value;
  }
  return sums;
}

/** The cumulative buckets of histogram `name`, summed over every series whose labels include `filter`. */
export function histogramBuckets(samples: readonly PromSample[], name: string, filter: Record<string, string> = {}): CumulativeBucket[] {
  const byBound = new Map<number, number>();
  for (const sample of samples) {
    if (!matches(sample, `${name}_bucket`, filter)) continue;
    const le = sample.labels.le;
    if (le === undefined) throw new Error(`${name}_bucket sample without an le label`);
    const bound = parseValue(le);
    byBound.set(bound, (byBound.get(bound) ?? 0) + sample.value);
  }
  return [...byBound].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
}

/** Observations that happened between two scrapes of the same histogram. */
export function bucketDelta(after: readonly CumulativeBucket[], before: readonly CumulativeBucket[]): CumulativeBucket[] {
  const earlier = new Map(before.map((b) => [b.le, b.count]));
  return after.map(({ le, count }) => {
    const delta = count - (earlier.get(le) ?? 0);
    if (delta < 0) throw new Error(`histogram bucket le=${le} went down between scrapes (${earlier.get(le)} -> ${count}): did the server restart?`);
    return { le, count: delta };
  });
}

export function bucketTotal(buckets: readonly CumulativeBucket[]): number {
  return buckets.length === 0 ? 0 : buckets[buckets.length - 1]!.count;
}

/**
 * The q-quantile (0 < q <= 1) of a histogram, interpolating linearly inside the bucket that holds it (the first
 * bucket starts at 0), the way Prometheus' histogram_quantile does. Infinity when it lies past the last finite
 * bound; NaN when the histogram is empty.
 */
export function histogramQuantile(buckets: readonly CumulativeBucket[], q: number): number {
  if (!(q > 0 && q <= 1)) throw new Error(`quantile ${q} is not within (0, 1]`);
  const total = bucketTotal(buckets);
  if (total === 0) return NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (le === Infinity) return Infinity;
      return lower + ((le - lower) * (rank - below)) / (count - below);
    }
    lower = le;
    below = count;
  }
  return Infinity;
}

/** The upper bound of the highest bucket holding any observation: what a histogram can say about the maximum. */
export function histogramMaxBound(buckets: readonly CumulativeBucket[]): number {
  let previous = 0;
  let bound = NaN;
  for (const { le, count } of buckets) {
    if (count > previous) bound = le;
    previous = count;
  }
  return bound;
}
