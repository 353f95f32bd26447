import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { HotCounter, HotHistogram } from '../../src/observe/hot-metrics.js';

/** The hot-path metrics must render exactly as prom-client's own would, alone and summed across threads. */
const BUCKETS = [0.000025, 0.0001, 0.001, 0.01];
const VALUES = [0.00001, 0.000025, 0.00003, 0.0001, 0.0005, 0.002, 0.5, 0.00007];

function withoutName(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(name, 'X'));
}

describe('hot metrics', () => {
  test('a histogram renders the same lines as prom-client for the same observations', async () => {
    const reference = new Registry();
    const hot = new Registry();
    const ours = new HotHistogram('hot_seconds', 'h', ['media'] as const, BUCKETS, hot);
    const theirs = new Histogram({ name: 'ref_seconds', help: 'h', labelNames: ['media'] as const, buckets: BUCKETS, registers: [reference] });
    for (const [i, value] of VALUES.entries()) {
      const media = i % 3 === 0 ? 'native' : 'tencent';
      ours.observe(ours.slot({ media }), value);
      theirs.observe({ media }, value);
    }
    expect(withoutName(await hot.metrics(), 'hot_seconds').sort()).toEqual(withoutName(await reference.metrics(), 'ref_seconds').sort());
    expect(await hot.metrics()).toMatch(/^# TYPE hot_seconds histogram$/m);
  });

  test('a counter renders like prom-client, keeps slots across a reset, and sums across registries', async () => {
    const threads = [new Registry(), new Registry()];
    const counters = threads.map((registry) => new HotCounter('hot_total', 'c', ['media', 'outcome'] as const, registry));
    counters[0]!.add(counters[0]!.slot({ media: 'tencent', outcome: 'take' }), 3);
    counters[1]!.inc({ media: 'tencent', outcome: 'take' });
    counters[1]!.inc({ media: 'native', outcome: 'high_risk' }, 2);
    const reference = new Registry();
    const theirs = new Counter({ name: 'hot_total', help: 'c', labelNames: ['media', 'outcome'] as const, registers: [reference] });
    theirs.inc({ media: 'tencent', outcome: 'take' }, 4);
    theirs.inc({ media: 'native', outcome: 'high_risk' }, 2);

    const summed = await AggregatorRegistry.aggregate(await Promise.all(threads.map((r) => r.getMetricsAsJSON()))).metrics();
    expect(summed.split('\n').sort()).toEqual((await reference.metrics()).split('\n').sort());

    const slot = counters[0]!.slot({ media: 'tencent', outcome: 'take' });
    counters[0]!.reset();
    expect(counters[0]!.slot({ media: 'tencent', outcome: 'take' })).toBe(slot);
    expect(await threads[0]!.metrics()).toMatch(/^hot_total\{media="tencent",outcome="take"\} 0$/m);
  });
});
