import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from '../config.js';
import { log } from '../observe/log.js';
import { Verdict } from '../strategy/book.js';
import { parseEventBatch, type OutcomeEvent, type RefusedEvent } from './events.js';
import { DecisionLogFollower } from './follower.js';
import type { RedisClient } from '../store/redis-client.js';
import { LocalDecisions, type Claim, type Decision, type DecisionStore } from './decision-store.js';
import { DecisionMemory, type DecidedDevice, type NewTake } from './memory.js';
import { RedisDecisions } from './redis-decisions.js';
import { OutcomeLog } from './outcome-log.js';
import { scanDecisionRecord, scannedRecord, scoreAt } from './record-scan.js';
import { AttributionResults, type ResultDimension, type ResultRow } from './results.js';

/**
 * The join of outcome events to decisions (README "Attribution"). Decisions come from the decision log, which the
 * serving threads already write; this runs on the main thread, so no request does its work (its cost to the serving
 * threads' latency is measured in the README). Each
 * taken decision is remembered for the window; each event is joined to the take it belongs to, once, and kept on
 * disk so a restart rebuilds the same results.
 */

/** What POST /events answers: how each event of the batch was taken. */
export interface EventsOutcome {
  /** Joined to a take and counted. */
  joined: number;
  /** The same event (trace id, strategy, stage) joined before: ignored. */
  duplicates: number;
  /** Later than the attribution window after their decision (or older than the window, decision forgotten): dropped. */
  late: number;
  /** No remembered decision under that media and trace id. */
  unmatched: number;
  refused: number;
  /** The first refusals, with their line and reason. */
  refusals: RefusedEvent[];
}

/** An event joined to its take, with the device the decision was for (null when the request had no usable id). */
export interface JoinedOutcome {
  event: OutcomeEvent;
  strategyId: string;
  device: DecidedDevice | null;
}

export interface AttributionReport {
  /** The oldest decision counted: the oldest the decision log held when the engine started, or later. */
  since: string | null;
  windowDays: number;
  /** In this process; null with the shared memory in Redis (its keys expire by themselves). */
  rememberedDecisions: number | null;
  oldestDecision: string | null;
  rows: ResultRow[];
}

type Refusal = { reason: string; message: string };
type JoinResult = 'joined' | 'duplicate' | 'late' | 'unmatched' | Refusal;

/** Shown per event refusal in an answer; the count covers the rest. */
const MAX_REFUSALS_SHOWN = 100;
/** How far before its decision an event may be stamped (the media's clock against ours). */
const EARLY_EVENT_MS = 5 * 60_000;

/** Which of the decision's takes the event is for: the one it names, or the only one. */
function takeFor(takes: readonly NewTake[], event: OutcomeEvent): number | Refusal {
  const taken = () => takes.map((t) => t.strategyId).join(', ');
  if (event.strategyId === null) {
    if (takes.length === 1) return 0;
    return { reason: 'strategy_ambiguous', message: `trace ${event.traceId} was taken by several strategies (${taken()}): say strategy_id` };
  }
  const index = takes.findIndex((t) => t.strategyId === event.strategyId);
  if (index >= 0) return index;
  return { reason: 'strategy_not_taken', message: `trace ${event.traceId} was taken by ${taken()}, not by ${event.strategyId}` };
}

export class Attribution {
  private readonly decisions: DecisionStore;
  private readonly results: AttributionResults;
  private readonly follower: DecisionLogFollower;
  private readonly outcomeLog: OutcomeLog;
  private readonly windowMs: number;
  /** Model version -> the risk model's place among its scores. */
  private readonly riskIndex = new Map<string, number>();
  private readonly scanned = scannedRecord();
  /** Reused from record to record: the decision stores copy what they keep. */
  private readonly takes: NewTake[] = [];
  private readonly device: DecidedDevice = { keys: new Uint8Array(0), at: 0, known: false, os: 0 };
  private readonly remembered: Omit<Decision, 'ref'> = { timeMs: 0, risk: 0, book: '', takes: this.takes, device: null };
  private readonly outcomes: Counter<'result'>;
  private readonly refusedEvents: Counter<'reason'>;
  private recordsRead = 0;
  /** Hears each event joined from a POST (not the start's replay): the online learner's labels. */
  outcomeListener: ((outcome: JoinedOutcome) => void) | null = null;
  private firstDecisionMs: number | null = null;
  private ready: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly config: Config['attribution'],
    logDir: string,
    private readonly medias: readonly string[],
    registry: Registry,
    /** With several nodes: the connection to the shared decision memory (attribution.redis). */
    shared: RedisClient | null = null,
  ) {
    this.windowMs = config.windowDays * 86_400_000;
    const forgotten = new Counter({
      name: 'rta_attribution_forgotten_decisions_total',
      help: 'Taken decisions forgotten: expired (older than the attribution window) or full (attribution.maxDecisions reached: the window is shorter than configured).',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
    if (shared) {
      const errors = new Counter({ name: 'rta_attribution_shared_memory_errors_total', help: 'Failed command batches on the shared decision memory (Redis), by operation (logged).', labelNames: ['op'] as const, registers: [registry] });
      this.decisions = new RedisDecisions(shared, config.redis!.keyPrefix, this.windowMs, (op, error) => {
        errors.inc({ op });
        log('error', 'attribution_shared_memory_failed', { op, message: error.message });
      });
    } else this.decisions = new LocalDecisions(new DecisionMemory(config.maxDecisions, this.windowMs, (reason, count) => forgotten.inc({ reason }, count)));
    this.results = new AttributionResults(config.maxResultRows, registry);
    this.outcomeLog = new OutcomeLog(config.dir, this.windowMs);
    this.outcomes = new Counter({
      name: 'rta_attribution_events_total',
      help: 'Outcome events posted, by result: joined, duplicate, late, unmatched (no remembered decision), refused.',
      labelNames: ['result'] as const,
      registers: [registry],
    });
    this.refusedEvents = new Counter({
      name: 'rta_attribution_refused_events_total',
      help: 'Outcome events refused, by reason (invalid_json, invalid_event, before_decision, strategy_not_taken, strategy_ambiguous).',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
    const decisions = this.decisions;
    const attribution = this;
    new Counter({
      name: 'rta_attribution_log_records_total',
      help: 'Decision log records read by attribution.',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(attribution.recordsRead);
      },
    });
    new Gauge({ name: 'rta_attribution_remembered_decisions', help: 'Taken decisions held for attribution in this process (0 with the shared memory in Redis).', registers: [registry], collect() { this.set(decisions.size ?? 0); } });
    new Gauge({
      name: 'rta_attribution_oldest_decision_age_seconds',
      help: 'Age of the oldest remembered decision: below the configured window once attribution.maxDecisions is reached.',
      registers: [registry],
      collect() {
        const oldest = decisions.oldestTimeMs;
        this.set(oldest === null ? 0 : (Date.now() - oldest) / 1000);
      },
    });
    new Gauge({
      name: 'rta_attribution_log_backlog_bytes',
      help: 'Decision log bytes attribution had not read yet, as its latest read found them: about a second of log when it keeps up; growing when it does not.',
      registers: [registry],
      collect() {
        this.set(attribution.follower.backlogBytes);
      },
    });
    const readErrors = new Counter({ name: 'rta_attribution_log_read_errors_total', help: 'Failed reads of the decision log by attribution (logged).', registers: [registry] });
    this.follower = new DecisionLogFollower(
      logDir,
      (bytes, start, end) => this.takeRecord(bytes, start, end),
      (error) => {
        readErrors.inc();
        log('error', 'attribution_log_read_failed', { message: error.message });
      },
    );
  }

  /**
   * Reads the decision log and replays the kept events (a restart's results are those before it), then follows the
   * log; events posted and reports asked for meanwhile wait for the replay.
   */
  start(): void {
    this.ready = this.readLog()
      .then(() => this.replay())
      .catch((error: Error) => log('error', 'attribution_replay_failed', { message: error.message }));
    const tick = () => {
      this.decisions.forgetOlderThan(Date.now());
      void this.readLog().then(() => {
        if (this.timer) this.timer = setTimeout(tick, this.config.followMillis).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Parses and joins one batch; reads the log first, so decisions already written are found. */
  async takeEvents(body: Uint8Array, contentType: string): Promise<EventsOutcome> {
    const nowMs = Date.now();
    const batch = parseEventBatch(body, contentType, this.medias, nowMs);
    await this.ready;
    await this.readLog();
    const counts = { joined: 0, duplicate: 0, late: 0, unmatched: 0, refused: 0 };
    const refusals: RefusedEvent[] = [];
    const refuse = (refusal: RefusedEvent) => {
      counts.refused++;
      this.refusedEvents.inc({ reason: refusal.reason });
      if (refusals.length < MAX_REFUSALS_SHOWN) refusals.push(refusal);
    };
    for (const refusal of batch.refused) refuse(refusal);
    const joined: { event: OutcomeEvent; strategyId: string }[] = [];
    const results = await this.join(batch.events, nowMs, false, (outcome) => {
      joined.push(outcome);
      this.outcomeListener?.(outcome);
    });
    results.forEach((result, i) => {
      if (typeof result === 'object') refuse({ line: batch.events[i]!.line, ...result });
      else counts[result]++;
    });
    for (const [result, count] of Object.entries(counts)) if (count > 0) this.outcomes.inc({ result }, count);
    const outcome: EventsOutcome = { joined: counts.joined, duplicates: counts.duplicate, late: counts.late, unmatched: counts.unmatched, refused: counts.refused, refusals };
    if (outcome.refused > 0) log('warn', 'events_refused', { refused: outcome.refused, first: outcome.refusals[0] });
    await this.outcomeLog.append(joined, nowMs);
    return outcome;
  }

  /** Waits for the start's replay, so a report is never of half the log. */
  async report(by: readonly ResultDimension[]): Promise<AttributionReport> {
    await this.ready;
    const oldest = this.decisions.oldestTimeMs;
    return {
      since: this.firstDecisionMs === null ? null : new Date(this.firstDecisionMs).toISOString(),
      windowDays: this.config.windowDays,
      rememberedDecisions: this.decisions.size,
      oldestDecision: oldest === null ? null : new Date(oldest).toISOString(),
      rows: this.results.report(by),
    };
  }

  /** Cost and approvals per strategy since the start of the results; waits for the replay like report(). */
  async strategyTotals(): Promise<ReadonlyMap<string, { costFen: number; approvals: number }>> {
    await this.ready;
    return this.results.totals;
  }

  private async replay(): Promise<void> {
    const nowMs = Date.now();
    let joined = 0;
    for await (const lines of this.outcomeLog.past(nowMs)) {
      const results = await this.join(parseEventBatch(lines, 'application/x-ndjson', this.medias, nowMs).events, nowMs, true, () => {});
      joined += results.filter((r) => r === 'joined').length;
    }
    log('info', 'attribution_ready', { decisions: this.decisions.size, replayedEvents: joined });
  }

  /** Every decision is counted per listed strategy; only one that took the device for someone is remembered. */
  private takeRecord(bytes: Buffer, start: number, end: number): void {
    this.recordsRead++;
    const r = this.scanned;
    scanDecisionRecord(bytes, start, end, r);
    // Joint-debugging traffic is never learned from.
    if (r.test) return;
    if (this.firstDecisionMs === null || r.timeMs < this.firstDecisionMs) this.firstDecisionMs = r.timeMs;
    const takes = this.takes;
    let taken = 0;
    for (let i = 0; i < r.strategyCount; i++) {
      const isTaken = r.verdicts[i] === Verdict.TAKEN;
      this.results.countDecision(r.strategyIds[i]!, r.armNames[i]!, r.bookVersion, isTaken ? r.creativeIds[i]! : null);
      if (!isTaken) continue;
      const take = takes[taken] ?? (takes[taken] = { strategyId: '', arm: '', creativeId: 0 });
      take.strategyId = r.strategyIds[i]!;
      take.arm = r.armNames[i]!;
      take.creativeId = r.creativeIds[i]!;
      taken++;
    }
    takes.length = taken;
    if (taken === 0 || r.timeMs < Date.now() - this.windowMs) return;
    const decision = this.remembered;
    decision.timeMs = r.timeMs;
    decision.risk = scoreAt(bytes, r, this.riskIndexOf(r.modelVersion));
    decision.book = r.bookVersion;
    if (r.deviceKeyAt < 0) decision.device = null;
    else {
      const device = (decision.device = this.device);
      device.keys = bytes;
      device.at = r.deviceKeyAt;
      device.known = r.known;
      device.os = r.os;
    }
    this.decisions.remember(r.media, r.traceId, decision);
  }

  /** The log up to its end, and what it held written to the decision store. */
  private async readLog(): Promise<void> {
    await this.follower.read();
    await this.decisions.flush();
  }

  /**
   * Joins a batch: finds the decisions, checks each event against its own, then claims the takes' funnel stages
   * (the first claim joins, a later one is a duplicate). A replay counts its kept events whatever their claims say:
   * they were joined before, and a shared memory still holds their claims.
   */
  private async join(events: readonly OutcomeEvent[], nowMs: number, replay: boolean, onJoined: (outcome: JoinedOutcome) => void): Promise<JoinResult[]> {
    const decisions = await this.decisions.find(events);
    const results: JoinResult[] = new Array<JoinResult>(events.length);
    const claims: Claim[] = [];
    const claimed: number[] = [];
    events.forEach((event, i) => {
      const decision = decisions[i];
      if (!decision) results[i] = event.timeMs < nowMs - this.windowMs ? 'late' : 'unmatched';
      else if (event.timeMs - decision.timeMs > this.windowMs) results[i] = 'late';
      else if (event.timeMs < decision.timeMs - EARLY_EVENT_MS)
        results[i] = { reason: 'before_decision', message: `event_time ${new Date(event.timeMs).toISOString()} is before its decision (${new Date(decision.timeMs).toISOString()})` };
      else {
        const take = takeFor(decision.takes, event);
        if (typeof take === 'object') results[i] = take;
        else {
          claims.push({ ref: decision.ref, media: event.media, traceId: event.traceId, take, strategyId: decision.takes[take]!.strategyId, kind: event.kind });
          claimed.push(i);
        }
      }
    });
    const firsts = await this.decisions.claim(claims);
    claims.forEach((claim, k) => {
      const i = claimed[k]!;
      if (!firsts[k] && !replay) {
        results[i] = 'duplicate';
        return;
      }
      const event = events[i]!;
      const decision = decisions[i]!;
      const take = decision.takes[claim.take]!;
      this.results.countEvent(take.strategyId, take.arm, take.creativeId, decision.book, event.kind, event.costFen, event.valueFen, decision.risk < this.config.lowRiskBelow);
      results[i] = 'joined';
      onJoined({ event, strategyId: take.strategyId, device: decision.device });
    });
    return results;
  }

  private riskIndexOf(modelVersion: string): number {
    let index = this.riskIndex.get(modelVersion);
    if (index === undefined) {
      index = modelVersion.split(',').findIndex((m) => m.split('@')[0] === this.config.riskModel);
      this.riskIndex.set(modelVersion, index);
    }
    return index;
  }
}
