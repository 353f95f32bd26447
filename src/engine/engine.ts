import type { Config } from '../config.js';
import type { Metrics } from '../observe/metrics.js';
import type { ScoringJob } from '../scoring/pool.js';
import type { ProfileSchema } from '../store/profile-schema.js';
import type { StrategyBook, StrategyMask, StrategyOutcome } from '../strategy/book.js';
import type { DeviceView } from '../strategy/device-view.js';
import { DecisionCode, type BidContext, type Decision, type DeviceIdKind } from './types.js';
import { DEVICE_ID_KIND_NAMES } from './types.js';

/**
 * The protocol-free pipeline: BidContext -> device profile -> scores (worker threads) -> strategies -> Decision.
 * Everything before scoring runs inline; scoring is handed to the pool with a deadline, and whichever comes first,
 * scores or the deadline, produces exactly one decision for the sink.
 */

export interface DeviceStore {
  readonly records: Uint8Array;
  /** Byte offset of the device's record in `records`, or -1. */
  find(key: Uint8Array, keyOffset: number): number;
}

export interface Scorer {
  readonly modelNames: readonly string[];
  readonly modelVersion: string;
  submit(job: ScoringJob): void;
}

/** Where a decision goes: the server's in-flight request, which encodes it and writes the reply. */
export interface DecisionSink {
  deliver(context: BidContext, decision: Decision): void;
}

export interface EngineParts {
  config: Config['engine'];
  book: StrategyBook;
  store: DeviceStore;
  scorer: Scorer;
  profile: ProfileSchema;
  metrics: Metrics;
}

const REASON_BY_CODE: Record<number, string> = {
  [DecisionCode.TAKE]: 'take',
  [DecisionCode.NO_STRATEGY_WANTS]: 'no_strategy_wants',
  [DecisionCode.EXISTING_BORROWER]: 'existing_borrower',
  [DecisionCode.BLACKLISTED]: 'blacklisted',
  [DecisionCode.HIGH_RISK]: 'high_risk',
  [DecisionCode.NO_USABLE_DEVICE_ID]: 'no_usable_device_id',
  [DecisionCode.DEADLINE_FALLBACK]: 'deadline_fallback',
};
const CODE_BY_EXCLUSION = {
  existing_borrower: DecisionCode.EXISTING_BORROWER,
  blacklisted: DecisionCode.BLACKLISTED,
  high_risk: DecisionCode.HIGH_RISK,
} as const;

export class Engine {
  readonly parts: EngineParts;
  /** Lookup preference: kind -> rank (lower first); kinds not configured are never used. */
  private readonly rankByKind: Int8Array;
  private readonly flagsField: { offset: number; bytes: number };
  private readonly deadlineMs: number;

  constructor(parts: EngineParts) {
    this.parts = parts;
    this.rankByKind = new Int8Array(8).fill(-1);
    const kindByName = Object.fromEntries(Object.entries(DEVICE_ID_KIND_NAMES).map(([kind, name]) => [name, Number(kind)]));
    parts.config.deviceIdOrder.forEach((name, rank) => (this.rankByKind[kindByName[name]!] = rank));
    const flags = parts.profile.field('flags');
    this.flagsField = { offset: flags.offset, bytes: flags.type === 'u8' ? 1 : flags.type === 'u16' ? 2 : 4 };
    this.deadlineMs = parts.config.scoreDeadlineMicros / 1000;
  }

  /** Decides for one request; `receivedAt` is performance.now() when its body was complete. */
  handle(context: BidContext, sink: DecisionSink, receivedAt: number): void {
    if (context.isPing) {
      sink.deliver(context, this.reject(DecisionCode.TAKE, 'ping'));
      return;
    }
    const request = new PendingRequest(this, context, sink, this.parts.book.bidStrategyCount);
    if (!this.locateDevice(request)) {
      sink.deliver(context, this.reject(DecisionCode.NO_USABLE_DEVICE_ID));
      return;
    }
    const screen = this.parts.book.screen(request, request.mask);
    if (screen.exclusion !== null) {
      sink.deliver(context, this.finish(request, { ...this.noStrategies(request), exclusion: screen.exclusion }));
      return;
    }
    if (screen.candidates === 0) {
      sink.deliver(context, this.finish(request, this.noStrategies(request)));
      return;
    }
    request.deadline = receivedAt + this.deadlineMs;
    this.parts.scorer.submit(request);
  }

  /** Tries the usable ids in the configured order; the first one in the store wins, else the device is unknown. */
  private locateDevice(request: PendingRequest): boolean {
    const { store, metrics } = this.parts;
    const ids = request.context.deviceIds;
    let bestRank = 127;
    let bestKey: Uint8Array | null = null;
    let foundRank = 127;
    for (const id of ids) {
      const rank = this.rankByKind[id.kind as DeviceIdKind]!;
      if (rank < 0) continue;
      if (rank < bestRank) {
        bestRank = rank;
        bestKey = id.key;
      }
      if (rank >= foundRank) continue;
      const offset = store.find(id.key, 0);
      if (offset >= 0) {
        foundRank = rank;
        request.known = true;
        request.records = store.records;
        request.recordOffset = offset;
        request.deviceKey = id.key;
      }
    }
    if (bestKey === null) return false;
    if (request.known) {
      request.flags = readFlags(store.records, request.recordOffset + this.flagsField.offset, this.flagsField.bytes);
      metrics.deviceLookups.inc({ result: 'known' });
    } else {
      request.deviceKey = bestKey;
      metrics.deviceLookups.inc({ result: 'unknown' });
    }
    return true;
  }

  /** Called by the request when its scores arrive. The scores buffer is only valid during this call. */
  scored(request: PendingRequest, scores: Float32Array, offset: number): void {
    request.scores = scores;
    request.scoresOffset = offset;
    const outcome = this.parts.book.decide(request, request.mask, request.deviceKey, 0, request.context.candidateAds);
    request.sink.deliver(request.context, this.finish(request, outcome));
  }

  /** Called by the request when its scores did not come back in time. */
  missedDeadline(request: PendingRequest): void {
    this.parts.metrics.deadlineFallbacks.inc({ media: request.context.media });
    const { book } = this.parts;
    if (this.parts.config.fallback === 'neutral') {
      const decision = this.finish(request, book.neutral(request.mask, request.deviceKey, 0));
      decision.reason = REASON_BY_CODE[DecisionCode.DEADLINE_FALLBACK]!;
      decision.cacheTtlSeconds = book.cacheTtlSeconds.fallback;
      request.sink.deliver(request.context, decision);
      return;
    }
    const decision = this.reject(DecisionCode.DEADLINE_FALLBACK);
    const arm = book.primaryArm(request.deviceKey, 0);
    if (arm) {
      decision.experimentTag = arm.tag;
      decision.experimentTagName = arm.name;
    }
    decision.cacheTtlSeconds = book.cacheTtlSeconds.fallback;
    request.sink.deliver(request.context, decision);
  }

  private noStrategies(request: PendingRequest): StrategyOutcome {
    const arm = this.parts.book.primaryArm(request.deviceKey, 0);
    return { exclusion: null, strategies: [], adResults: [], experimentTag: arm ? arm.tag : 0, experimentTagName: arm ? arm.name : '' };
  }

  private finish(request: PendingRequest, outcome: StrategyOutcome): Decision {
    const { book, metrics } = this.parts;
    const code =
      outcome.exclusion !== null ? CODE_BY_EXCLUSION[outcome.exclusion] : outcome.strategies.length > 0 ? DecisionCode.TAKE : DecisionCode.NO_STRATEGY_WANTS;
    if (code === DecisionCode.TAKE && !request.context.isTest) {
      for (const s of outcome.strategies) {
        metrics.strategyDecisions.inc({ strategy: s.strategyId });
        metrics.coefficients.observe({ strategy: s.strategyId }, s.coefficient);
      }
    }
    return {
      code,
      reason: REASON_BY_CODE[code]!,
      strategies: code === DecisionCode.TAKE ? outcome.strategies : [],
      adResults: code === DecisionCode.TAKE ? outcome.adResults : [],
      cacheTtlSeconds: code === DecisionCode.TAKE ? book.cacheTtlSeconds.take : book.cacheTtlSeconds.reject,
      experimentTag: outcome.experimentTag,
      experimentTagName: outcome.experimentTagName,
      processingTimeUs: 0,
      modelVersion: request.scores === EMPTY_SCORES ? '' : this.parts.scorer.modelVersion,
    };
  }

  private reject(code: DecisionCode, reason = REASON_BY_CODE[code]!): Decision {
    return {
      code,
      reason,
      strategies: [],
      adResults: [],
      cacheTtlSeconds: this.parts.book.cacheTtlSeconds.reject,
      experimentTag: 0,
      experimentTagName: '',
      processingTimeUs: 0,
      modelVersion: '',
    };
  }
}

const EMPTY_SCORES = new Float32Array(0);
const EMPTY_KEY = new Uint8Array(16);

function readFlags(records: Uint8Array, at: number, bytes: number): number {
  if (bytes === 1) return records[at]!;
  if (bytes === 2) return records[at]! | (records[at + 1]! << 8);
  return (records[at]! | (records[at + 1]! << 8) | (records[at + 2]! << 16) | (records[at + 3]! << 24)) >>> 0;
}

/**
 * One request between screening and its decision: the strategies' view of the device, and the scoring job whose
 * two callbacks the pool calls (exactly one of them, once).
 */
class PendingRequest implements DeviceView, ScoringJob {
  os: number;
  known = false;
  records: Uint8Array | null = null;
  recordOffset = 0;
  flags = 0;
  platformExperimentIds: number[];
  scores: Float32Array = EMPTY_SCORES;
  scoresOffset = 0;
  deviceKey: Uint8Array = EMPTY_KEY;
  deadline = 0;
  readonly mask: StrategyMask;

  constructor(
    private readonly engine: Engine,
    readonly context: BidContext,
    readonly sink: DecisionSink,
    strategyCount: number,
  ) {
    this.os = context.os;
    this.platformExperimentIds = context.platformExperimentIds;
    this.mask = new Uint8Array(strategyCount);
  }

  onScored(scores: Float32Array, offset: number): void {
    this.engine.scored(this, scores, offset);
  }

  onDeadline(): void {
    this.engine.missedDeadline(this);
  }
}
