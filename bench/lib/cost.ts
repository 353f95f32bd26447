import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { CallgrindSession, type WindowCount } from './callgrind.js';
import { loadDemoPopulation } from './population.js';
import { parsePrometheusText, sumSamples } from './prometheus.js';
import { SequentialClient } from './sequential-client.js';
import { startServer, type ServerKind } from './servers.js';
import { spread } from './stats.js';
import { DEFAULT_MIX, encodeTraffic, generateTraffic, readBookIds, type TrafficMix } from './traffic.js';

/**
 * Instructions per request, per traffic class and per stage, through the real server: the built engine
 * (`dist/server/main.js` of a checkout) under callgrind, one serving thread, real uWebSockets.js on a loopback socket, each request sent
 * alone. Start-up and warm-up run with instrumentation off; then each class is counted in its own window (zero,
 * send, dump), several rounds in a row. The count does not depend on the machine's speed or on what else runs.
 *
 * What is held still so the count repeats: `node --predictable` (no concurrent compiler or GC threads, fixed
 * seeds), one serving thread, a scoring deadline no counted request can reach and no load shedding (a fallback or
 * a shed reply would do other work: the run fails if any happened), and the same requests in the same order every
 * time. The bare server is counted the same way, for the engine's share of it.
 */

export const COST_CLASSES = ['tencent-known', 'tencent-unknown', 'tencent-second', 'native-protobuf', 'native-json', 'ping'] as const;
export type CostClass = (typeof COST_CLASSES)[number];

const CLASS_TRAFFIC: Record<CostClass, { media: 'tencent' | 'native'; json?: boolean; mix: Partial<TrafficMix> }> = {
  'tencent-known': { media: 'tencent', mix: { unknownShare: 0, pingShare: 0, secondRequestShare: 0 } },
  'tencent-unknown': { media: 'tencent', mix: { unknownShare: 1, pingShare: 0, secondRequestShare: 0 } },
  'tencent-second': { media: 'tencent', mix: { pingShare: 0, secondRequestShare: 1 } },
  'native-protobuf': { media: 'native', mix: { pingShare: 0, secondRequestShare: 0 } },
  'native-json': { media: 'native', json: true, mix: { pingShare: 0, secondRequestShare: 0 } },
  ping: { media: 'tencent', mix: { pingShare: 1 } },
};

export type ClassMessages = Record<CostClass, Buffer[]>;

/**
 * A request's instructions by stage of the pipeline: each named stage is the inclusive count of its entry
 * functions (JIT code named through node's perf map), so it holds everything those functions call. A function V8
 * inlines into its caller has no count of its own and its work shows under "other JavaScript" (the gate says so
 * when a stage counts nothing in every class); the stages are tested to name functions the engine still has
 * (test/bench/cost-stages.test.ts). The last two close the sum:
 * "outside JavaScript" is uWebSockets.js, libuv and node's C++ around the callbacks (what the bare server also
 * does), "other JavaScript" the route, the engine's glue and metrics. Garbage collection, compiling and timers are
 * taken out of "other JavaScript": one that started outside JavaScript (an allocation by uWebSockets.js) shows as
 * less there and more outside, the sum staying right (seen on native JSON, whose windows collect most).
 */
export const COST_STAGES = [
  { stage: 'decode', entries: [/^JS:\W?decode file:\S*\/dist\/media\/[\w-]+\/adapter\.js:/] },
  { stage: 'strategies: screen', entries: [/^JS:\W?screen file:\S*\/dist\/strategy\/book\.js:/] },
  // scoreRecord scores inline (app-per-thread), scoreBatch in the scoring pool's workers; neither calls the other.
  { stage: 'scoring', entries: [/^JS:\W?score(Record|Batch) file:\S*\/dist\/scoring\/scorer\.js:/] },
  { stage: 'strategies: decide', entries: [/^JS:\W?decide file:\S*\/dist\/strategy\/book\.js:/] },
  { stage: 'encode', entries: [/^JS:\W?encode file:\S*\/dist\/media\/[\w-]+\/adapter\.js:/] },
  // encode, not record: record is small enough that V8 inlines it into the route, and encode is nearly all of it.
  { stage: 'decision log', entries: [/^JS:\W?encode file:\S*\/dist\/observe\/decision-log\/recorder\.js:/] },
  // The wrappers JavaScript calls to read headers and write the reply; cork is left out, it calls JavaScript back.
  { stage: 'uWS calls (headers, reply)', entries: [/^(void )?Http(Request|Response)Wrapper::(req|res)_(?!cork)/] },
] as const;
export const OTHER_JS = 'other JavaScript';
export const OUTSIDE_JS = 'outside JavaScript';
export const STAGE_NAMES = [...COST_STAGES.map((s) => s.stage), OTHER_JS, OUTSIDE_JS] as const;
export type StageName = (typeof STAGE_NAMES)[number];

/** Splits a window's request instructions (total less compiling, GC and timers) into the stages; they sum to it. */
export function stagesOf(window: WindowCount): Record<StageName, number> {
  const stages = {} as Record<StageName, number>;
  let named = 0;
  for (const { stage, entries } of COST_STAGES) {
    let sum = 0;
    for (const [name, instructions] of window.functions) if (entries.some((entry) => entry.test(name))) sum += instructions;
    stages[stage] = sum;
    named += sum;
  }
  let insideJs = 0;
  for (const [name, instructions] of window.functions) if (name.startsWith('Builtins_JSEntry ')) insideJs += instructions;
  stages[OUTSIDE_JS] = window.total - insideJs;
  stages[OTHER_JS] = insideJs - window.compile - window.gc - window.timers - named;
  return stages;
}

/** The requests of every class, whole HTTP messages, drawn from the demo population like the load benchmark's. */
export function costTraffic(perClass: number, seed: number): ClassMessages {
  const config = loadConfig({ env: {} });
  const population = loadDemoPopulation({
    snapshotPath: config.store.snapshot,
    profileSchemaPath: config.store.profileSchema,
    knownDevices: 20_000,
    unknownDevices: 10_000,
  });
  const book = readBookIds(config.strategies);
  const messages = {} as ClassMessages;
  for (const [index, name] of COST_CLASSES.entries()) {
    const { media, json, mix } = CLASS_TRAFFIC[name];
    const items = generateTraffic(population, book, { ...DEFAULT_MIX, ...mix, nativeShare: media === 'native' ? 1 : 0 }, perClass, seed + index);
    messages[name] = encodeTraffic(items, '127.0.0.1', { json }).map((r) => r.message);
  }
  return messages;
}

export interface CostOptions {
  /** The engine (default), or the bare uWebSockets.js server the engine's share is taken against. */
  kind?: Extract<ServerKind, 'engine' | 'bare'>;
  /** The checkout whose build is counted. */
  root: string;
  /** Passes over every class with instrumentation off before counting. */
  warmupPasses: number;
  /** Counted windows per class; the figure is their median. */
  rounds: number;
  /** Extra environment for the engine. */
  env?: Record<string, string>;
  /** A folder that keeps each window's callgrind dump and the perf map, for bench/instruction-profile.ts. */
  keepDumps?: string | null;
  log(message: string): void;
}

export interface ClassCost {
  /** The request's own instructions (compiling, GC and timers left out), median over the rounds. */
  instructionsPerRequest: number;
  /** Each round's figure, in order. */
  rounds: number[];
  /** The figure by stage, each the median over the rounds (so their sum is close to, not exactly, the figure). */
  stages: Record<StageName, number>;
  stageRounds: Record<StageName, number>[];
}

export interface CostReport {
  classes: Record<CostClass, ClassCost>;
  /** Every counted request of every class, garbage collection included (compiling and timers left out). */
  allClassesWithGc: number;
  /** Per counted request, over every window: what was left out of the class figures. */
  leftOut: { gc: number; compile: number; timers: number };
  requestsPerClass: number;
  seconds: number;
}

/** No deadline: under valgrind even the config's maximum (50 ms) fires while V8 compiles. */
const COUNTING_DEADLINE_MICROS = '0';
/**
 * No shedding: under valgrind a request takes long enough that the next one, sent as soon as its reply is read,
 * lands in the same event-loop turn's clock past its 1 ms budget, and would be shed without being decided.
 */
const COUNTING_SHED_AFTER_MICROS = '0';
/**
 * The decision log ships a block when it is full (inside a request, counted) or at the flush timer. Served at
 * thousands of requests a second, blocks fill first; under valgrind the timer would ship every few dozen requests,
 * and a GC it triggers is subtracted twice (as GC and as timer work), which made rounds come out 10-30 % low.
 */
const COUNTING_FLUSH_MILLIS = '60000';

export async function measureCost(messages: ClassMessages, options: CostOptions): Promise<CostReport> {
  const started = performance.now();
  const kind = options.kind ?? 'engine';
  const session = new CallgrindSession(options.keepDumps ? join(options.keepDumps, kind) : null);
  const server = await startServer(kind, {
    cpus: null,
    cpuProfileDir: null,
    root: options.root,
    // The perf map costs nothing per request: V8 appends to it only when it generates code.
    nodeFlags: ['--predictable', '--perf-basic-prof'],
    wrap: (argv) => session.wrap(argv),
    // Attribution reads the log on the main thread, a block at a time: its work would land in whichever window a block
    // is read in. It is not the request's; bench/attribution.ts measures it per record and per event.
    engineEnv: {
      ...options.env,
      ...CallgrindSession.ENV,
      RTA_APP_THREADS: '1',
      RTA_SCORE_DEADLINE_MICROS: COUNTING_DEADLINE_MICROS,
      RTA_SHED_AFTER_MICROS: COUNTING_SHED_AFTER_MICROS,
      RTA_DECISION_LOG_FLUSH_MS: COUNTING_FLUSH_MILLIS,
      RTA_ATTRIBUTION: 'off',
    },
  });
  let client: SequentialClient | null = null;
  try {
    session.attach(server.pid);
    options.log(`${options.root}: ${kind} server up under callgrind in ${((performance.now() - started) / 1000).toFixed(0)} s, warming up`);
    client = await SequentialClient.connect(server.host, server.port);
    for (let pass = 0; pass < options.warmupPasses; pass++) for (const name of COST_CLASSES) await client.send(messages[name]);
    session.instrumentation(true);

    const classes = Object.fromEntries(COST_CLASSES.map((name) => [name, { instructionsPerRequest: 0, rounds: [], stages: {}, stageRounds: [] }])) as unknown as Record<CostClass, ClassCost>;
    const sum = { total: 0, compile: 0, gc: 0, timers: 0, requests: 0 };
    for (let round = 0; round < options.rounds; round++) {
      for (const name of COST_CLASSES) {
        session.zero();
        const notOk = await client.send(messages[name]);
        const window = session.dump(`${name}-round${round + 1}`);
        if (notOk > 0) throw new Error(`${name}: ${notOk} of ${messages[name].length} replies were not 200`);
        const requests = messages[name].length;
        classes[name].rounds.push((window.total - window.compile - window.gc - window.timers) / requests);
        classes[name].stageRounds.push(Object.fromEntries(Object.entries(stagesOf(window)).map(([stage, n]) => [stage, n / requests])) as Record<StageName, number>);
        for (const key of ['total', 'compile', 'gc', 'timers'] as const) sum[key] += window[key];
        sum.requests += messages[name].length;
      }
    }

    if (server.adminUrl !== null) {
      const metrics = parsePrometheusText(await (await fetch(`${server.adminUrl}/metrics`)).text());
      const fallbacks = sumSamples(metrics, 'rta_deadline_fallbacks_total');
      if (fallbacks > 0) throw new Error(`${fallbacks} requests hit the scoring deadline under valgrind: the count is not of the normal path`);
      const shed = sumSamples(metrics, 'rta_requests_total', { outcome: 'shed' });
      if (shed > 0) throw new Error(`${shed} requests were shed under valgrind: the count is not of the normal path`);
    }
    for (const cost of Object.values(classes)) {
      cost.instructionsPerRequest = spread(cost.rounds).median;
      for (const stage of STAGE_NAMES) cost.stages[stage] = spread(cost.stageRounds.map((r) => r[stage])).median;
    }
    return {
      classes,
      allClassesWithGc: (sum.total - sum.compile - sum.timers) / sum.requests,
      leftOut: { gc: sum.gc / sum.requests, compile: sum.compile / sum.requests, timers: sum.timers / sum.requests },
      requestsPerClass: messages.ping.length,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    client?.close();
    await server.stop();
    session.close();
  }
}
