import { readFileSync } from 'node:fs';
import type { AdAdjustment, CandidateAd, StrategyDecision } from '../engine/types.js';
import type { ProfileSchema } from '../store/profile-schema.js';
import { compileCondition, deviceRequirements, splitByStage, sufficientBeforeScoring, type CompiledCondition, type ConditionScope, type DeviceRequirements } from './conditions.js';
import type { DeviceView } from './device-view.js';
import { BUCKETS, compileLayers, saltedBucket, saltState, type CompiledArm, type CompiledLayer } from './experiments.js';
import { compileValueFormula, type ValueFormula } from './value-formula.js';
import type { MediaModule, MediaRules } from '../media/module.js';
import { MEDIA_MODULES } from '../media/registry.js';
import { coefficientFor, cpcPriceFor } from '../media/rules.js';
import { bookVersion } from './versions.js';
import { bidSchema, MEDIA_MAX_COEFFICIENT, MEDIA_MIN_COEFFICIENT, strategyFileSchema, type BidParams, type BidStrategy, type Condition, type StrategyFile } from './schema.js';

/**
 * The strategy book compiled for the hot path. A request goes through it in two steps:
 * `screen` before scoring (profile-only exclusions, and which bidding strategies can still want the device, so a
 * device nobody can want is never scored), then `decide` with the model scores.
 */

export type ExclusionReason = 'existing_borrower' | 'blacklisted' | 'high_risk';

interface CompiledExclusion {
  id: string;
  reason: ExclusionReason;
  condition: CompiledCondition;
}

interface CompiledCreative {
  id: number;
  condition: CompiledCondition | null;
}

/** A strategy's creative sampling: its salt's hash state and each creative's share (see chooseCreative). */
interface CreativeSampling {
  saltState: number;
  shares: Float64Array;
  /** This request's share of each creative that suits the device, 0 for the others. */
  weights: Float64Array;
}

interface CompiledBidStrategy {
  id: string;
  beforeScoring: CompiledCondition;
  afterScoring: CompiledCondition;
  bid: BidParams;
  /** The media it bids on; null for all. */
  media: ReadonlySet<string> | null;
  /** Its id on the media where the book's mediaIds give one; its own id elsewhere. */
  mediaIds: ReadonlyMap<string, string>;
  /** Per hour of the week (ISO weekday - 1) x 24 + hour, in UTC+8: 1 where it bids; null for always. */
  schedule: Uint8Array | null;
  priority: number;
  shadow: boolean;
  /** Its own expected-value formula; null for the book's (expected profit from the valueModels). */
  value: ValueFormula | null;
  /** The book's layers this strategy has an experiment in, in file order; the first one's arm is its tag. */
  layers: number[];
  /** Its experiments: a layer's arm from another experiment (one the layer gave this device to) is not its own. */
  experiments: ReadonlySet<string>;
  /** The bid under each arm that overrides it (base bid + the arm's fields). */
  bidByArm: ReadonlyMap<CompiledArm, BidParams>;
  creatives: CompiledCreative[];
  sampling: CreativeSampling | null;
  preferredCreativeBoost: number;
  templateFactors: ReadonlyMap<number, number>;
}

/**
 * The bidding strategies a request can possibly want, from what the top level of their profile-stage conditions
 * requires: `screen` and `decide` visit only the list for the device's OS and store presence, and `screen` tests a
 * strategy's flag bits before running its compiled condition. With hundreds of strategies, each written for one
 * OS and one kind of customer, most are never looked at.
 */
interface CandidateIndex {
  /** Strategy indices in book order, one list per deviceCell. */
  byDevice: Int32Array[];
  /** Per strategy, the flag bits of its DeviceRequirements. */
  flagsAll: Int32Array;
  flagsNone: Int32Array;
  flagsAny: Int32Array;
}

/** The Os values 0..3, and a slot for any other number a view may carry, where only strategies naming no OS can match. */
const OS_SLOTS = 5;

function deviceCell(os: number, known: boolean): number {
  return (os === (os & 3) ? os : OS_SLOTS - 1) * 2 + (known ? 1 : 0);
}

function indexCandidates(requirements: readonly DeviceRequirements[]): CandidateIndex {
  const byDevice: Int32Array[] = [];
  for (let slot = 0; slot < OS_SLOTS; slot++)
    for (const known of [false, true]) {
      const fits = requirements.flatMap((r, i) => ((r.os === null || r.os.includes(slot)) && (r.known === null || r.known === known) ? [i] : []));
      byDevice[deviceCell(slot, known)] = Int32Array.from(fits);
    }
  return {
    byDevice,
    flagsAll: Int32Array.from(requirements, (r) => r.flagsAll),
    flagsNone: Int32Array.from(requirements, (r) => r.flagsNone),
    flagsAny: Int32Array.from(requirements, (r) => r.flagsAny),
  };
}

/**
 * Per-request scratch the engine owns, one byte per bidding strategy: `screen` marks the candidates (those that
 * passed the profile stage), `decide` turns each candidate into its verdict. The decision log and explain read it.
 */
export type StrategyMask = Uint8Array;

/** What became of one bidding strategy for one request: the values of its byte in the StrategyMask. */
export const Verdict = {
  /** Failed its profile conditions, or never looked at because an exclusion matched first. */
  NOT_CANDIDATE: 0,
  /** Passed the profile stage; decided later (or the decision never came: deadline, error). */
  CANDIDATE: 1,
  /** Failed its score conditions. */
  SCORES_FAILED: 2,
  /** Expected value not positive. */
  NO_VALUE: 3,
  /** Expected value below the strategy's minValueFen. */
  BELOW_FLOOR: 4,
  TAKEN: 5,
  /** Outside its schedule: not looked at further. */
  OFF_SCHEDULE: 6,
  /** Not for this media: not looked at further. */
  OTHER_MEDIA: 7,
  /** Wanted the device, but the reply was full (maxStrategiesPerReply) with strategies of higher priority. */
  CAPPED: 8,
  /** Would have taken the device; a shadow strategy is never sent. */
  SHADOW: 9,
  /** The media asked about other strategies only (Ocean's rta_ids): not looked at further. */
  NOT_ASKED: 10,
} as const;
export type Verdict = (typeof Verdict)[keyof typeof Verdict];
export const VERDICT_NAMES = ['not_candidate', 'candidate', 'scores_failed', 'no_value', 'below_floor', 'taken', 'off_schedule', 'other_media', 'capped', 'shadow', 'not_asked'] as const;

/** Verdicts `decide` gave: the scratch's arm and bid for the strategy are this request's. */
export function decidedVerdict(verdict: number): boolean {
  return (verdict >= Verdict.SCORES_FAILED && verdict <= Verdict.TAKEN) || verdict === Verdict.CAPPED || verdict === Verdict.SHADOW;
}

/** Verdicts with an expected value computed (the scratch's valueFen is this request's). */
export function hasValue(verdict: number): boolean {
  return (verdict >= Verdict.NO_VALUE && verdict <= Verdict.TAKEN) || verdict === Verdict.CAPPED || verdict === Verdict.SHADOW;
}

/** Verdicts with a coefficient and a creative chosen (the scratch's coefficient and creativeRule are this request's). */
export function hasCoefficient(verdict: number): boolean {
  return verdict === Verdict.TAKEN || verdict === Verdict.CAPPED || verdict === Verdict.SHADOW;
}

/**
 * What the last `decide` computed per bidding strategy (indexed like the StrategyMask), valid until the book's next
 * `decide`: the decision log and explain read it while the decision is delivered, which happens synchronously
 * inside the engine's `scored` call. Written for every candidate, so recording costs a few stores per strategy.
 */
export interface DecideScratch {
  valueFen: Float64Array;
  /** The coefficient before clamping and rounding. */
  rawCoefficient: Float64Array;
  /** The coefficient after clamping and rounding: sent, or what a capped or shadow strategy would have sent. */
  coefficient: Float64Array;
  /** Index into the strategy's creatives of the rule that fired, and that creative's id. */
  creativeRule: Int16Array;
  creativeId: Float64Array;
  /** The arm the device fell in for the strategy (its first layer's), or null outside any experiment. */
  arm: (CompiledArm | null)[];
  /** The bid parameters in force: the strategy's, with its arms' overrides. */
  bid: BidParams[];
}

export interface ScreenResult {
  /** A profile-only exclusion matched: reject with this reason, no scoring. */
  exclusion: ExclusionReason | null;
  /** The id of the exclusion that matched, or null. */
  excludedBy: string | null;
  /** How many bidding strategies passed the profile stage (0: nobody can want the device, no scoring). */
  candidates: number;
}

export interface StrategyOutcome {
  exclusion: ExclusionReason | null;
  excludedBy: string | null;
  strategies: StrategyDecision[];
  adResults: AdAdjustment[];
  experimentTag: number;
  experimentTagName: string;
}

export interface ValueModelIndices {
  apply: number;
  approve: number;
  risk: number;
  ltv: number;
}

/** A bidding strategy as written, with what its compiled form adds, for explain. */
export interface StrategyOutline {
  id: string;
  when: Condition;
  media: string[] | null;
  schedule: NonNullable<BidStrategy['schedule']> | null;
  priority: number;
  bid: BidParams;
  value: ValueFormula | null;
  /** `share`: the creative's weight under creative sampling; null without it (first match wins). */
  creatives: { id: number; when: Condition | null; share: number | null }[];
}

export class StrategyBook {
  readonly bidStrategyIds: readonly string[];
  readonly cacheTtlSeconds: StrategyFile['cacheTtlSeconds'];
  /** Allowed but probably a slip, `<path>: <message>` each: worth a look, not worth refusing the file for. */
  readonly warnings: readonly string[];
  private readonly exclusionsBeforeScoring: CompiledExclusion[];
  private readonly exclusionsAfterScoring: CompiledExclusion[];
  private readonly bidStrategies: CompiledBidStrategy[];
  private readonly candidateIndex: CandidateIndex;
  private readonly byId: ReadonlyMap<string, CompiledBidStrategy>;
  private readonly indexOf: ReadonlyMap<string, number>;
  private readonly value: ValueModelIndices;
  private readonly layers: CompiledLayer[];
  /** Per request, each layer's arm is hashed once: valid while layerStamp[layer] equals `stamp`. */
  private readonly layerArm: (CompiledArm | null)[];
  private readonly layerStamp: Uint32Array;
  private stamp = 0;
  /** The file as written, for explain: conditions are compiled to closures, which cannot show themselves. */
  private readonly source: ParsedStrategyFile;
  readonly scratch: DecideScratch;
  private readonly maxStrategiesPerReply: number;
  /** Whether any strategy has a schedule: only then does screen read the clock. */
  private readonly scheduled: boolean;
  private readonly idsOnMedia: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /** Whether a strategy can want a device and not be sent: a shadow strategy, or a cap on strategies per reply. */
  private readonly leavesOut: boolean;
  /** Per media, each bidding strategy's id there, by strategy index: what a request's asked ids are matched with. */
  private readonly idsByIndexOn: ReadonlyMap<string, readonly string[]>;
  /** The other way round: per media, a strategy's id there -> ours (second requests name the id we sent). */
  private readonly ourIdsOnMedia: ReadonlyMap<string, ReadonlyMap<string, string>>;

  /**
   * `version`: the book's version id, the content hash of its JSON (see versions.ts). `clock`: milliseconds since
   * the epoch, for schedules (tests set the hour).
   */
  constructor(
    file: ParsedStrategyFile,
    profile: ProfileSchema,
    modelNames: readonly string[],
    readonly version: string,
    private readonly clock: () => number = Date.now,
  ) {
    const scope: ConditionScope = { profile, modelIndex: new Map(modelNames.map((name, i) => [name, i])) };
    // Collected, not thrown one by one: the growth team fixes a file in one round, not one mistake per attempt.
    const problems: string[] = [];
    this.cacheTtlSeconds = file.cacheTtlSeconds;
    this.value = resolveValueModels(file.valueModels, scope.modelIndex, problems);

    const ids = new Set<string>();
    for (const s of file.strategies) {
      if (ids.has(s.id)) problems.push(`strategies: id "${s.id}" is used twice`);
      ids.add(s.id);
    }

    this.exclusionsBeforeScoring = [];
    this.exclusionsAfterScoring = [];
    for (const [i, s] of file.strategies.entries()) {
      if (s.kind !== 'exclude' || !s.enabled) continue;
      const where = `strategies[${i}](${s.id}).when`;
      const condition = compileCondition(s.when, scope, where, problems);
      if (!condition.needsScores) {
        this.exclusionsBeforeScoring.push({ id: s.id, reason: s.reason, condition });
        continue;
      }
      const early = sufficientBeforeScoring(s.when);
      // `early` is a part of `s.when`: its problems were reported just above.
      if (early) this.exclusionsBeforeScoring.push({ id: s.id, reason: s.reason, condition: compileCondition(early, scope, where, []) });
      this.exclusionsAfterScoring.push({ id: s.id, reason: s.reason, condition });
    }

    const servedMedia = new Map<string, ReadonlySet<string> | null>();
    const mediaWarnings: { media: string; text: string }[] = [];
    for (const [i, s] of file.strategies.entries())
      if (s.kind === 'bid') servedMedia.set(s.id, mediaServed(s, `strategies[${i}](${s.id})`, problems, mediaWarnings));
    // A book that bids on no strategy-restricted media at all does not use it: nothing there to warn about.
    const usedMedia = new Set(file.strategies.flatMap((s) => (s.kind === 'bid' ? Object.keys(s.mediaIds ?? {}) : [])));

    const bidSources = file.strategies.flatMap((s, i) => (s.kind === 'bid' && s.enabled ? [{ s, i }] : []));
    // Listed after the strategies' own problems, in the order of the file.
    const experimentProblems: string[] = [];
    const experiments = compileExperiments(file, new Map(bidSources.map(({ s }) => [s.id, s])), experimentProblems);
    this.bidStrategies = bidSources.map(({ s, i }) => {
      const where = `strategies[${i}](${s.id})`;
      const { beforeScoring, afterScoring } = splitByStage(s.when);
      return {
        id: s.id,
        beforeScoring: compileCondition(beforeScoring, scope, `${where}.when`, problems),
        afterScoring: compileCondition(afterScoring, scope, `${where}.when`, problems),
        media: servedMedia.get(s.id)!,
        mediaIds: new Map(Object.entries(s.mediaIds ?? {})),
        schedule: s.schedule ? weekHours(s.schedule) : null,
        priority: s.priority,
        shadow: s.shadow,
        bid: s.bid,
        value: strategyValue(s, scope, where, problems),
        layers: experiments.layersOf.get(s.id) ?? [],
        experiments: new Set(file.experiments.filter((e) => e.strategies.includes(s.id)).map((e) => e.id)),
        bidByArm: experiments.bidByArm.get(s.id) ?? new Map(),
        creatives: s.creatives.map((c, j) => ({
          id: c.id,
          condition: c.when ? compileCondition(c.when, scope, `${where}.creatives[${j}].when`, problems) : null,
        })),
        sampling: s.creativeSampling
          ? {
              saltState: saltState(`creative:${s.id}`),
              shares: Float64Array.from(s.creatives, (c) => c.share ?? 1 / s.creatives.length),
              weights: new Float64Array(s.creatives.length),
            }
          : null,
        preferredCreativeBoost: s.secondRequest.preferredCreativeBoost,
        templateFactors: new Map(Object.entries(s.secondRequest.templateFactors).map(([k, v]) => [Number(k), v])),
      };
    });
    this.idsOnMedia = idsOnEachMedia(this.bidStrategies, problems);
    this.idsByIndexOn = new Map(MEDIA_MODULES.map(({ name }) => [name, this.bidStrategies.map((s) => s.mediaIds.get(name) ?? s.id)]));
    this.ourIdsOnMedia = new Map([...this.idsOnMedia].map(([media, ids]) => [media, new Map([...ids].map(([ours, theirs]) => [theirs, ours]))]));
    problems.push(...experimentProblems);
    if (problems.length > 0) throw invalidFile(file.source, problems);
    this.warnings = [
      ...file.strategies.flatMap((s, i) => (s.kind === 'bid' && s.enabled ? [...bidWarnings(s.bid, `strategies[${i}](${s.id}).bid`), ...creativeWarnings(s, `strategies[${i}](${s.id})`)] : [])),
      ...mediaWarnings.filter((w) => usedMedia.has(w.media)).map((w) => w.text),
    ];
    this.bidStrategyIds = this.bidStrategies.map((s) => s.id);
    this.candidateIndex = indexCandidates(bidSources.map(({ s }) => deviceRequirements(splitByStage(s.when).beforeScoring, scope)));
    const count = this.bidStrategies.length;
    this.scratch = { valueFen: new Float64Array(count), rawCoefficient: new Float64Array(count), coefficient: new Float64Array(count), creativeRule: new Int16Array(count), creativeId: new Float64Array(count), arm: new Array<CompiledArm | null>(count).fill(null), bid: this.bidStrategies.map((s) => s.bid) };
    this.byId = new Map(this.bidStrategies.map((s) => [s.id, s]));
    this.indexOf = new Map(this.bidStrategies.map((s, i) => [s.id, i]));
    this.layers = experiments.layers;
    this.layerArm = new Array<CompiledArm | null>(this.layers.length).fill(null);
    this.layerStamp = new Uint32Array(this.layers.length);
    this.source = file;
    this.maxStrategiesPerReply = file.maxStrategiesPerReply ?? Infinity;
    this.leavesOut = this.maxStrategiesPerReply !== Infinity || this.bidStrategies.some((s) => s.shadow);
    this.scheduled = this.bidStrategies.some((st) => st.schedule !== null);
  }

  get bidStrategyCount(): number {
    return this.bidStrategies.length;
  }

  /** The ids of the exclusions in the order `screen` and then `decide` try them, for explain. */
  exclusionOrder(): { beforeScoring: string[]; afterScoring: string[] } {
    return { beforeScoring: this.exclusionsBeforeScoring.map((e) => e.id), afterScoring: this.exclusionsAfterScoring.map((e) => e.id) };
  }

  /** The enabled exclusions as written, in file order, for explain. */
  exclusionsOutline(): { id: string; reason: ExclusionReason; when: Condition }[] {
    return this.source.strategies.flatMap((s) => (s.kind === 'exclude' && s.enabled ? [{ id: s.id, reason: s.reason, when: s.when }] : []));
  }

  /**
   * A media's rules on an outcome about to be sent: coefficients, raise factors and CPC prices as that media accepts
   * them, written back to the scratch too, so that the decision log and explain show what was sent.
   */
  applyMediaRules(outcome: StrategyOutcome, rules: MediaRules): void {
    for (const s of outcome.strategies) {
      const i = this.indexOf.get(s.strategyId)!;
      if (Number.isFinite(s.coefficient)) s.coefficient = coefficientFor(rules, s.coefficient);
      // Prices scale with the coefficient actually sent; a price is set only where the strategy's bid sets one.
      const bid = this.scratch.bid[i]!;
      if (s.cpaPriceFen > 0) s.cpaPriceFen = Math.round(bid.cpaBidFen * s.coefficient);
      if (s.cpcPriceFen > 0) s.cpcPriceFen = cpcPriceFor(rules, Math.round(bid.cpcBidFen * s.coefficient));
      this.scratch.coefficient[i] = s.coefficient;
    }
    for (const ad of outcome.adResults)
      for (const c of ad.creatives) if (Number.isFinite(c.raiseFactor)) c.raiseFactor = coefficientFor(rules, c.raiseFactor);
  }

  /**
   * What a shadow or capped strategy would have sent under the media's rules, for the log and explain; only books
   * that have such strategies pay for the pass.
   */
  applyMediaRulesToUnsent(mask: StrategyMask, rules: MediaRules): void {
    if (!this.leavesOut) return;
    for (let i = 0; i < mask.length; i++) {
      if (mask[i] === Verdict.SHADOW || mask[i] === Verdict.CAPPED) this.scratch.coefficient[i] = coefficientFor(rules, this.scratch.coefficient[i]!);
    }
  }

  /** The bidding strategies that serve `media`, our id -> their id on it (see Decision.mediaStrategyIds). */
  strategyIdsOn(media: string): ReadonlyMap<string, string> {
    return this.idsOnMedia.get(media) ?? NO_STRATEGIES;
  }

  /** The bidding strategies as written, indexed like the StrategyMask, for explain. */
  strategiesOutline(): StrategyOutline[] {
    return this.bidStrategies.map((compiled) => {
      const written = this.source.strategies.find((s): s is BidStrategy => s.id === compiled.id && s.kind === 'bid')!;
      return {
        id: compiled.id,
        when: written.when,
        media: written.media ?? null,
        schedule: written.schedule ?? null,
        priority: written.priority,
        bid: compiled.bid,
        value: compiled.value,
        creatives: compiled.creatives.map((c, j) => ({ id: c.id, when: written.creatives[j]!.when ?? null, share: compiled.sampling ? compiled.sampling.shares[j]! : null })),
      };
    });
  }

  get layerCount(): number {
    return this.layers.length;
  }

  layersOutline(): readonly CompiledLayer[] {
    return this.layers;
  }

  get valueModelIndices(): ValueModelIndices {
    return this.value;
  }

  screen(view: DeviceView, mask: StrategyMask): ScreenResult {
    for (const exclusion of this.exclusionsBeforeScoring)
      if (exclusion.condition.test(view)) return { exclusion: exclusion.reason, excludedBy: exclusion.id, candidates: 0 };
    // A mask may come from an earlier request (benchmarks and tools reuse one): what the index skips must read NOT_CANDIDATE.
    // A loop, not fill(): fill is a call into the runtime, dearer than a few dozen stores.
    for (let i = 0; i < mask.length; i++) mask[i] = Verdict.NOT_CANDIDATE;
    const { byDevice, flagsAll, flagsNone, flagsAny } = this.candidateIndex;
    const visit = byDevice[deviceCell(view.os, view.records !== null)]!;
    const flags = view.flags;
    const hourOfWeek = this.scheduled ? chinaHourOfWeek(this.clock()) : 0;
    const asked = view.askedStrategyIds;
    const askedAs = asked !== null ? (this.idsByIndexOn.get(view.media) ?? this.bidStrategyIds) : this.bidStrategyIds;
    let candidates = 0;
    for (let j = 0; j < visit.length; j++) {
      const i = visit[j]!;
      const strategy = this.bidStrategies[i]!;
      if (strategy.media !== null && !strategy.media.has(view.media)) {
        mask[i] = Verdict.OTHER_MEDIA;
        continue;
      }
      if (asked !== null && !asked.includes(askedAs[i]!)) {
        mask[i] = Verdict.NOT_ASKED;
        continue;
      }
      if (strategy.schedule !== null && strategy.schedule[hourOfWeek] === 0) {
        mask[i] = Verdict.OFF_SCHEDULE;
        continue;
      }
      const all = flagsAll[i]!;
      const any = flagsAny[i]!;
      if ((flags & all) !== all || (flags & flagsNone[i]!) !== 0 || (any !== 0 && (flags & any) === 0)) continue;
      if (!strategy.beforeScoring.test(view)) continue;
      mask[i] = Verdict.CANDIDATE;
      candidates++;
    }
    return { exclusion: null, excludedBy: null, candidates };
  }

  /**
   * With scores in the view: score-based exclusions, then each candidate strategy's expected value, coefficient and
   * creative; for a second request, a raise factor for every candidate creative (and only those). `mask` is the one
   * `screen` filled for this view: decide looks only where screen could have marked a candidate.
   */
  decide(view: DeviceView, mask: StrategyMask, key: Uint8Array, keyOffset: number, candidateAds: readonly CandidateAd[]): StrategyOutcome {
    for (const exclusion of this.exclusionsAfterScoring) if (exclusion.condition.test(view)) return outcome(exclusion, [], []);
    this.stamp = (this.stamp + 1) >>> 0;

    const scores = view.scores;
    const at = view.scoresOffset;
    const pApply = scores[at + this.value.apply]!;
    const pApprove = scores[at + this.value.approve]!;
    const pRisk = scores[at + this.value.risk]!;
    const ltvFen = scores[at + this.value.ltv]! * 100;

    const { scratch } = this;
    const decisions: StrategyDecision[] = [];
    const visit = this.candidateIndex.byDevice[deviceCell(view.os, view.records !== null)]!;
    for (let j = 0; j < visit.length; j++) {
      const i = visit[j]!;
      if (mask[i] !== Verdict.CANDIDATE) continue;
      const strategy = this.bidStrategies[i]!;
      scratch.valueFen[i] = NaN;
      scratch.rawCoefficient[i] = NaN;
      scratch.creativeRule[i] = -1;
      // The arms first: a device's exposure to an experiment counts whether or not the strategy then wants it.
      let bid = strategy.bid;
      let arm: CompiledArm | null = null;
      let imposedCreative = 0;
      for (const layer of strategy.layers) {
        const inLayer = this.armIn(layer, view, key, keyOffset);
        if (inLayer === null || !strategy.experiments.has(inLayer.experiment)) continue;
        arm ??= inLayer;
        const override = inLayer.overrides.get(strategy.id);
        if (override !== undefined) bid = bid === strategy.bid ? strategy.bidByArm.get(inLayer)! : { ...bid, ...override };
        imposedCreative = inLayer.creatives.get(strategy.id) ?? imposedCreative;
      }
      scratch.arm[i] = arm;
      scratch.bid[i] = bid;
      if (!strategy.afterScoring.test(view)) {
        mask[i] = Verdict.SCORES_FAILED;
        continue;
      }
      const approved = bid.assumeApproved ? 1 : pApprove;
      const valueFen =
        strategy.value === null ? pApply * approved * ((1 - pRisk) * ltvFen - pRisk * bid.lossGivenDefaultFen) : strategy.value.evaluate(scores, at, view.records, view.recordOffset, bid);
      scratch.valueFen[i] = valueFen;
      if (!(valueFen > 0)) {
        mask[i] = Verdict.NO_VALUE;
        continue;
      }
      if (valueFen < bid.minValueFen) {
        mask[i] = Verdict.BELOW_FLOOR;
        continue;
      }
      mask[i] = strategy.shadow ? Verdict.SHADOW : Verdict.TAKEN;
      const rawCoefficient = Math.pow(valueFen / bid.targetValueFen, bid.exponent);
      scratch.rawCoefficient[i] = rawCoefficient;
      const coefficient = roundCoefficient(clamp(rawCoefficient, bid.minCoefficient, bid.maxCoefficient));
      scratch.coefficient[i] = coefficient;
      const rule = imposedCreative !== 0 ? strategy.creatives.findIndex((c) => c.id === imposedCreative) : chooseCreative(strategy, view, key, keyOffset);
      scratch.creativeRule[i] = rule;
      scratch.creativeId[i] = strategy.creatives[rule]!.id;
      if (strategy.shadow) continue;
      decisions.push({
        strategyId: strategy.id,
        coefficient,
        creativeId: strategy.creatives[rule]!.id,
        cpaPriceFen: bid.cpaBidFen > 0 ? Math.round(bid.cpaBidFen * coefficient) : 0,
        // The media's floor is its rules' (applyMediaRules); below it the platform would ignore the price.
        cpcPriceFen: bid.cpcBidFen > 0 ? Math.round(bid.cpcBidFen * coefficient) : 0,
        experimentTag: arm ? arm.tag : 0,
        experimentTagName: arm ? arm.name : '',
        pcvr: pApply * approved,
      });
    }
    if (decisions.length > this.maxStrategiesPerReply) this.cap(decisions, mask);
    const adResults = candidateAds.length > 0 && decisions.length > 0 ? this.adjustCandidateAds(view.media, candidateAds, decisions) : [];
    return outcome(null, decisions, adResults);
  }

  /**
   * The scores did not come back in time: take the device for every strategy that passed the profile stage at
   * coefficient 1.0 with its default creative. Only used when the operator chose the `neutral` fallback.
   */
  neutral(view: DeviceView, mask: StrategyMask, key: Uint8Array, keyOffset: number): StrategyOutcome {
    this.stamp = (this.stamp + 1) >>> 0;
    const decisions: StrategyDecision[] = [];
    for (let i = 0; i < this.bidStrategies.length; i++) {
      if (mask[i] !== Verdict.CANDIDATE) continue;
      const strategy = this.bidStrategies[i]!;
      if (strategy.shadow) continue;
      let arm: CompiledArm | null = null;
      for (const layer of strategy.layers) {
        const inLayer = this.armIn(layer, view, key, keyOffset);
        if (inLayer !== null && strategy.experiments.has(inLayer.experiment)) {
          arm = inLayer;
          break;
        }
      }
      decisions.push({
        strategyId: strategy.id,
        coefficient: 1,
        creativeId: strategy.creatives[strategy.creatives.length - 1]!.id,
        cpaPriceFen: 0,
        cpcPriceFen: 0,
        experimentTag: arm ? arm.tag : 0,
        experimentTagName: arm ? arm.name : '',
        pcvr: 0,
      });
    }
    if (decisions.length > this.maxStrategiesPerReply) this.cap(decisions, mask);
    return outcome(null, decisions, []);
  }

  /** The device's arm in a layer, hashed once per request. */
  /** Keeps the maxStrategiesPerReply decisions of highest priority (then coefficient, then file order), in file order. */
  private cap(decisions: StrategyDecision[], mask: StrategyMask): void {
    const ranked = decisions.map((d, order) => ({ d, order, priority: this.byId.get(d.strategyId)!.priority }));
    ranked.sort((a, b) => b.priority - a.priority || b.d.coefficient - a.d.coefficient || a.order - b.order);
    for (const { d } of ranked.slice(this.maxStrategiesPerReply)) mask[this.indexOf.get(d.strategyId)!] = Verdict.CAPPED;
    const kept = ranked.slice(0, this.maxStrategiesPerReply).sort((a, b) => a.order - b.order);
    decisions.length = 0;
    for (const { d } of kept) decisions.push(d);
  }

  private armIn(layer: number, view: DeviceView, key: Uint8Array, keyOffset: number): CompiledArm | null {
    if (this.layerStamp[layer] !== this.stamp) {
      this.layerArm[layer] = this.layers[layer]!.armFor(key, keyOffset, view.platformExperimentIds);
      this.layerStamp[layer] = this.stamp;
    }
    return this.layerArm[layer]!;
  }

  /** The arms the last `decide` or `neutral` placed the device in (one per layer it looked at), for the decision log. */
  armsOfLastDecision(): CompiledArm[] {
    const arms: CompiledArm[] = [];
    for (let l = 0; l < this.layers.length; l++) if (this.layerStamp[l] === this.stamp && this.layerArm[l] !== null) arms.push(this.layerArm[l]!);
    return arms;
  }

  private adjustCandidateAds(media: string, ads: readonly CandidateAd[], decisions: StrategyDecision[]): AdAdjustment[] {
    let best = decisions[0]!;
    for (const d of decisions) if (d.coefficient > best.coefficient) best = d;
    const ourIds = this.ourIdsOnMedia.get(media);
    return ads.map((ad) => {
      // An ad bound to a strategy id we do not know is not ours to price; an unbound ad gets our best strategy.
      const id = ourIds?.get(ad.outTargetId) ?? ad.outTargetId;
      const decision = id === '' ? best : decisions.find((d) => d.strategyId === id);
      const strategy = id === '' ? this.byId.get(best.strategyId) : this.byId.get(id);
      if (!strategy) return { adGroupId: ad.adGroupId, ignore: true, creatives: [] };
      return {
        adGroupId: ad.adGroupId,
        ignore: false,
        creatives: ad.creatives.map((c) => ({
          creativeId: c.creativeId,
          raiseFactor: decision
            ? roundCoefficient(
                clamp(
                  decision.coefficient * (c.creativeId === decision.creativeId ? strategy.preferredCreativeBoost : 1) * (strategy.templateFactors.get(c.templateId) ?? 1),
                  MEDIA_MIN_COEFFICIENT,
                  MEDIA_MAX_COEFFICIENT,
                ),
              )
            : MEDIA_MIN_COEFFICIENT,
        })),
      };
    });
  }
}

/** Shares that do nothing: without creativeSampling (first match wins), or all 0 (first match again). */
function creativeWarnings(strategy: BidStrategy, where: string): string[] {
  const shares = strategy.creatives.map((c) => c.share);
  if (!strategy.creativeSampling) return shares.some((x) => x !== undefined) ? [`${where}.creatives: shares are ignored without creativeSampling (the first creative that suits wins)`] : [];
  return shares.every((x) => x === 0) ? [`${where}.creatives: every share is 0, so the first creative that suits wins`] : [];
}

/**
 * The index of the first creative rule that holds for the device (the last has no condition); with creative
 * sampling, one of those that hold, by their shares, from a hash of the device key: the same device gets the same
 * creative while the shares stay, so the media's cached answer and explain agree with the log.
 */
function chooseCreative(strategy: CompiledBidStrategy, view: DeviceView, key: Uint8Array, keyOffset: number): number {
  const { creatives, sampling } = strategy;
  if (sampling !== null) {
    let total = 0;
    for (let i = 0; i < creatives.length; i++) {
      const suits = creatives[i]!.condition === null || creatives[i]!.condition!.test(view);
      sampling.weights[i] = suits ? sampling.shares[i]! : 0;
      total += sampling.weights[i]!;
    }
    if (total > 0) {
      let draw = ((saltedBucket(sampling.saltState, key, keyOffset) + 0.5) / BUCKETS) * total;
      let last = 0;
      for (let i = 0; i < creatives.length; i++) {
        if (sampling.weights[i]! === 0) continue;
        draw -= sampling.weights[i]!;
        if (draw < 0) return i;
        last = i;
      }
      // Rounding left the draw a hair above the total: the last creative with a share.
      return last;
    }
  }
  for (let i = 0; i < creatives.length - 1; i++) if (creatives[i]!.condition === null || creatives[i]!.condition!.test(view)) return i;
  return creatives.length - 1;
}

/**
 * The request-level tag (Tencent's top-level dsp_tag) is the arm of the strategy we bid highest for, the one the
 * media is most likely to serve; none when that strategy is in no experiment, or when nothing is taken: a tag on a
 * reject or on another experiment's strategy would put the device in a split it never saw.
 */
function outcome(exclusion: CompiledExclusion | null, strategies: StrategyDecision[], adResults: AdAdjustment[]): StrategyOutcome {
  let best: StrategyDecision | null = null;
  for (const s of strategies) if (best === null || s.coefficient > best.coefficient) best = s;
  return {
    exclusion: exclusion ? exclusion.reason : null,
    excludedBy: exclusion ? exclusion.id : null,
    strategies,
    adResults,
    experimentTag: best ? best.experimentTag : 0,
    experimentTagName: best ? best.experimentTagName : '',
  };
}

function clamp(value: number, min: number, max: number): number {
  return value < min ? min : value > max ? max : value;
}

const NO_STRATEGIES: ReadonlyMap<string, string> = new Map();

/** Per media, the bidding strategies that serve it, our id -> its id there; two strategies sharing an id there is a problem. */
function idsOnEachMedia(strategies: readonly CompiledBidStrategy[], problems: string[]): Map<string, ReadonlyMap<string, string>> {
  return new Map(
    MEDIA_MODULES.map(({ name }) => {
      const ids = new Map<string, string>();
      const owner = new Map<string, string>();
      for (const s of strategies) {
        if (s.shadow || (s.media !== null && !s.media.has(name))) continue;
        const id = s.mediaIds.get(name) ?? s.id;
        const other = owner.get(id);
        // Our own ids used twice are refused on their own ("used twice"), once.
        if (other !== undefined && other !== s.id) problems.push(`strategies ${other} and ${s.id}: both would be "${id}" on ${name}; give one of them another mediaIds.${name}`);
        owner.set(id, s.id);
        ids.set(s.id, id);
      }
      return [name, ids];
    }),
  );
}

/**
 * The media a bidding strategy serves (null: all of them), checking its `media` and `mediaIds` against the registry.
 * A media that restricts its ids (Ocean's are numbers) is left out, with a warning, for a strategy that names no
 * media and has no id there; naming it explicitly without one is a problem.
 */
function mediaServed(s: BidStrategy, where: string, problems: string[], warnings: { media: string; text: string }[]): ReadonlySet<string> | null {
  const known = MEDIA_MODULES.map((m) => m.name);
  for (const [field, names] of [['media', s.media ?? []], ['mediaIds', Object.keys(s.mediaIds ?? {})]] as const)
    for (const name of names) if (!known.includes(name)) problems.push(`${where}.${field}: no media "${name}" (known: ${known.join(', ')})`);
  const served: string[] = [];
  for (const module of MEDIA_MODULES) {
    if (s.media && !s.media.includes(module.name)) continue;
    const id = s.mediaIds?.[module.name] ?? s.id;
    if (idOnMedia(s, module) !== null) served.push(module.name);
    else if (s.media || s.mediaIds?.[module.name] !== undefined) problems.push(`${where}: "${id}" cannot be its id on ${module.name} (${module.strategyIdPattern}): set mediaIds.${module.name}`);
    else if (s.enabled) warnings.push({ media: module.name, text: `${where}: not bidding on ${module.name}, where ids must match ${module.strategyIdPattern}: set mediaIds.${module.name} to its id there` });
  }
  return served.length === known.length ? null : new Set(served);
}

/** A strategy as a file writes it, as far as its ids on media go. */
interface WrittenStrategy {
  id: string;
  kind: string;
  enabled?: boolean | undefined;
  shadow?: boolean | undefined;
  media?: string[] | undefined;
  mediaIds?: Record<string, string> | undefined;
}

/** A bidding strategy's id on a media (its `mediaIds` entry, else its own id), or null where it does not bid. */
function idOnMedia(s: Omit<WrittenStrategy, 'kind'>, module: MediaModule): string | null {
  if (s.media && !s.media.includes(module.name)) return null;
  const id = s.mediaIds?.[module.name] ?? s.id;
  return !module.strategyIdPattern || module.strategyIdPattern.test(id) ? id : null;
}

/** A strategy file's bidding strategies that can be sent on a media, by their ids there (what strategyIdsOn holds). */
export function strategyIdsInFile(strategies: readonly WrittenStrategy[], module: MediaModule): string[] {
  return strategies.flatMap((s) => (s.kind === 'bid' && s.enabled !== false && s.shadow !== true ? (idOnMedia(s, module) ?? []) : []));
}

/** Three decimals are finer than any media acts on, and keep replies readable. */
function roundCoefficient(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** The hours of the week a schedule allows, indexed (ISO weekday - 1) x 24 + hour. */
function weekHours(schedule: NonNullable<BidStrategy['schedule']>): Uint8Array {
  const table = new Uint8Array(7 * 24);
  for (let day = 1; day <= 7; day++)
    for (let hour = 0; hour < 24; hour++)
      if ((schedule.weekdays?.includes(day) ?? true) && (schedule.hours?.includes(hour) ?? true)) table[(day - 1) * 24 + hour] = 1;
  return table;
}

const HOUR_MS = 3_600_000;
/** China has one time zone and no daylight saving: UTC+8 all year. */
const CHINA_OFFSET_HOURS = 8;
/** 1970-01-01 was a Thursday, ISO weekday 4, hour-of-week index 3 x 24. */
const EPOCH_HOUR_OF_WEEK = 3 * 24;

export function chinaHourOfWeek(epochMs: number): number {
  return (Math.floor(epochMs / HOUR_MS) + CHINA_OFFSET_HOURS + EPOCH_HOUR_OF_WEEK) % (7 * 24);
}

function strategyValue(strategy: BidStrategy, scope: ConditionScope, where: string, problems: string[]): ValueFormula | null {
  if (strategy.value === undefined) return null;
  // The flag is a term of the book's formula; next to a strategy's own it would silently do nothing.
  if (strategy.bid.assumeApproved) problems.push(`${where}.bid.assumeApproved: applies to the book's value formula only; write it into this strategy's value instead`);
  return compileValueFormula(strategy.value, scope, `${where}.value`, problems);
}

function resolveValueModels(names: StrategyFile['valueModels'], modelIndex: ReadonlyMap<string, number>, problems: string[]): ValueModelIndices {
  const index = (role: keyof ValueModelIndices) => {
    const i = modelIndex.get(names[role]);
    if (i === undefined) problems.push(`valueModels.${role}: no model "${names[role]}" in the model manifest (known: ${[...modelIndex.keys()].join(', ')})`);
    // -1 is never read: with a problem the book refuses the file.
    return i ?? -1;
  };
  return { apply: index('apply'), approve: index('approve'), risk: index('risk'), ltv: index('ltv') };
}

interface CompiledExperiments {
  layers: CompiledLayer[];
  /** Per strategy id: the layers it has an experiment in, in file order. */
  layersOf: Map<string, number[]>;
  /** Per strategy id: its bid under each arm that overrides it. */
  bidByArm: Map<string, Map<CompiledArm, BidParams>>;
}

/** The book's layers and what each strategy's experiments do to it; problems go to `problems`. */
function compileExperiments(file: StrategyFile, enabled: ReadonlyMap<string, BidStrategy>, problems: string[]): CompiledExperiments {
  const layerOfExperiment = new Map<string, string>();
  /** Per strategy, per layer: the bid fields that layer's arms override, to refuse two layers changing one field. */
  const overriddenIn = new Map<string, Map<string, Set<string>>>();
  for (const [i, experiment] of file.experiments.entries()) {
    const where = `experiments[${i}](${experiment.id})`;
    const layer = experiment.layer ?? experiment.id;
    layerOfExperiment.set(experiment.id, layer);
    for (const strategyId of experiment.strategies) if (!enabled.has(strategyId)) problems.push(`${where}: strategy "${strategyId}" is not an enabled bidding strategy`);
    for (const [j, arm] of experiment.arms.entries()) {
      const armWhere = `${where}.arms[${j}](${arm.name})`;
      for (const [strategyId, override] of Object.entries(arm.overrides)) {
        if (!experiment.strategies.includes(strategyId)) {
          problems.push(`${armWhere}: overrides strategy "${strategyId}", which is not in this experiment`);
          continue;
        }
        const fields = overriddenIn.get(strategyId) ?? new Map<string, Set<string>>();
        overriddenIn.set(strategyId, fields);
        const inLayer = fields.get(layer) ?? new Set<string>();
        fields.set(layer, inLayer);
        for (const field of Object.keys(override)) inLayer.add(field);
      }
      for (const strategyId of experiment.strategies) {
        const base = enabled.get(strategyId);
        if (base === undefined) continue;
        const merged = bidSchema.safeParse({ ...base.bid, ...arm.overrides[strategyId] });
        if (!merged.success) problems.push(...issueProblems(merged.error.issues, undefined, `${armWhere}.overrides.${strategyId}`));
        else if (merged.data.assumeApproved && base.value !== undefined && !base.bid.assumeApproved)
          problems.push(`${armWhere}.overrides.${strategyId}.assumeApproved: applies to the book's value formula only, and ${strategyId} has its own value`);
      }
      for (const [strategyId, creativeId] of Object.entries(arm.creatives)) {
        const strategy = enabled.get(strategyId);
        if (!experiment.strategies.includes(strategyId)) problems.push(`${armWhere}.creatives: strategy "${strategyId}" is not in this experiment`);
        else if (strategy && !strategy.creatives.some((c) => c.id === creativeId))
          problems.push(`${armWhere}.creatives.${strategyId}: creative ${creativeId} is not one of the strategy's creatives (${strategy.creatives.map((c) => c.id).join(', ')})`);
      }
    }
  }
  for (const [strategyId, byLayer] of overriddenIn) {
    const seen = new Map<string, string>();
    for (const [layer, fields] of byLayer)
      for (const field of fields) {
        const other = seen.get(field);
        if (other !== undefined) problems.push(`experiments: layers "${other}" and "${layer}" both change ${strategyId}.${field}; a device in both could not have both`);
        else seen.set(field, layer);
      }
  }

  const { layers, layerOf } = compileLayers(file.layers, file.experiments, problems);
  const layersOf = new Map<string, number[]>();
  for (const experiment of file.experiments)
    for (const strategyId of experiment.strategies) {
      const list = layersOf.get(strategyId) ?? [];
      const layer = layerOf.get(experiment.id);
      if (layer !== undefined && !list.includes(layer)) list.push(layer);
      layersOf.set(strategyId, list);
    }
  const bidByArm = new Map<string, Map<CompiledArm, BidParams>>();
  for (const layer of layers)
    for (const arm of layer.arms)
      for (const [strategyId, override] of arm.overrides) {
        const base = enabled.get(strategyId);
        if (!base) continue;
        const byArm = bidByArm.get(strategyId) ?? new Map<CompiledArm, BidParams>();
        byArm.set(arm, { ...base.bid, ...override });
        bidByArm.set(strategyId, byArm);
      }
  return { layers, layersOf, bidByArm };
}

/** Allowed, but the expected value no longer moves the coefficient: every device the strategy takes gets the same one. */
function bidWarnings(bid: BidParams, where: string): string[] {
  if (bid.minCoefficient === bid.maxCoefficient) return [`${where}: minCoefficient = maxCoefficient = ${bid.minCoefficient}, so every device taken gets that coefficient`];
  if (bid.exponent === 0) return [`${where}: exponent 0 gives every device taken the same coefficient, ${clamp(1, bid.minCoefficient, bid.maxCoefficient)}`];
  return [];
}

/** The strategy file as validated, and where it came from, so the book's own refusals name it too. */
export type ParsedStrategyFile = StrategyFile & { readonly source: string };

export function parseStrategyFile(json: unknown, source: string): ParsedStrategyFile {
  const parsed = strategyFileSchema.safeParse(json);
  if (!parsed.success) throw invalidFile(source, issueProblems(parsed.error.issues, json));
  return { ...parsed.data, source };
}

/** One error for every problem of a file, one `  <path>: <message>` line each, with the count up front. */
function invalidFile(source: string, problems: readonly string[]): Error {
  const count = problems.length === 1 ? '1 error' : `${problems.length} errors`;
  return new Error(`${source} is invalid (${count}):\n${problems.map((problem) => `  ${problem}`).join('\n')}`);
}

/** Arrays whose entries people know by a name, not a position: the field that holds it. */
const NAMED_BY: ReadonlyMap<PropertyKey, string> = new Map([
  ['strategies', 'id'],
  ['experiments', 'id'],
  ['arms', 'name'],
]);

/**
 * zod issues as `<path>: <message>`, paths written like the book's own, `strategies[7](acq_prime_new).bid`: the
 * names come from `input`, the JSON that was validated, and the path continues `at`.
 */
function issueProblems(issues: readonly { path: readonly PropertyKey[]; message: string }[], input: unknown, at = ''): string[] {
  return issues.map((issue) => {
    let path = at;
    let node = input;
    let parentKey: PropertyKey | undefined;
    for (const key of issue.path) {
      node = typeof node === 'object' && node !== null ? (node as Record<PropertyKey, unknown>)[key] : undefined;
      if (typeof key === 'number') {
        const nameField = parentKey === undefined ? undefined : NAMED_BY.get(parentKey);
        const name = nameField !== undefined && typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[nameField] : undefined;
        path += typeof name === 'string' ? `[${key}](${name})` : `[${key}]`;
      } else path += path === '' ? String(key) : `.${String(key)}`;
      parentKey = key;
    }
    return `${path || '(root)'}: ${issue.message}`;
  });
}

export function loadStrategyBook(path: string, profile: ProfileSchema, modelNames: readonly string[]): StrategyBook {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`strategies ${path}: ${(err as Error).message}`);
  }
  return compileStrategyBook(json, `strategies ${path}`, profile, modelNames);
}

/** A book from its JSON (a file's, or one sent to the admin port); `source` names it in error messages. */
export function compileStrategyBook(json: unknown, source: string, profile: ProfileSchema, modelNames: readonly string[]): StrategyBook {
  return new StrategyBook(parseStrategyFile(json, source), profile, modelNames, bookVersion(json));
}
