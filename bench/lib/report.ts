import { PERCENTILE_KEYS, PERCENTILE_LABELS } from './latency.js';
import { formatPercent, GOAL_FRACTION, SATURATED_GENERATOR_CORES, type BenchResult, type PointSummary } from './results.js';
import { SERVER_LABELS, type ServerKind } from './servers.js';
import type { Spread } from './stats.js';

/** The Markdown summary of one benchmark result: what a person reads first, with the method that makes it trustworthy. */

const range = (s: Spread, format: (v: number) => string) => (s.runs > 1 ? `${format(s.median)} (${format(s.min)}–${format(s.max)})` : format(s.median));
const whole = (v: number) => (Number.isFinite(v) ? String(Math.round(v)) : Number.isNaN(v) ? 'n/a' : '>25000');
const cores = (v: number) => v.toFixed(2);
const mebibytes = (v: number) => `${Math.round(v / 2 ** 20)}`;
const rate = (v: number) => Math.round(v).toLocaleString('en-US');

export function renderSummary(result: BenchResult, chartFile: string): string {
  const { machine, throughput, traffic, options } = result;
  const minutes = (Date.parse(result.finishedAt) - Date.parse(result.startedAt)) / 60_000;
  const engine = result.servers.engine ?? {};
  const runs = Number(options.runs);
  const lines: string[] = [];
  const out = (line = '') => lines.push(line);

  out(`### Load benchmark, ${result.startedAt.slice(0, 16).replace('T', ' ')} UTC`);
  out();
  out(
    `Machine: ${machine.cpuModel}, ${machine.logicalCpus} logical CPUs, ${machine.memoryGiB} GiB, Node ${machine.node}, Linux ${machine.kernel}. ` +
      `${result.pinning.note}. Engine: \`${engine.mode ?? '?'}\` mode, ${engine.threads ?? '?'} thread(s). Took ${minutes.toFixed(1)} min.`,
  );
  out();
  out(
    `Traffic (seed ${traffic.seed}): ${traffic.distinctRequests.toLocaleString('en-US')} distinct pre-encoded requests rotated per request ` +
      `(mean body ${traffic.meanBodyBytes} B), ${formatPercent(traffic.tencentShare, 0)} Tencent / ${formatPercent(1 - traffic.tencentShare, 0)} native, ` +
      `${formatPercent(traffic.mix.unknownShare, 0)} unknown devices, ${formatPercent(traffic.mix.iosShare, 0)} iOS, ${formatPercent(traffic.mix.pingShare, 0)} pings, ` +
      `${formatPercent(traffic.mix.secondRequestShare, 0)} second requests, ${formatPercent(traffic.mix.experimentShare, 0)} with platform experiment buckets; ` +
      `Zipf s = ${traffic.mix.zipfExponent} over ${traffic.knownDevices.toLocaleString('en-US')} known and ${traffic.unknownDevices.toLocaleString('en-US')} unknown devices.`,
  );
  out();
  out(`Every figure is the median of ${runs} runs with (min–max); warm-up is excluded.`);
  out();

  out('#### Goals');
  out();
  out('| goal | target | today | |');
  out('|---|---|---|---|');
  for (const goal of result.goals) out(`| ${goal.goal} | ${goal.target} | ${goal.measured} | ${goal.met === null ? '–' : goal.met ? 'met' : '**not met**'} |`);
  out();

  out(`#### Maximum throughput (closed loop: wrk, 1 thread, ${options.connections} connections, ${options['closed-duration']} s per run)`);
  out();
  out(
    '| server | requests/s | share of the ceiling (requests/s) | share by CPU per request (bare / server) | server CPU (cores) | server CPU per request (us) | generator CPU | other processes | peak RSS (MiB) | errors + non-2xx | deadline fallbacks |',
  );
  out('|---|---|---|---|---|---|---|---|---|---|---|');
  const percent = (v: number) => formatPercent(v, 0);
  for (const kind of Object.keys(throughput.requestsPerSecond) as ServerKind[]) {
    const share = throughput.shareOfCeiling[kind];
    const cpuShare = throughput.cpuShare[kind];
    const generator = throughput.generatorCpu[kind]!;
    const saturated = generator.max >= SATURATED_GENERATOR_CORES ? ' **generator saturated**' : '';
    out(
      `| ${SERVER_LABELS[kind]} | ${range(throughput.requestsPerSecond[kind]!, rate)} | ${kind === 'bare' ? 'ceiling' : share ? range(share, percent) : '–'} | ` +
        `${kind === 'bare' ? '–' : cpuShare ? range(cpuShare, percent) : '–'} | ` +
        `${range(throughput.serverCpu[kind]!, cores)} | ${whole((throughput.serverCpu[kind]!.median / throughput.requestsPerSecond[kind]!.median) * 1e6)} | ${range(generator, cores)}${saturated} | ${range(throughput.backgroundCpu[kind]!, cores)} | ` +
        `${range(throughput.peakRssBytes[kind]!, mebibytes)} | ${throughput.errors[kind]} | ${kind === 'bare' ? '–' : throughput.deadlineFallbacks[kind]} |`,
    );
  }
  out();

  out(`#### Latency under fixed-rate load (Poisson arrivals, ${options['open-connections']} connections, ${options.duration} s per run)`);
  out();
  out('Microseconds. Client: from the scheduled send to the last response byte. Server: the engine\'s own histogram, body complete to reply written.');
  out();
  out(`| load | server | offered req/s | achieved | client ${PERCENTILE_KEYS.map((k) => PERCENTILE_LABELS[k]).join(' | ')} | server ${PERCENTILE_KEYS.map((k) => (k === 'max' ? 'max ≤' : PERCENTILE_LABELS[k])).join(' | ')} |`);
  out(`|---|---|---|---|${PERCENTILE_KEYS.map(() => '---').join('|')}|${PERCENTILE_KEYS.map(() => '---').join('|')}|`);
  for (const point of result.latency) {
    for (const [kind, summary] of Object.entries(point.servers) as [ServerKind, PointSummary][]) {
      const client = PERCENTILE_KEYS.map((k) => range(summary.client[k], whole));
      const server = PERCENTILE_KEYS.map((k) => (summary.server ? range(summary.server[k], whole) : '–'));
      out(`| ${formatPercent(point.fraction, 0)} | ${kind} | ${rate(point.offeredRate)} | ${rate(summary.achievedRate.median)} | ${client.join(' | ')} | ${server.join(' | ')} |`);
    }
  }
  out();
  out('| load | server | errors | non-200 | timeouts | deadline fallbacks | server CPU (cores) | generator CPU | other processes | peak RSS (MiB) | send lag p99 (us) | waited for a connection |');
  out('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const point of result.latency) {
    for (const [kind, s] of Object.entries(point.servers) as [ServerKind, PointSummary][]) {
      out(
        `| ${formatPercent(point.fraction, 0)} | ${kind} | ${s.errors} | ${s.non200} | ${s.timeouts} | ${kind === 'bare' ? '–' : `${s.deadlineFallbacks} (${formatPercent(s.deadlineFallbackShare, 3)})`} | ` +
          `${range(s.serverCpu, cores)} | ${range(s.generatorCpu, cores)} | ${range(s.backgroundCpu, cores)} | ${range(s.peakRssBytes, mebibytes)} | ${range(s.dispatchLagP99, whole)} | ` +
          `${formatPercent(s.waitedForConnection / s.scheduled, 2)} |`,
      );
    }
  }
  out();
  out(`![latency against offered load, and throughput against the ceiling](${chartFile})`);
  out();
  out('#### How it was measured');
  out();
  for (const line of methodNotes(result)) out(`- ${line}`);
  out();
  return `${lines.join('\n')}\n`;
}

function methodNotes(result: BenchResult): string[] {
  const goalPoint = result.latency.find((p) => Math.abs(p.fraction - GOAL_FRACTION) < 1e-9)?.servers.engine;
  const windows = [...Object.values(result.raw.closedLoop).flat(), ...result.raw.openLoop.flatMap((p) => Object.values(p.runs).flat())];
  const retried = windows.filter((w) => w.attempts > 1).length;
  const noisy = windows.filter((w) => w.noisy).length;
  const background = Math.max(...result.latency.flatMap((p) => Object.values(p.servers).map((s) => s.backgroundCpu.max)), ...Object.values(result.throughput.backgroundCpu).map((s) => s.max));
  return [
    `Machine: ${result.machine.logicalCpus} cores shared by the server, the load generator and anything else running. ${result.pinning.note}. ` +
      `"Other processes" is the machine's busy time minus server and generator (up to ${cores(background)} cores in a kept window of this run). ` +
      `A window in which they took more than ${result.options['max-background']} cores was measured again (up to ${result.options.retries} times): ` +
      `${retried} of ${windows.length} windows were re-measured, ${noisy} kept windows were still that noisy.`,
    'Servers run in their own processes: the engine exactly as deployed (`node dist/server/main.js`), the same built engine behind `node:http` (bench/servers/node-http-engine.ts), and a bare uWebSockets.js server answering fixed bytes of a typical reply (bench/servers/bare-uws.ts).',
    `Maximum throughput: closed-loop wrk (one thread, so one core) rotating through the traffic; runs of the three servers alternate. The share of the ceiling is each run's rate over the bare run beside it; the share by CPU per request is the bare server's CPU per request over this server's, which holds even if the generator, not the server, set the rate. A generator at ${SATURATED_GENERATOR_CORES} cores or more is marked saturated: its rate is then a floor of the server's.`,
    'Fixed rate: our own open-loop generator over raw keep-alive sockets. Arrival times are a seeded Poisson process; each latency runs from the scheduled send time (not the actual one) to the last byte of the response, read with performance.now() (monotonic, sub-microsecond), so a stalled server cannot hide its queue (no coordinated omission). Recorded in an HDR histogram at 1 us resolution. The generator spins between sends to leave on time, so its CPU reads 1.00 in fixed-rate runs; "send lag" is how late sends left while a connection was free (the generator\'s own lateness, and the floor of what the client side can resolve, with the bare server\'s latency); "waited for a connection" counts sends that found all connections busy, a wait charged to the server.',
    'Server-side latency: /metrics scraped just before and just after each measured window (never during it); percentiles from the bucket deltas of `rta_request_processing_seconds`, interpolated linearly inside a bucket (bounds 25 us … 25 ms, so a percentile is only as exact as its bucket), "max ≤" is the upper bound of the highest non-empty bucket.',
    'CPU from /proc/PID/stat (utime+stime, all threads); peak RSS is VmHWM from /proc/PID/status, reset through /proc/PID/clear_refs before each window.',
    goalPoint
      ? `At the goal load, outcomes were: ${Object.entries(goalPoint.outcomes)
          .sort((a, b) => b[1] - a[1])
          .map(([k, v]) => `${k} ${formatPercent(v / Object.values(goalPoint.outcomes).reduce((a, b) => a + b, 0), 1)}`)
          .join(', ')}.`
      : 'The goal load was not part of this run.',
    `Reproduce: \`npm run bench\` (defaults), or \`npm run bench -- ${reproduceFlags(result)}\` for exactly this run.`,
  ];
}

function reproduceFlags(result: BenchResult): string {
  const o = result.options;
  return [
    `--runs ${o.runs}`,
    `--duration ${o.duration}`,
    `--closed-duration ${o['closed-duration']}`,
    `--warmup ${o.warmup}`,
    `--fractions ${(o.fractions as number[]).join(',')}`,
    `--servers ${(o.servers as string[]).join(',')}`,
    `--seed ${o.seed}`,
    `--pin ${o.pin}`,
  ].join(' ');
}
