import type { Config } from '../config.js';
import type { MediaRules } from '../media/module.js';
import { cacheSecondsFor } from '../media/rules.js';
import type { Metrics } from '../observe/metrics.js';
import type { ScoringJob } from '../scoring/pool.js';
import type { ProfileSchema } from '../store/profile-schema.js';
import { hasValue, Verdict, type StrategyBook, type StrategyMask, type StrategyOutcome } from '../strategy/book.js';
import type { CompiledArm } from '../strategy/experiments.js';
import type { DeviceView } from '../strategy/device-view.js';
import { DecisionCode, SHED_REASON, type BidContext, type Decision, type DeviceIdKind } from './types.js';
import { DEVICE_ID_KIND_NAMES } from './types.js';

/**
 * The protocol-free pipeline: BidContext -> device profile -> scores (worker threads) -> strategies -> Decision.
 * Everything before scoring runs inline; scoring is handed to the pool with a deadline, and whichever comes first,
 * scores or the deadline, produces exactly one decision for the sink.
 */

/** A store answering at once from memory (the embedded store). */
export interface DeviceStore {
  readonly version: string;
  readonly records: Uint8Array;
  /** Byte offset of the device's record in `records`, or -1. */
  find(key: Uint8Array, keyOffset: number): number;
}

/** A store whose answer arrives later (Redis): one lookup per request, every candidate key at once. */
export interface AsyncDeviceStore {
  readonly version: string;
  lookup(job: DeviceLookupJob): void;
}

export interface DeviceLookupJob {
  /** The request's usable device keys, most preferred first. */
  readonly lookupKeys: readonly Uint8Array[];
  /** The first key (in preference order) that was found; the record stays valid until the decision is made. */
  onProfileFound(keyIndex: number, records: Uint8Array, offset: number): void;
  /** None of the keys is known, or the lookup ran out of its time budget: decide for an unknown device. */
  onProfileMissing(): void;
}

export interface Scorer {
  readonly modelNames: readonly string[];
  readonly modelVersion: string;
  submit(job: ScoringJob): void;
}

/**
 * What the engine knew and computed for one decision, for the decision log and explain. Valid only while the
 * decision is being delivered: the scores and the book's DecideScratch are reused by the next request.
 */
export interface DecisionFacts {
  readonly parts: EngineParts;
  /** The key the profile was found under, else the first usable key. */
  readonly deviceKey: Uint8Array;
  /** The device's profile record (records[recordOffset ..]); null for an unknown device. */
  readonly records: Uint8Array | null;
  readonly recordOffset: number;
  /** Model scores at scores[scoresOffset + model index]; empty when no model ran. */
  readonly scores: Float32Array;
  readonly scoresOffset: number;
  /** One Verdict per bidding strategy of `parts.book`. */
  readonly mask: StrategyMask;
  /** The exclusion that matched, or null. */
  readonly excludedBy: string | null;
  /** How many bidding strategies passed the profile stage (0 before screening, or when an exclusion matched there). */
  readonly candidates: number;
}

/** Where a decision goes: the server's in-flight request, which encodes it and writes the reply. */
export interface DecisionSink {
  deliver(context: BidContext, decision: Decision): void;
  /** No decision could be made, not even the fallback: answer the request with a one-line error. */
  fail(context: BidContext, stage: RequestStage): void;
}

/** Where a request is in the pipeline, for counting what threw. */
export type RequestStage = 'lookup' | 'screen' | 'score' | 'decide';

export interface EngineParts {
  config: Config['engine'];
  /** Each media's rules (config `media`), applied to every decision for it; a media not listed gets the book's as they are. */
  media: Readonly<Record<string, MediaRules>>;
  book: StrategyBook;
  store: DeviceStore | AsyncDeviceStore;
  scorer: Scorer;
  profile: ProfileSchema;
  metrics: Metrics;
}

/** What a reload may replace while serving: the models, the strategies compiled against them, the device store. */
export type SwappableParts = Pick<EngineParts, 'book' | 'scorer' | 'store'>;

const REASON_BY_CODE: Record<number, string> = {
  [DecisionCode.TAKE]: 'take',
  [DecisionCode.NO_STRATEGY_WANTS]: 'no_strategy_wants',
  [DecisionCode.EXISTING_BORROWER]: 'existing_borrower',
  [DecisionCode.BLACKLISTED]: 'blacklisted',
  [DecisionCode.HIGH_RISK]: 'high_risk',
  [DecisionCode.NO_USABLE_DEVICE_ID]: 'no_usable_device_id',
  [DecisionCode.DEADLINE_FALLBACK]: 'deadline_fallback',
};
/** The outcome of a request answered with the fallback because something threw while deciding it. */
export const ERROR_FALLBACK_REASON = 'error_fallback';
const CODE_BY_EXCLUSION = {
  existing_borrower: DecisionCode.EXISTING_BORROWER,
  blacklisted: DecisionCode.BLACKLISTED,
  high_risk: DecisionCode.HIGH_RISK,
} as const;

export class Engine {
  /**
   * Replaced as a whole by `swap`: a request reads the parts once when it starts and keeps them to its decision, so
   * it never mixes an old book with new scores.
   */
  parts: EngineParts;
  /** Lookup preference: kind -> rank (lower first); kinds not configured are never used. */
  private readonly rankByKind: Int8Array;
  private readonly flagsField: { offset: number; bytes: number };
  private readonly deadlineMs: number;
  private readonly knownSlot: number;
  private readonly unknownSlot: number;
  /** Metric slots per strategy id: [decisions, coefficients]. */
  private readonly strategySlots = new Map<string, [number, number]>();
  /** Metric slots per experiment arm: [eligible, taken]. Weak: a reloaded book brings new arm objects. */
  private readonly armSlots = new WeakMap<CompiledArm, [number, number]>();

  constructor(parts: EngineParts) {
    this.parts = parts;
    this.knownSlot = parts.metrics.deviceLookups.slot({ result: 'known' });
    this.unknownSlot = parts.metrics.deviceLookups.slot({ result: 'unknown' });
    this.rankByKind = new Int8Array(Math.max(...Object.keys(DEVICE_ID_KIND_NAMES).map(Number)) + 1).fill(-1);
    const kindByName = Object.fromEntries(Object.entries(DEVICE_ID_KIND_NAMES).map(([kind, name]) => [name, Number(kind)]));
    parts.config.deviceIdOrder.forEach((name, rank) => (this.rankByKind[kindByName[name]!] = rank));
    const flags = parts.profile.field('flags');
    this.flagsField = { offset: flags.offset, bytes: flags.type === 'u8' ? 1 : flags.type === 'u16' ? 2 : 4 };
    this.deadlineMs = parts.config.scoreDeadlineMicros === 0 ? Infinity : parts.config.scoreDeadlineMicros / 1000;
  }

  /** Atomically replaces models+strategies and/or the store; requests already under way finish on the old ones. */
  swap(parts: Partial<SwappableParts>): void {
    this.parts = { ...this.parts, ...parts };
  }

  /**
   * Decides for one request; `receivedAt` is performance.now() when its body was complete. Never throws: whatever
   * throws while deciding answers this request with the fallback (see `failed`), and the thread keeps serving.
   */
  handle(context: BidContext, sink: DecisionSink, receivedAt: number): void {
    if (context.isPing) {
      sink.deliver(context, this.reject(context.media, DecisionCode.TAKE, 'ping'));
      return;
    }
    const request = new PendingRequest(this, this.parts, context, sink, receivedAt + this.deadlineMs);
    try {
      this.lookUp(request);
    } catch (error) {
      this.failed(request, error);
    }
  }

  private lookUp(request: PendingRequest): void {
    const keys = this.usableKeys(request.context);
    if (keys.length === 0) {
      request.sink.deliver(request.context, this.reject(request.context.media, DecisionCode.NO_USABLE_DEVICE_ID));
      return;
    }
    request.deviceKey = keys[0]!;
    const store = request.parts.store;
    if ('lookup' in store) {
      request.lookupKeys = keys;
      store.lookup(request);
      return;
    }
    for (const key of keys) {
      const offset = store.find(key, 0);
      if (offset >= 0) {
        this.profileFound(request, key, store.records, offset);
        return;
      }
    }
    this.profileMissing(request);
  }

  /** The usable device keys in the configured lookup order (wire order among ids of one kind). */
  private usableKeys(context: BidContext): Uint8Array[] {
    const ids = context.deviceIds;
    if (ids.length === 1) return this.rankByKind[ids[0]!.kind as DeviceIdKind]! >= 0 ? [ids[0]!.key] : [];
    const ranked = ids.filter((id) => this.rankByKind[id.kind as DeviceIdKind]! >= 0);
    ranked.sort((a, b) => this.rankByKind[a.kind as DeviceIdKind]! - this.rankByKind[b.kind as DeviceIdKind]!);
    return ranked.map((id) => id.key);
  }

  profileFound(request: PendingRequest, key: Uint8Array, records: Uint8Array, offset: number): void {
    request.records = records;
    request.recordOffset = offset;
    request.deviceKey = key;
    request.flags = readFlags(records, offset + this.flagsField.offset, this.flagsField.bytes);
    this.parts.metrics.deviceLookups.add(this.knownSlot);
    this.screenAndScore(request);
  }

  profileMissing(request: PendingRequest): void {
    this.parts.metrics.deviceLookups.add(this.unknownSlot);
    this.screenAndScore(request);
  }

  private screenAndScore(request: PendingRequest): void {
    const { book, scorer } = request.parts;
    request.stage = 'screen';
    const screen = book.screen(request, request.mask);
    request.candidates = screen.candidates;
    if (screen.exclusion !== null) {
      request.sink.deliver(request.context, this.finish(request, { ...this.noStrategies(), exclusion: screen.exclusion, excludedBy: screen.excludedBy }));
      return;
    }
    if (screen.candidates === 0) {
      request.sink.deliver(request.context, this.finish(request, this.noStrategies()));
      return;
    }
    request.modelVersion = scorer.modelVersion;
    request.stage = 'score';
    scorer.submit(request);
  }

  /** Called by the request when its scores arrive. The scores buffer is only valid during this call. */
  scored(request: PendingRequest, scores: Float32Array, offset: number): void {
    request.scores = scores;
    request.scoresOffset = offset;
    request.stage = 'decide';
    const outcome = request.parts.book.decide(request, request.mask, request.deviceKey, 0, request.context.candidateAds);
    request.sink.deliver(request.context, this.finish(request, outcome));
  }

  /** Called by the request when its scores did not come back in time. */
  missedDeadline(request: PendingRequest): void {
    this.parts.metrics.deadlineFallbacks.inc({ media: request.context.media });
    request.sink.deliver(request.context, this.fallback(request, REASON_BY_CODE[DecisionCode.DEADLINE_FALLBACK]!));
  }

  /**
   * The error boundary of one request: counted by the stage that threw, logged once per distinct error, answered
   * with the configured fallback; if even that throws, the sink answers with a one-line error.
   */
  failed(request: PendingRequest, error: unknown): void {
    const stage = request.stage;
    const { metrics } = this.parts;
    metrics.requestErrors.inc({ stage });
    metrics.errorLog.report(stage, error);
    try {
      request.sink.deliver(request.context, this.fallback(request, ERROR_FALLBACK_REASON));
    } catch (fallbackError) {
      metrics.errorLog.report(`${stage}_fallback`, fallbackError);
      request.sink.fail(request.context, stage);
    }
  }

  /**
   * Overload: a reject (code 6, like a late score) that looks at nothing but the request, so it costs the thread a
   * fraction of a decision. Never the neutral fallback: bidding on devices nobody scored is what overload must not
   * buy. The cache time is the book's fallback one, the team's choice for answers given without a decision.
   */
  shed(context: BidContext, sink: DecisionSink): void {
    const decision = this.reject(context.media, DecisionCode.DEADLINE_FALLBACK, SHED_REASON);
    decision.cacheTtlSeconds = this.cacheSeconds(context.media, this.parts.book.cacheTtlSeconds.fallback);
    sink.deliver(context, decision);
  }

  /** What a request gets without its scores: a reject (code 6) or, configured `neutral`, coefficient 1.0. */
  private fallback(request: PendingRequest, reason: string): Decision {
    const { book } = request.parts;
    request.modelVersion = '';
    let decision: Decision;
    if (this.parts.config.fallback === 'neutral') {
      decision = this.finish(request, book.neutral(request, request.mask, request.deviceKey, 0), false);
    } else {
      decision = this.reject(request.context.media, DecisionCode.DEADLINE_FALLBACK, undefined, book);
    }
    decision.reason = reason;
    decision.cacheTtlSeconds = this.cacheSeconds(request.context.media, book.cacheTtlSeconds.fallback);
    decision.facts = request;
    return decision;
  }

  private noStrategies(): StrategyOutcome {
    return { exclusion: null, excludedBy: null, strategies: [], adResults: [], experimentTag: 0, experimentTagName: '' };
  }

  /** `decided` is false for a neutral fallback: its coefficients are not the book's, so they stay out of its metrics. */
  private finish(request: PendingRequest, outcome: StrategyOutcome, decided = true): Decision {
    const { book, metrics } = request.parts;
    request.excludedBy = outcome.excludedBy;
    const code =
      outcome.exclusion !== null ? CODE_BY_EXCLUSION[outcome.exclusion] : outcome.strategies.length > 0 ? DecisionCode.TAKE : DecisionCode.NO_STRATEGY_WANTS;
    const rules = request.parts.media[request.context.media];
    if (rules !== undefined) {
      if (code === DecisionCode.TAKE) book.applyMediaRules(outcome, rules);
      if (decided) book.applyMediaRulesToUnsent(request.mask, rules);
    }
    if (code === DecisionCode.TAKE && decided && !request.context.isTest) {
      for (const s of outcome.strategies) {
        let slots = this.strategySlots.get(s.strategyId);
        if (slots === undefined) {
          slots = [metrics.strategyDecisions.slot({ strategy: s.strategyId }), metrics.coefficients.slot({ strategy: s.strategyId })];
          this.strategySlots.set(s.strategyId, slots);
        }
        metrics.strategyDecisions.add(slots[0]);
        metrics.coefficients.observe(slots[1], s.coefficient);
      }
    }
    if (decided && !request.context.isTest && book.layerCount > 0) this.countArms(request, book);
    return {
      code,
      reason: REASON_BY_CODE[code]!,
      strategies: code === DecisionCode.TAKE ? outcome.strategies : [],
      adResults: code === DecisionCode.TAKE ? outcome.adResults : [],
      cacheTtlSeconds: cacheSecondsUnder(rules, code === DecisionCode.TAKE ? book.cacheTtlSeconds.take : book.cacheTtlSeconds.reject),
      experimentTag: outcome.experimentTag,
      experimentTagName: outcome.experimentTagName,
      processingTimeUs: 0,
      modelVersion: request.modelVersion,
      bookVersion: book.version,
      mediaStrategyIds: book.strategyIdsOn(request.context.media),
      facts: request,
    };
  }

  /**
   * Per arm, the strategy verdicts that got past their score conditions (eligible) and those that took the device.
   * Only verdicts `decide` wrote for this request count: the arms in the book's scratch are theirs.
   */
  private countArms(request: PendingRequest, book: StrategyBook): void {
    const { mask } = request;
    const { experimentArms } = request.parts.metrics;
    for (let i = 0; i < mask.length; i++) {
      const verdict = mask[i]!;
      if (!hasValue(verdict)) continue;
      const arm = book.scratch.arm[i];
      if (!arm) continue;
      let slots = this.armSlots.get(arm);
      if (slots === undefined) {
        const labels = { experiment: arm.experiment, arm: arm.name };
        slots = [experimentArms.slot({ ...labels, outcome: 'eligible' }), experimentArms.slot({ ...labels, outcome: 'taken' })];
        this.armSlots.set(arm, slots);
      }
      experimentArms.add(slots[0]);
      if (verdict === Verdict.TAKEN) experimentArms.add(slots[1]);
    }
  }

  private cacheSeconds(media: string, seconds: number): number {
    return cacheSecondsUnder(this.parts.media[media], seconds);
  }

  /** `book`: the one the request started with, where it got that far; the current one otherwise. */
  private reject(media: string, code: DecisionCode, reason = REASON_BY_CODE[code]!, book = this.parts.book): Decision {
    return {
      code,
      reason,
      strategies: [],
      adResults: [],
      cacheTtlSeconds: this.cacheSeconds(media, book.cacheTtlSeconds.reject),
      experimentTag: 0,
      experimentTagName: '',
      processingTimeUs: 0,
      modelVersion: '',
      bookVersion: book.version,
      mediaStrategyIds: book.strategyIdsOn(media),
      facts: null,
    };
  }
}

function cacheSecondsUnder(rules: MediaRules | undefined, seconds: number): number {
  return rules === undefined ? seconds : cacheSecondsFor(rules, seconds);
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
class PendingRequest implements DeviceView, ScoringJob, DeviceLookupJob, DecisionFacts {
  media: string;
  os: number;
  records: Uint8Array | null = null;
  recordOffset = 0;
  flags = 0;
  platformExperimentIds: number[];
  askedStrategyIds: string[] | null;
  scores: Float32Array = EMPTY_SCORES;
  scoresOffset = 0;
  deviceKey: Uint8Array = EMPTY_KEY;
  lookupKeys: readonly Uint8Array[] = [];
  /** Versions of the models that scored this request ('' when none did). */
  modelVersion = '';
  stage: RequestStage = 'lookup';
  excludedBy: string | null = null;
  candidates = 0;
  readonly mask: StrategyMask;

  constructor(
    private readonly engine: Engine,
    readonly parts: EngineParts,
    readonly context: BidContext,
    readonly sink: DecisionSink,
    readonly deadline: number,
  ) {
    this.media = context.media;
    this.os = context.os;
    this.platformExperimentIds = context.platformExperimentIds;
    this.askedStrategyIds = context.askedStrategyIds;
    this.mask = new Uint8Array(parts.book.bidStrategyCount);
  }

  // Called later by the Redis store or the scoring pool, outside `handle`: each is its own error boundary.
  onProfileFound(keyIndex: number, records: Uint8Array, offset: number): void {
    try {
      this.engine.profileFound(this, this.lookupKeys[keyIndex]!, records, offset);
    } catch (error) {
      this.engine.failed(this, error);
    }
  }

  onProfileMissing(): void {
    try {
      this.engine.profileMissing(this);
    } catch (error) {
      this.engine.failed(this, error);
    }
  }

  onScored(scores: Float32Array, offset: number): void {
    try {
      this.engine.scored(this, scores, offset);
    } catch (error) {
      this.engine.failed(this, error);
    }
  }

  onDeadline(): void {
    try {
      this.engine.missedDeadline(this);
    } catch (error) {
      this.engine.failed(this, error);
    }
  }
}
