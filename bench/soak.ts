/**
 * Soak: the engine at half its load for a long time, one line per minute of what would grow if something leaked
 * or slowed down: RSS, open file descriptors, the serving threads' worst event-loop delay, the decision log
 * attribution has not read yet (its main thread runs below the serving threads' priority), client p99, errors.
 * Fails (exit 1) when the last minutes are not flat against the first ones.
 *
 *   npm run soak [-- --minutes 30 --rate 12000]
 *
 * Flat means: RSS within +64 MiB and file descriptors within +16 of the first minute after warm-up, and client p99
 * within 3x its median over the run; the attribution backlog under 64 MiB (about 20 s of log at the default rate)
 * every minute; every request answered 200.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { OpenLoopClient } from './lib/open-loop.js';
import { collectGarbage, prepareTraffic } from './lib/prepare.js';
import { parsePrometheusText, sumSamples } from './lib/prometheus.js';
import { startServer } from './lib/servers.js';
import { DEFAULT_MIX } from './lib/traffic.js';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '30' }, rate: { type: 'string', default: '12000' } } });
const minutes = Number(values.minutes);
const rate = Number(values.rate);

const traffic = prepareTraffic({ seed: 13, mix: DEFAULT_MIX, distinct: 50_000, population: 50_000 });
collectGarbage();
const server = await startServer('engine', { cpus: null, engineEnv: {}, cpuProfileDir: null });
const client = new OpenLoopClient(server.host, server.port, 64, traffic.requests);

const rssMiB = () => Math.round(Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))![1]) / 1024);
const fds = () => readdirSync(`/proc/${server.pid}/fd`).length;
/** The serving threads' worst event-loop delay since the last scrape, and attribution's backlog. */
async function scrape(): Promise<{ delayMs: number; backlogMiB: number }> {
  const samples = parsePrometheusText(await (await fetch(`${server.adminUrl}/metrics`)).text());
  return {
    delayMs: sumSamples(samples, 'rta_event_loop_delay_seconds', { quantile: '1' }) * 1000,
    backlogMiB: sumSamples(samples, 'rta_attribution_log_backlog_bytes') / 2 ** 20,
  };
}

interface Minute {
  minute: number;
  rssMiB: number;
  fds: number;
  delayMs: number;
  backlogMiB: number;
  p99Ms: number;
  failed: number;
  /** Which kind of failure, when there were some: non-200 replies, connection errors, replies not back in time. */
  failures: string;
}
const rows: Minute[] = [];
try {
  await client.runAt({ rate, durationSeconds: 20, seed: 1, graceSeconds: 5 }, false);
  await scrape();
  console.log(`Soak: ${rate} requests/s (open loop, 64 connections) for ${minutes} min, one line a minute`);
  console.log('| minute | RSS MiB | fds | worst event-loop delay ms | attribution backlog MiB | client p99 ms | failed |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (let minute = 1; minute <= minutes; minute++) {
    const result = await client.runAt({ rate, durationSeconds: 60, seed: 100 + minute, graceSeconds: 5 }, true);
    const failures = Object.entries({ 'non-200': result.non200, errors: result.errors, timeouts: result.timeouts }).filter(([, n]) => n > 0);
    const scraped = await scrape();
    const row = {
      minute,
      rssMiB: rssMiB(),
      fds: fds(),
      delayMs: Math.round(scraped.delayMs * 10) / 10,
      backlogMiB: Math.round(scraped.backlogMiB * 10) / 10,
      p99Ms: Math.round(result.latency.p99 / 100) / 10,
      failed: result.non200 + result.errors + result.timeouts,
      failures: failures.map(([kind, n]) => `${n} ${kind}`).join(', '),
    };
    rows.push(row);
    console.log(`| ${row.minute} | ${row.rssMiB} | ${row.fds} | ${row.delayMs} | ${row.backlogMiB} | ${row.p99Ms} | ${row.failed}${row.failures ? ` (${row.failures})` : ''} |`);
  }
} finally {
  client.close();
  await server.stop();
}

const first = rows[0]!;
const last = rows.at(-1)!;
const p99s = rows.map((r) => r.p99Ms).sort((a, b) => a - b);
const medianP99 = p99s[Math.floor(p99s.length / 2)]!;
const problems = [
  last.rssMiB - first.rssMiB > 64 && `RSS grew ${last.rssMiB - first.rssMiB} MiB`,
  last.fds - first.fds > 16 && `file descriptors grew by ${last.fds - first.fds}`,
  rows.some((r) => r.p99Ms > 3 * medianP99) && `a minute's p99 passed 3x the median ${medianP99} ms`,
  rows.some((r) => r.backlogMiB > 64) && `attribution fell ${Math.max(...rows.map((r) => r.backlogMiB))} MiB behind`,
  rows.some((r) => r.failed > 0) && `${rows.reduce((s, r) => s + r.failed, 0)} requests failed`,
].filter(Boolean);
console.log(problems.length === 0 ? 'soak: flat' : `soak: NOT flat: ${problems.join('; ')}`);
process.exitCode = problems.length === 0 ? 0 : 1;
