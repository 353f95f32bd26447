import type { Registry } from 'prom-client';

/**
 * Counters and histograms for the per-request path. prom-client hashes a label object on every inc/observe; the
 * load benchmark's profile put that at about a tenth of a request's CPU. Here a label set is resolved once to a
 * slot and a request only adds into a Float64Array. They render through the same registry, and aggregate across
 * serving threads, like any prom-client metric.
 */

interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

abstract class HotMetric<L extends string> {
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  protected readonly labelSets: Record<L, string>[] = [];
  private readonly slotByKey = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly L[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  /** The slot of a label set, created on first use. Resolve once and keep it where the label set is fixed. */
  slot(labels: Record<L, string>): number {
    let key = '';
    for (const name of this.labelNames) key += `${labels[name]}\u0000`;
    let slot = this.slotByKey.get(key);
    if (slot === undefined) {
      slot = this.labelSets.length;
      this.labelSets.push({ ...labels });
      this.slotByKey.set(key, slot);
      this.grow(slot + 1);
    }
    return slot;
  }

  protected abstract grow(slots: number): void;
  abstract reset(): void;
  protected abstract samples(): Sample[];

  async get() {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples() };
  }
}

export class HotCounter<L extends string> extends HotMetric<L> {
  readonly type = 'counter';
  private values = new Float64Array(8);

  add(slot: number, by = 1): void {
    this.values[slot]! += by;
  }

  /** The convenient, slower form for code off the hot path. */
  inc(labels: Record<L, string>, by = 1): void {
    this.add(this.slot(labels), by);
  }

  reset(): void {
    this.values.fill(0);
  }

  protected grow(slots: number): void {
    if (slots <= this.values.length) return;
    const values = new Float64Array(this.values.length * 2);
    values.set(this.values);
    this.values = values;
  }

  protected samples(): Sample[] {
    return this.labelSets.map((labels, slot) => ({ labels, value: this.values[slot]! }));
  }
}

export class HotHistogram<L extends string> extends HotMetric<L> {
  readonly type = 'histogram';
  /** Per slot: one count per bucket (not cumulative), then +Inf, then the sum. */
  private cells: Float64Array;
  private readonly width: number;

  constructor(name: string, help: string, labelNames: readonly L[], private readonly buckets: readonly number[], registry: Registry) {
    super(name, help, labelNames, registry);
    this.width = buckets.length + 2;
    this.cells = new Float64Array(this.width * 4);
  }

  observe(slot: number, value: number): void {
    const base = slot * this.width;
    const buckets = this.buckets;
    let i = 0;
    while (i < buckets.length && value > buckets[i]!) i++;
    this.cells[base + i]!++;
    this.cells[base + this.width - 1]! += value;
  }

  reset(): void {
    this.cells.fill(0);
  }

  protected grow(slots: number): void {
    if (slots * this.width <= this.cells.length) return;
    const cells = new Float64Array(Math.max(this.cells.length * 2, slots * this.width));
    cells.set(this.cells);
    this.cells = cells;
  }

  protected samples(): Sample[] {
    const samples: Sample[] = [];
    for (const [slot, labels] of this.labelSets.entries()) {
      const base = slot * this.width;
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += this.cells[base + i]!;
        const le = i < this.buckets.length ? this.buckets[i]! : '+Inf';
        samples.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      samples.push({ labels, value: this.cells[base + this.width - 1]!, metricName: `${this.name}_sum` });
      samples.push({ labels, value: cumulative, metricName: `${this.name}_count` });
    }
    return samples;
  }
}
