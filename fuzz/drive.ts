import { performance } from 'node:perf_hooks';
import { DECISIONS_ENV, type EngineProcess } from '../test/support/engine-process.js';
import { RawConnection, rawPost, type RawReply } from '../test/support/raw-http.js';
import { metricSum, scrape } from '../test/support/rta-client.js';
import type { FuzzInput } from './inputs.js';
import { judge } from './judge.js';
import { predict, type Expected } from './reference.js';

/**
 * Sends inputs to the real engine over keep-alive connections, one request in flight on each, judges every reply,
 * and afterwards checks the engine itself: still running, healthy, and its own counts agreeing with what the
 * fuzzer saw.
 */

export const MAX_BODY_BYTES = 65_536;

/** How the engine under fuzzing is started (test/support/engine-process.ts startEngine). */
export const FUZZ_ENGINE_ENV: Record<string, string> = {
  // No shedding and no deadline at all (0, not merely a long one), so that a code 6 can only mean something threw
  // while deciding: those two answer by time and load, not by input.
  ...DECISIONS_ENV,
  RTA_SCORE_DEADLINE_MICROS: '0',
  // Set rather than assumed, since the judgement depends on it (the default).
  RTA_MAX_BODY_BYTES: String(MAX_BODY_BYTES),
  // One serving thread: on two cores the other one runs the fuzzer.
  RTA_APP_THREADS: '1',
};

export interface Finding {
  input: FuzzInput;
  expected: Expected[];
  outcome: string;
  problems: string[];
}

export interface FuzzStats {
  inputs: number;
  byDecoder: Map<string, number>;
  byMutation: Map<string, number>;
  byOutcome: Map<string, number>;
  /** Inputs that got something they must not; `findings` keeps the first MAX_FINDINGS_KEPT of them. */
  failed: number;
  findings: Finding[];
  latencyMs: { p50: number; p99: number; max: number };
  elapsedMs: number;
}

export interface FuzzOptions {
  connections: number;
  /** A reply slower than this is a hang. */
  timeoutMs: number;
  onProgress?: (done: number, failed: number) => void;
}

const MAX_FINDINGS_KEPT = 1000;

export async function fuzzEngine(engine: EngineProcess, count: number, inputAt: (index: number) => FuzzInput, options: FuzzOptions): Promise<FuzzStats> {
  const stats: FuzzStats = {
    inputs: 0,
    byDecoder: new Map(),
    byMutation: new Map(),
    byOutcome: new Map(),
    failed: 0,
    findings: [],
    latencyMs: { p50: 0, p99: 0, max: 0 },
    elapsedMs: 0,
  };
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();

  const exited = () => engine.child.exitCode !== null || engine.child.signalCode !== null;
  const record = (input: FuzzInput, expected: Expected[], outcome: string, problems: string[]) => {
    stats.inputs++;
    bump(stats.byDecoder, input.decoder);
    bump(stats.byMutation, input.mutation);
    bump(stats.byOutcome, outcome);
    flag(input, expected, outcome, problems);
    if (stats.inputs % 50_000 === 0) options.onProgress?.(stats.inputs, stats.failed);
  };
  const flag = (input: FuzzInput, expected: Expected[], outcome: string, problems: string[]) => {
    if (problems.length === 0) return;
    stats.failed++;
    if (stats.findings.length < MAX_FINDINGS_KEPT) stats.findings.push({ input, expected, outcome, problems });
  };

  const worker = async () => {
    let connection: RawConnection | null = null;
    /** The last input answered on `connection`: a close noticed by the next one may be its doing. */
    let previous: { input: FuzzInput; expected: Expected[]; outcome: string } | null = null;
    for (let index = next++; index < count; index = next++) {
      const input = inputAt(index);
      const expected = predict(input.decoder, input.body, MAX_BODY_BYTES);
      const sentAt = performance.now();
      let exchange = await sendOnce(engine, connection, input, options.timeoutMs);
      if (exchange.failure === 'closed without a reply' && previous !== null) {
        // A server that closes after a reply is only seen on the next request: tell which of the two it was.
        exchange = await sendOnce(engine, null, input, options.timeoutMs);
        if (exchange.reply !== null) flag(previous.input, previous.expected, previous.outcome, ['the server closed the connection after answering it']);
      }
      latencies.push(performance.now() - sentAt);
      let verdict = judge(input.path, input.decoder, expected, exchange.reply, exchange.failure);
      if (exchange.reply === null && exited()) {
        verdict = { ...verdict, problems: [...verdict.problems, `the engine process exited (code ${engine.child.exitCode}, signal ${engine.child.signalCode})`] };
        next = count;
      }
      record(input, expected, verdict.outcome, verdict.problems);
      connection = exchange.connection;
      previous = connection === null ? null : { input, expected, outcome: verdict.outcome };
    }
    connection?.destroy();
  };
  await Promise.all(Array.from({ length: options.connections }, worker));

  stats.elapsedMs = performance.now() - started;
  const sorted = Float64Array.from(latencies).sort();
  stats.latencyMs = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 };
  return stats;
}

interface Exchange {
  reply: RawReply | null;
  failure: string | null;
  /** Still usable for the next request, or null. */
  connection: RawConnection | null;
}

async function sendOnce(engine: EngineProcess, open: RawConnection | null, input: FuzzInput, timeoutMs: number): Promise<Exchange> {
  let connection: RawConnection;
  try {
    connection = open ?? (await RawConnection.open(engine.mediaUrl));
  } catch (error) {
    return { reply: null, failure: `cannot connect: ${(error as Error).message}`, connection: null };
  }
  const headers: Record<string, string> = input.contentType === '' ? {} : { 'Content-Type': input.contentType };
  // A body over the limit is declared, not sent: the engine must refuse it on its Content-Length alone, and a body
  // still arriving when it closes the connection would turn its 413 into a reset.
  const request = input.body.length > MAX_BODY_BYTES ? rawPost(input.path, '', { headers, contentLength: input.body.length }) : rawPost(input.path, input.body, { headers });
  const startedAt = performance.now();
  // Errors show up as a reply that never comes.
  connection.write(request).catch(() => {});
  try {
    const reply = await readReply(connection, timeoutMs);
    // 413 closes the connection by design.
    if (reply.status === 413) {
      connection.destroy();
      return { reply, failure: null, connection: null };
    }
    return { reply, failure: null, connection };
  } catch (error) {
    connection.destroy();
    if (performance.now() - startedAt >= timeoutMs) return { reply: null, failure: `nothing within ${timeoutMs} ms`, connection: null };
    if (await connection.closedByServer(0)) return { reply: null, failure: 'closed without a reply', connection: null };
    return { reply: null, failure: (error as Error).message, connection: null };
  }
}

/**
 * A reply within `timeoutMs`. Timers run before sockets are read when an event loop catches up, so a fuzzer busy
 * for a moment would see replies already waiting in its socket as late: one more short read tells them apart.
 */
async function readReply(connection: RawConnection, timeoutMs: number): Promise<RawReply> {
  try {
    return await connection.readReply(timeoutMs);
  } catch (error) {
    if (await connection.closedByServer(0)) throw error;
    return connection.readReply(50);
  }
}

/**
 * What a crash or a swallowed exception leaves behind even when every reply looked right: the process gone or
 * unhealthy, errors counted by the engine's error boundary, or refusals and answers the engine counted
 * differently from what the fuzzer received.
 */
export async function checkEngine(engine: EngineProcess, before: string, stats: FuzzStats): Promise<string[]> {
  if (engine.child.exitCode !== null || engine.child.signalCode !== null) {
    return [`the engine process exited (code ${engine.child.exitCode}, signal ${engine.child.signalCode})`];
  }
  const problems: string[] = [];
  const health = await fetch(`${engine.mediaUrl}/healthz`);
  if (health.status !== 200) problems.push(`/healthz answered ${health.status}`);
  const after = await scrape(engine);
  const delta = (name: string, labels: Record<string, string> = {}) => metricSum(after, name, labels) - metricSum(before, name, labels);
  const errors = delta('rta_request_errors_total');
  if (errors !== 0) problems.push(`rta_request_errors_total rose by ${errors}: something threw while answering (see the engine log)`);
  const refused = new Map<string, number>();
  let answered = 0;
  for (const [outcome, n] of stats.byOutcome) {
    const refusal = /^(400|413) (\w+)$/.exec(outcome);
    if (refusal) bump(refused, refusal[2]!, n);
    else if (outcome.startsWith('200')) answered += n;
  }
  for (const [reason, n] of refused) {
    const counted = delta('rta_rejected_inputs_total', { reason });
    if (counted !== n) problems.push(`rta_rejected_inputs_total{reason="${reason}"} rose by ${counted}, the fuzzer got ${n}`);
  }
  const answersCounted = delta('rta_requests_total');
  if (answersCounted !== answered) problems.push(`rta_requests_total rose by ${answersCounted}, the fuzzer got ${answered} answers`);
  return problems;
}

function bump(counts: Map<string, number>, key: string, by = 1): void {
  counts.set(key, (counts.get(key) ?? 0) + by);
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
