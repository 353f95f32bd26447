/**
 * The load benchmark: `npm run bench [-- flags]` (flags: `npm run bench -- --help`).
 *
 * One process (this one, pinned to CPU 1 when it can be) generates the load; each server runs in its own process
 * (pinned to CPU 0): the bare uWebSockets.js ceiling, the engine, and the engine behind node:http. All three get
 * the same pre-encoded traffic. Closed-loop runs (wrk) find each server's maximum; fixed-rate runs at
 * fractions of the engine's maximum measure latency, client-side at 1 us resolution and server-side from the
 * engine's own histogram. Runs of different servers alternate, so slow drift on the machine hits them alike.
 * Writes bench/results/<name>.json, .md and .svg, and the summary block of bench/README.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { renderChart } from './lib/chart.js';
import { runClosedLoop, wrkAvailable } from './lib/closed-loop.js';
import { collectGarbage, prepareTraffic } from './lib/prepare.js';
import { renderSummary } from './lib/report.js';
import { checkGoals, summarizePoint, summarizeThroughput, type BenchResult, type LatencyPoint } from './lib/results.js';
import { pinProcesses, REPO_ROOT, SERVER_KINDS, startServer, type RunningServer, type ServerKind } from './lib/servers.js';
import { describeMachine, log, measureClosedLoop, OpenLoopSession, type ClosedRun, type OpenRun } from './lib/session.js';
import { DEFAULT_MIX } from './lib/traffic.js';

const HELP = `npm run bench -- [flags]
  --runs N               measured runs per point (3)
  --duration S           seconds per fixed-rate run (8)
  --closed-duration S    seconds per closed-loop run (10)
  --warmup S             seconds of unmeasured load before each measured window (2)
  --fractions LIST       fixed-rate loads, fractions of the engine's maximum (0.25,0.5,0.75,0.9)
  --servers LIST         bare,engine,node-http (all)
  --latency-servers LIST servers that get the fixed-rate runs (all of --servers)
  --connections N        closed-loop connections (32)
  --open-connections N   fixed-rate connections (64)
  --seed N               traffic seed (1)
  --unknown-share X      share of devices not in the store (${DEFAULT_MIX.unknownShare})
  --ios-share X          (${DEFAULT_MIX.iosShare})   --native-share X (${DEFAULT_MIX.nativeShare})   --ping-share X (${DEFAULT_MIX.pingShare})
  --second-share X       second requests (${DEFAULT_MIX.secondRequestShare})   --experiment-share X (${DEFAULT_MIX.experimentShare})   --zipf S (${DEFAULT_MIX.zipfExponent})
  --distinct N           distinct pre-encoded requests (50000)   --population N  known devices (200000)
  --pin on|off           taskset servers to CPU 0 and the generator to CPU 1 (on)
  --engine-env K=V       extra environment for the engine and the node:http variant (repeatable)
  --max-background X     re-measure a window in which other processes used more than X cores (0.25)
  --retries N            at most N times (2)
  --cpu-prof             profile the engine with node --cpu-prof (profiles and results go to bench/results/tmp)
  --name NAME            result file name under bench/results (latest); "latest" also updates bench/README.md`;

const commaList = z.string().transform((text) => text.split(',').map((s) => s.trim()));
const serverList = commaList.pipe(z.array(z.enum(['bare', 'engine', 'node-http'])).min(1));
const share = z.coerce.number().min(0).max(1);
const flagShape = {
    runs: z.coerce.number().int().min(1).max(20).default(3),
    duration: z.coerce.number().min(1).max(600).default(8),
    'closed-duration': z.coerce.number().min(1).max(600).default(10),
    warmup: z.coerce.number().min(0).max(120).default(2),
    fractions: commaList.transform((items) => items.map(Number)).pipe(z.array(z.number().gt(0).max(1.5)).min(1)).default([0.25, 0.5, 0.75, 0.9]),
    servers: serverList.default([...SERVER_KINDS]),
    'latency-servers': serverList.optional(),
    connections: z.coerce.number().int().min(1).max(10_000).default(32),
    'open-connections': z.coerce.number().int().min(1).max(10_000).default(64),
    seed: z.coerce.number().int().min(0).max(2 ** 32 - 1).default(1),
    'unknown-share': share.default(DEFAULT_MIX.unknownShare),
    'ios-share': share.default(DEFAULT_MIX.iosShare),
    'native-share': share.default(DEFAULT_MIX.nativeShare),
    'ping-share': share.default(DEFAULT_MIX.pingShare),
    'second-share': share.default(DEFAULT_MIX.secondRequestShare),
    'experiment-share': share.default(DEFAULT_MIX.experimentShare),
    zipf: z.coerce.number().min(0).max(3).default(DEFAULT_MIX.zipfExponent),
    distinct: z.coerce.number().int().min(100).max(2_000_000).default(50_000),
    population: z.coerce.number().int().min(100).max(100_000_000).default(200_000),
    pin: z.enum(['on', 'off']).default('on'),
    'engine-env': z.array(z.string().regex(/^[A-Z_][A-Z0-9_]*=.*$/, 'expected KEY=VALUE')).default([]),
    'max-background': z.coerce.number().min(0).max(64).default(0.25),
    retries: z.coerce.number().int().min(0).max(5).default(2),
    'cpu-prof': z.boolean().default(false),
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/i).default('latest'),
};
const flagsSchema = z
  .object(flagShape)
  .strict()
  .refine((f) => f.servers.includes('engine'), { message: '--servers must include engine: the fixed-rate loads are fractions of its maximum' });

type Flags = z.infer<typeof flagsSchema>;

function readFlags(): Flags {
  const { values } = parseArgs({
    options: {
      help: { type: 'boolean' },
      'cpu-prof': { type: 'boolean' },
      'engine-env': { type: 'string', multiple: true },
      ...Object.fromEntries(
        Object.keys(flagShape)
          .filter((k) => k !== 'cpu-prof' && k !== 'engine-env')
          .map((k) => [k, { type: 'string' as const }]),
      ),
    },
  });
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  delete values.help;
  const parsed = flagsSchema.safeParse(values);
  if (!parsed.success) {
    console.error(`bench: ${parsed.error.issues.map((i) => `--${i.path.join('.')}: ${i.message}`).join('; ')}\n\n${HELP}`);
    process.exit(2);
  }
  return parsed.data;
}

async function main(): Promise<void> {
  const flags = readFlags();
  const missing = wrkAvailable();
  if (missing) {
    console.error(`bench: ${missing}; the closed-loop maximum is measured with wrk (apt-get install wrk time)`);
    process.exit(2);
  }
  const startedAt = new Date().toISOString();
  const latencyServers = flags['latency-servers'] ?? flags.servers;
  // A profiled engine runs slower: its figures go to the scratch directory, never over the committed results.
  const resultsDir = join(REPO_ROOT, flags['cpu-prof'] ? 'bench/results/tmp' : 'bench/results');
  const profileDir = flags['cpu-prof'] ? join(resultsDir, 'profiles') : null;
  if (profileDir) mkdirSync(profileDir, { recursive: true });

  log('building traffic');
  const traffic = prepareTraffic({
    seed: flags.seed,
    distinct: flags.distinct,
    population: flags.population,
    mix: {
      unknownShare: flags['unknown-share'],
      iosShare: flags['ios-share'],
      nativeShare: flags['native-share'],
      pingShare: flags['ping-share'],
      secondRequestShare: flags['second-share'],
      experimentShare: flags['experiment-share'],
      zipfExponent: flags.zipf,
    },
  });
  collectGarbage();
  log(`traffic: ${traffic.requests.length} distinct requests, ${traffic.description.meanBodyBytes} body bytes on average (${traffic.description.millis} ms)`);

  const policy = { maxBackgroundCores: flags['max-background'], retries: flags.retries };
  const pinning = pinProcesses(flags.pin === 'on');
  log(pinning.note);
  const engineEnv = Object.fromEntries(flags['engine-env'].map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const servers = new Map<ServerKind, RunningServer>();
  const stopAll = async () => {
    for (const server of servers.values()) await server.stop();
  };
  process.once('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    for (const kind of flags.servers) {
      log(`starting ${kind}`);
      servers.set(kind, await startServer(kind, { cpus: pinning.serverCpus, engineEnv, cpuProfileDir: profileDir }));
    }

    const closed: Partial<Record<ServerKind, ClosedRun[]>> = {};
    const closedOptions = { connections: flags.connections, durationSeconds: flags['closed-duration'] };
    for (const server of servers.values()) {
      log(`closed-loop warm-up: ${server.kind}`);
      if (flags.warmup > 0) await runClosedLoop({ url: server.mediaUrl, requests: traffic.requests, ...closedOptions, durationSeconds: Math.max(flags.warmup, 3) });
    }
    for (let run = 1; run <= flags.runs; run++) {
      for (const server of servers.values()) {
        const result = await measureClosedLoop(server, traffic.requests, closedOptions, policy);
        (closed[server.kind] ??= []).push(result);
        log(`closed-loop run ${run}/${flags.runs} ${server.kind}: ${Math.round(result.load.requestsPerSecond)} req/s, server CPU ${result.server.cpu.server.toFixed(2)}`);
      }
    }
    const throughput = summarizeThroughput(closed);
    const engineMax = throughput.requestsPerSecond.engine!.median;

    const session = new OpenLoopSession(traffic.requests, flags['open-connections'], policy);
    const open: BenchResult['raw']['openLoop'] = [];
    const latency: LatencyPoint[] = [];
    for (const fraction of flags.fractions) {
      const offeredRate = Math.round(fraction * engineMax);
      const runs: Partial<Record<ServerKind, OpenRun[]>> = {};
      for (let run = 1; run <= flags.runs; run++) {
        for (const kind of latencyServers) {
          const server = servers.get(kind);
          if (!server) continue;
          const plan = { rate: offeredRate, durationSeconds: flags.duration, seed: flags.seed + run, graceSeconds: 5 };
          const result = await session.measure(server, plan, flags.warmup);
          (runs[kind] ??= []).push(result);
          log(
            `fixed rate ${Math.round(fraction * 100)} % (${offeredRate} req/s) run ${run}/${flags.runs} ${kind}: client p99 ${result.load.latency.p99} us` +
              (result.server.latency ? `, server p99 ${Math.round(result.server.latency.p99)} us` : ''),
          );
        }
      }
      open.push({ fraction, offeredRate, runs });
      latency.push({
        fraction,
        offeredRate,
        servers: Object.fromEntries(Object.entries(runs).map(([kind, list]) => [kind, summarizePoint(list)])),
      });
    }
    session.close();

    const result: BenchResult = {
      kind: 'rta-load-benchmark',
      startedAt,
      finishedAt: new Date().toISOString(),
      machine: describeMachine(),
      pinning,
      options: { ...flags, latencyServers },
      traffic: traffic.description,
      servers: Object.fromEntries([...servers].map(([kind, s]) => [kind, s.listening])),
      throughput,
      latency,
      goals: checkGoals(throughput, latency),
      raw: { closedLoop: closed, openLoop: open },
    };
    writeResults(resultsDir, flags.name, result, flags.name === 'latest' && !flags['cpu-prof']);
  } finally {
    await stopAll();
  }
  if (profileDir) log(`engine CPU profiles in ${profileDir}; summarize with: npx tsx bench/profile-summary.ts ${profileDir}/*.cpuprofile`);
}

const README_START = '<!-- bench:summary:start -->';
const README_END = '<!-- bench:summary:end -->';

function writeResults(dir: string, name: string, result: BenchResult, updateReadme: boolean): void {
  mkdirSync(dir, { recursive: true });
  const summary = renderSummary(result, `${name}.svg`);
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(result, null, 1)}\n`);
  writeFileSync(join(dir, `${name}.md`), summary);
  writeFileSync(join(dir, `${name}.svg`), renderChart(result));
  if (updateReadme) {
    const readmePath = join(REPO_ROOT, 'bench/README.md');
    const readme = readFileSync(readmePath, 'utf8');
    const start = readme.indexOf(README_START);
    const end = readme.indexOf(README_END);
    if (start < 0 || end < start) throw new Error(`${readmePath} lacks the ${README_START} ... ${README_END} block for the summary`);
    const block = summary.replaceAll('](latest.svg)', '](results/latest.svg)');
    writeFileSync(readmePath, `${readme.slice(0, start + README_START.length)}\n${block}\n${readme.slice(end)}`);
  }
  console.log(summary);
  log(`wrote ${resolve(dir, name)}.{json,md,svg}`);
}

main().catch((err: unknown) => {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
