import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Histogram } from 'hdr-histogram-js';
import { DemoRandom } from '../../src/store/demo-population.js';
import { microsecondHistogram, percentilesOf, type LatencyPercentiles } from './latency.js';
import { ResponseReader } from './response-reader.js';
import type { EncodedRequest } from './traffic.js';

/**
 * Fixed-rate (open-loop) load over raw keep-alive sockets, one request at a time per connection.
 *
 * Arrivals follow a Poisson process at the target rate, precomputed from a seed before the run. A request is sent at
 * its scheduled time on any idle connection, or as soon as one frees up. Its latency runs from the SCHEDULED time to
 * the last byte of its response, read with performance.now() (the monotonic high-resolution clock, sub-microsecond;
 * unlike process.hrtime.bigint() it allocates almost nothing, so the generator's own GC pauses stay rare), so time
 * spent waiting for a connection or behind a slow response counts: a stalled server cannot hide its queue by slowing
 * the client down (coordinated omission).
 * Latencies go into an HDR histogram at 1 us resolution. How late each send left against its schedule while a
 * connection was free (dispatch lag) is recorded too: it shows whether the generator itself kept up. Sends that had
 * to wait for a connection are counted apart: that wait is the server's doing.
 */

export interface OpenLoopPlan {
  rate: number;
  durationSeconds: number;
  /** Seeds the arrival times. */
  seed: number;
  /** How long to wait for the last responses before counting them as timeouts. */
  graceSeconds: number;
}

export interface OpenLoopResult {
  offeredRate: number;
  /** Responses that arrived within the scheduled window, per second of it: below the offered rate when the server falls behind. */
  achievedRate: number;
  scheduled: number;
  /** Responses received, during the window or after it (within the grace time). */
  completed: number;
  /** Sends that found every connection busy at their scheduled time and left when a response freed one. */
  waitedForConnection: number;
  non200: number;
  /** Connection errors and responses that could not be read. */
  errors: number;
  timeouts: number;
  latency: LatencyPercentiles;
  dispatchLag: LatencyPercentiles;
}

class Connection {
  readonly reader: ResponseReader;
  /** Index in the schedule of the request awaiting its response, or -1 when idle. */
  pending = -1;
  alive = true;

  constructor(
    readonly socket: Socket,
    onResponse: (connection: Connection, status: number) => void,
  ) {
    this.reader = new ResponseReader((status) => onResponse(this, status));
  }
}

/** Further ahead than this the loop sleeps on a timer (millisecond granularity); closer, it spins to stay on time. */
const SLEEP_THRESHOLD_MS = 2;

export class OpenLoopClient {
  private readonly connections: Connection[] = [];
  private run: ActiveRun | null = null;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly connectionCount: number,
    private readonly requests: readonly EncodedRequest[],
  ) {
    if (requests.length === 0) throw new Error('open-loop load needs at least one request');
  }

  /** Opens connections up to the configured count, replacing any the server closed since the last run. */
  async connect(): Promise<void> {
    for (let i = this.connections.length - 1; i >= 0; i--) if (!this.connections[i]!.alive) this.connections.splice(i, 1);
    const opening: Promise<void>[] = [];
    while (this.connections.length + opening.length < this.connectionCount) opening.push(this.open());
    await Promise.all(opening);
  }

  private open(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port, noDelay: true });
      const connection = new Connection(socket, (c, status) => this.run?.onResponse(c, status));
      socket.once('connect', () => {
        this.connections.push(connection);
        resolve();
      });
      socket.on('data', (chunk: Buffer) => this.onData(connection, chunk));
      socket.on('error', (err) => {
        if (!connection.alive) return;
        this.lose(connection);
        if (!this.connections.includes(connection)) reject(new Error(`cannot connect to ${this.host}:${this.port}: ${err.message}`));
      });
      socket.on('close', () => this.lose(connection));
    });
  }

  close(): void {
    for (const connection of this.connections) {
      connection.alive = false;
      connection.socket.destroy();
    }
    this.connections.length = 0;
  }

  async runAt(plan: OpenLoopPlan, record: boolean): Promise<OpenLoopResult> {
    await this.connect();
    const run = new ActiveRun(plan, record, this.requests);
    this.run = run;
    for (const connection of this.connections) run.idle.push(connection);
    const result = await run.finished;
    this.run = null;
    // A connection still waiting for a timed-out response would hand it to the next run: drop it.
    for (const connection of this.connections) {
      if (connection.pending < 0) continue;
      connection.pending = -1;
      connection.alive = false;
      connection.socket.destroy();
    }
    return result;
  }

  private onData(connection: Connection, chunk: Buffer): void {
    try {
      connection.reader.feed(chunk);
    } catch {
      this.lose(connection);
      connection.socket.destroy();
    }
  }

  private lose(connection: Connection): void {
    if (!connection.alive) return;
    connection.alive = false;
    this.run?.onLost(connection);
  }
}

class ActiveRun {
  readonly idle: Connection[] = [];
  readonly finished: Promise<OpenLoopResult>;
  private readonly schedule: Float64Array;
  private readonly startMs: number;
  private readonly latency: Histogram;
  private readonly lag: Histogram;
  private next = 0;
  private inFlight = 0;
  private completed = 0;
  private completedInWindow = 0;
  private waitedForConnection = 0;
  private non200 = 0;
  private errors = 0;
  private done = false;
  private resolve: (result: OpenLoopResult) => void = () => {};
  private readonly deadline: NodeJS.Timeout;
  private readonly pumpLater = () => this.pump();

  constructor(
    private readonly plan: OpenLoopPlan,
    private readonly record: boolean,
    private readonly requests: readonly EncodedRequest[],
  ) {
    this.schedule = poissonSchedule(plan.rate, plan.durationSeconds, plan.seed);
    this.latency = microsecondHistogram();
    this.lag = microsecondHistogram();
    this.finished = new Promise((resolve) => (this.resolve = resolve));
    this.startMs = performance.now() + 1;
    this.deadline = setTimeout(() => this.finish(), (plan.durationSeconds + plan.graceSeconds) * 1000 + 1);
    setImmediate(this.pumpLater);
  }

  private pump(): void {
    if (this.done) return;
    this.dispatchDue(performance.now(), false);
    if (this.next >= this.schedule.length) return;
    if (this.idle.length === 0 && this.inFlight === 0) {
      this.errors += this.schedule.length - this.next;
      this.next = this.schedule.length;
      this.finish();
      return;
    }
    const untilNext = this.startMs + this.schedule[this.next]! - performance.now();
    if (untilNext > SLEEP_THRESHOLD_MS) setTimeout(this.pumpLater, untilNext - SLEEP_THRESHOLD_MS);
    else setImmediate(this.pumpLater);
  }

  /** Sends every request that is due, while a connection is idle; `starved` when the only one is the one a response just freed. */
  private dispatchDue(now: number, starved: boolean): void {
    while (this.next < this.schedule.length && this.idle.length > 0 && this.startMs + this.schedule[this.next]! <= now) {
      const connection = this.idle.pop()!;
      const index = this.next++;
      connection.pending = index;
      this.inFlight++;
      if (starved) this.waitedForConnection++;
      else if (this.record) this.lag.recordValue(microsSince(this.startMs + this.schedule[index]!, now));
      connection.socket.write(this.requests[index % this.requests.length]!.message);
    }
  }

  onResponse(connection: Connection, status: number): void {
    if (connection.pending < 0) return;
    const now = performance.now();
    if (this.record) this.latency.recordValue(microsSince(this.startMs + this.schedule[connection.pending]!, now));
    if (status !== 200) this.non200++;
    this.completed++;
    if (now - this.startMs <= this.plan.durationSeconds * 1000) this.completedInWindow++;
    this.inFlight--;
    connection.pending = -1;
    const starved = this.idle.length === 0;
    this.idle.push(connection);
    this.dispatchDue(now, starved);
    if (this.next >= this.schedule.length && this.inFlight === 0) this.finish();
  }

  onLost(connection: Connection): void {
    const at = this.idle.indexOf(connection);
    if (at >= 0) this.idle.splice(at, 1);
    if (connection.pending >= 0) {
      this.errors++;
      this.inFlight--;
      connection.pending = -1;
    }
    if (this.next >= this.schedule.length && this.inFlight === 0) this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.deadline);
    const scheduled = this.schedule.length;
    const unsent = scheduled - this.next;
    this.resolve({
      offeredRate: this.plan.rate,
      achievedRate: this.completedInWindow / this.plan.durationSeconds,
      scheduled,
      completed: this.completed,
      waitedForConnection: this.waitedForConnection,
      non200: this.non200,
      errors: this.errors,
      timeouts: this.inFlight + unsent,
      latency: percentilesOf(this.latency),
      dispatchLag: percentilesOf(this.lag),
    });
  }
}

/** Whole microseconds from `fromMs` to `toMs`, at least 1 (the histogram's lowest value). */
function microsSince(fromMs: number, toMs: number): number {
  return Math.max(1, Math.round((toMs - fromMs) * 1000));
}

/** Arrival offsets (ms from the start) of a Poisson process: exponential gaps with mean 1/rate. */
export function poissonSchedule(rate: number, durationSeconds: number, seed: number): Float64Array {
  if (!(rate > 0) || !(durationSeconds > 0)) throw new Error(`rate ${rate}/s for ${durationSeconds} s schedules nothing`);
  const random = new DemoRandom(seed);
  const horizon = durationSeconds * 1000;
  const meanGap = 1000 / rate;
  const times: number[] = [];
  for (let t = -Math.log(1 - random.unit()) * meanGap; t < horizon; t += -Math.log(1 - random.unit()) * meanGap) times.push(t);
  return Float64Array.from(times);
}
