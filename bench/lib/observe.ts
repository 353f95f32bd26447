import type { LatencyPercentiles } from './latency.js';
import { CpuWindow, peakRssBytes, resetPeakRss, type CpuShares } from './proc.js';
import {
  bucketDelta,
  bucketTotal,
  histogramBuckets,
  histogramMaxBound,
  histogramQuantile,
  parsePrometheusText,
  sumBy,
  sumSamples,
  type PromSample,
} from './prometheus.js';
import type { RunningServer } from './servers.js';

/**
 * What the server itself says about one measured window: its CPU, its peak RSS, and (servers with an admin port)
 * the deltas of its own metrics between a scrape just before and one just after the window. Scrapes happen while
 * no load runs, so rendering /metrics never delays a measured request.
 */

export interface ServerWindow {
  /** Server, load generator and everything else, in cores. */
  cpu: CpuShares;
  peakRssBytes: number;
  /** False when the kernel refused to reset the peak: the figure then covers the process's whole life. */
  peakRssPerWindow: boolean;
  /** From the engine's processing histogram; null for a server without metrics. */
  latency: LatencyPercentiles | null;
  /** Requests answered by outcome (take, no_strategy_wants, ping, deadline_fallback, ...). */
  outcomes: Record<string, number>;
  deadlineFallbacks: number;
  rejectedInputs: number;
}

const PROCESSING_HISTOGRAM = 'rta_request_processing_seconds';

export class ServerObservation {
  private constructor(
    private readonly server: RunningServer,
    private readonly before: PromSample[] | null,
    private readonly cpu: CpuWindow,
    private readonly peakReset: boolean,
  ) {}

  static async begin(server: RunningServer): Promise<ServerObservation> {
    const before = server.adminUrl ? await scrape(server.adminUrl) : null;
    const peakReset = resetPeakRss(server.pid);
    const cpu = new CpuWindow(server.pid);
    return new ServerObservation(server, before, cpu, peakReset);
  }

  /** `childGeneratorSeconds`: CPU of a load generator that ran as a child process in the window (wrk). */
  async end(childGeneratorSeconds = 0): Promise<ServerWindow> {
    const cpu = this.cpu.stop(childGeneratorSeconds);
    const peak = peakRssBytes(this.server.pid);
    const window: ServerWindow = {
      cpu,
      peakRssBytes: peak,
      peakRssPerWindow: this.peakReset,
      latency: null,
      outcomes: {},
      deadlineFallbacks: 0,
      rejectedInputs: 0,
    };
    if (this.before === null || !this.server.adminUrl) return window;
    const after = await scrape(this.server.adminUrl);
    const buckets = bucketDelta(histogramBuckets(after, PROCESSING_HISTOGRAM), histogramBuckets(this.before, PROCESSING_HISTOGRAM));
    if (bucketTotal(buckets) > 0) {
      const micros = (q: number) => histogramQuantile(buckets, q) * 1e6;
      window.latency = { p50: micros(0.5), p90: micros(0.9), p99: micros(0.99), p999: micros(0.999), max: histogramMaxBound(buckets) * 1e6 };
    }
    const outcomesBefore = sumBy(this.before, 'rta_requests_total', 'outcome');
    for (const [outcome, count] of Object.entries(sumBy(after, 'rta_requests_total', 'outcome'))) {
      const delta = count - (outcomesBefore[outcome] ?? 0);
      if (delta > 0) window.outcomes[outcome] = delta;
    }
    window.deadlineFallbacks = sumSamples(after, 'rta_deadline_fallbacks_total') - sumSamples(this.before, 'rta_deadline_fallbacks_total');
    window.rejectedInputs = sumSamples(after, 'rta_rejected_inputs_total') - sumSamples(this.before, 'rta_rejected_inputs_total');
    return window;
  }
}

async function scrape(adminUrl: string): Promise<PromSample[]> {
  const response = await fetch(`${adminUrl}/metrics`);
  if (!response.ok) throw new Error(`GET ${adminUrl}/metrics answered ${response.status}`);
  return parsePrometheusText(await response.text());
}
