import autocannon, { type AutocannonRequest } from 'autocannon';
import type { EncodedRequest } from './traffic.js';

/**
 * Closed-loop maximum throughput with autocannon: every connection sends its next request as soon as the previous
 * one is answered. Each connection walks its own slice of the pre-encoded traffic, so connections do not send the
 * same device in lockstep. autocannon's latencies are whole milliseconds and closed-loop latency hides queueing;
 * only its request rate is used as a figure.
 */

export interface ClosedLoopResult {
  /** 2xx responses per second. */
  requestsPerSecond: number;
  responses: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** autocannon's own latency (ms resolution), for context only. */
  latencyMillis: { p50: number; p99: number; max: number };
  seconds: number;
}

export async function runClosedLoop(options: {
  url: string;
  requests: readonly EncodedRequest[];
  connections: number;
  durationSeconds: number;
}): Promise<ClosedLoopResult> {
  const slices = sliceRequests(options.requests, options.connections);
  let nextSlice = 0;
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationSeconds,
    timeout: 10,
    requests: slices[0],
    setupClient: (client) => client.setRequests(slices[nextSlice++ % slices.length]!),
  });
  return {
    requestsPerSecond: result['2xx'] / result.duration,
    responses: result['2xx'] + result.non2xx,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    latencyMillis: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
    seconds: result.duration,
  };
}

function sliceRequests(requests: readonly EncodedRequest[], connections: number): AutocannonRequest[][] {
  const perSlice = Math.max(1, Math.floor(requests.length / connections));
  const slices: AutocannonRequest[][] = [];
  for (let i = 0; i < connections; i++) {
    const start = (i * perSlice) % requests.length;
    slices.push(
      requests.slice(start, start + perSlice).map((r) => ({ method: 'POST', path: r.path, headers: { 'content-type': r.contentType }, body: r.body })),
    );
  }
  return slices;
}
