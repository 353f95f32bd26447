/**
 * Overload, the way media platforms cause it: far more connections than the engine can serve at once, each with
 * a request always ready (Tencent keeps about 5,000 open per advertiser). Every event-loop turn then holds a request
 * from every ready connection, so without shedding the turn, and every request's wait, grows with the connection
 * count. The same engine build runs with shedding at its default and switched off, side by side.
 *
 *   npm run bench:overload [-- --connections 32,512,2048 --seconds 10]
 *
 * Per run: replies/s and the share shed (the engine's own counts), wrk's latency over every reply, the
 * engine's server-side p99 of the decided (not shed) requests, its RSS, and the recovery: how long after the
 * overload stopped the first request was decided again. 32 connections is the closed-loop maximum of `npm run
 * bench`, so the larger counts offer 16 and 64 times its queue.
 */
import { parseArgs } from 'node:util';
import { runClosedLoop, wrkAvailable } from './lib/closed-loop.js';
import { collectGarbage, prepareTraffic } from './lib/prepare.js';
import { peakRssBytes, resetPeakRss } from './lib/proc.js';
import { bucketDelta, histogramBuckets, histogramQuantile, parsePrometheusText, sumBy, type PromSample } from './lib/prometheus.js';
import { startServer, type RunningServer } from './lib/servers.js';
import { DEFAULT_MIX } from './lib/traffic.js';
import { tencentClient } from '../src/media/tencent/client.js';
import { DeviceIdKind } from '../src/engine/types.js';

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '32,512,2048' },
    seconds: { type: 'string', default: '10' },
  },
});
const connectionCounts = values.connections.split(',').map(Number);
const seconds = Number(values.seconds);
const missing = wrkAvailable();
if (missing) throw new Error(`bench:overload needs ${missing}`);

const traffic = prepareTraffic({ seed: 11, mix: DEFAULT_MIX, distinct: 20_000, population: 20_000 });
collectGarbage();

async function scrape(server: RunningServer): Promise<PromSample[]> {
  return parsePrometheusText(await (await fetch(`${server.adminUrl}/metrics`)).text());
}

/** Sequential requests for an unknown device until one is decided rather than shed; milliseconds until then. */
async function recovery(server: RunningServer): Promise<{ millis: number; shedBefore: number }> {
  const { body, contentType } = tencentClient.encodeRequest({
    requestId: 'recovery-probe',
    os: 'android',
    ids: [{ kind: DeviceIdKind.OAID_MD5, md5: '0123456789abcdef0123456789abcdef' }],
    platformExperimentIds: [],
    isPing: false,
    isTest: false,
    secondRequest: false,
    ads: [],
  });
  const started = performance.now();
  for (let shed = 0; ; shed++) {
    const reply = await fetch(`${server.mediaUrl}/rta/tencent`, { method: 'POST', body, headers: { 'content-type': contentType } });
    const decoded = tencentClient.decodeReply(new Uint8Array(await reply.arrayBuffer()), 'application/x-protobuf');
    // An unknown device is decided with code 0 or a reject other than 6; 6 is the shed (or a late score).
    if (decoded.code !== 6) return { millis: performance.now() - started, shedBefore: shed };
  }
}

interface Row {
  shedding: string;
  connections: number;
  repliesPerSecond: number;
  shedShare: number;
  errors: number;
  wrk: { p50: number; p99: number; max: number };
  decidedP99Micros: number;
  rssMiB: number;
  recoveryMillis: number;
}

const rows: Row[] = [];
for (const [shedding, env] of [
  ['default (1 ms)', {}],
  ['off', { RTA_SHED_AFTER_MICROS: '0' }],
] as const) {
  const server = await startServer('engine', { cpus: null, engineEnv: env, cpuProfileDir: null });
  try {
    await runClosedLoop({ url: server.mediaUrl, requests: traffic.requests, connections: 32, durationSeconds: 3 });
    for (const connections of connectionCounts) {
      const before = await scrape(server);
      resetPeakRss(server.pid);
      const load = await runClosedLoop({ url: server.mediaUrl, requests: traffic.requests, connections, durationSeconds: seconds, latency: true });
      const { millis } = await recovery(server);
      const after = await scrape(server);
      const outcomes = sumBy(after, 'rta_requests_total', 'outcome');
      const outcomesBefore = sumBy(before, 'rta_requests_total', 'outcome');
      const delta = (k: string) => (outcomes[k] ?? 0) - (outcomesBefore[k] ?? 0);
      const total = Object.keys(outcomes).reduce((sum, k) => sum + delta(k), 0);
      // The processing histogram counts shed requests too; they are the fast ones, so this p99 is of all replies
      // whenever fewer than 1 % were shed, and an upper bound on the decided ones' p99 otherwise.
      const buckets = bucketDelta(histogramBuckets(after, 'rta_request_processing_seconds'), histogramBuckets(before, 'rta_request_processing_seconds'));
      rows.push({
        shedding,
        connections,
        repliesPerSecond: Math.round(load.requestsPerSecond),
        shedShare: total > 0 ? delta('shed') / total : 0,
        errors: load.errors + load.timeouts + load.non2xx,
        wrk: load.latency!,
        decidedP99Micros: Math.round(histogramQuantile(buckets, 0.99) * 1e6),
        rssMiB: Math.round(peakRssBytes(server.pid) / 2 ** 20),
        recoveryMillis: Math.round(millis * 10) / 10,
      });
      console.error(`[overload] shedding ${shedding}, ${connections} connections: ${JSON.stringify(rows.at(-1))}`);
    }
  } finally {
    await server.stop();
  }
}

const ms = (us: number) => (us / 1000).toFixed(us < 10_000 ? 2 : 0);
console.log(`Overload: wrk closed loop, ${seconds} s per run, both serving threads; latency in ms`);
console.log('| shedding | connections | replies/s | shed | errors | wrk p50 | wrk p99 | wrk max | server p99 | peak RSS MiB | first decided after |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const cells = [r.shedding, r.connections, r.repliesPerSecond, `${(r.shedShare * 100).toFixed(1)} %`, r.errors, ms(r.wrk.p50), ms(r.wrk.p99), ms(r.wrk.max), ms(r.decidedP99Micros), r.rssMiB, `${r.recoveryMillis} ms`];
  console.log(`| ${cells.join(' | ')} |`);
}
