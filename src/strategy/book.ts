import { readFileSync } from 'node:fs';
import type { AdAdjustment, CandidateAd, StrategyDecision } from '../engine/types.js';
import type { ProfileSchema } from '../store/profile-schema.js';
import { compileCondition, splitByStage, sufficientBeforeScoring, type CompiledCondition, type ConditionScope } from './conditions.js';
import type { DeviceView } from './device-view.js';
import { compileExperiment, type CompiledArm, type CompiledExperiment } from './experiments.js';
import { bidSchema, MEDIA_MAX_COEFFICIENT, MEDIA_MIN_COEFFICIENT, strategyFileSchema, type BidParams, type StrategyFile } from './schema.js';

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

interface CompiledBidStrategy {
  id: string;
  beforeScoring: CompiledCondition;
  afterScoring: CompiledCondition;
  bid: BidParams;
  experiment: CompiledExperiment | null;
  creatives: CompiledCreative[];
  preferredCreativeBoost: number;
  templateFactors: ReadonlyMap<number, number>;
}

/** Per-request scratch the engine owns: which bidding strategies passed the profile stage. */
export type StrategyMask = Uint8Array;

export interface ScreenResult {
  /** A profile-only exclusion matched: reject with this reason, no scoring. */
  exclusion: ExclusionReason | null;
  /** How many bidding strategies passed the profile stage (0: nobody can want the device, no scoring). */
  candidates: number;
}

export interface StrategyOutcome {
  exclusion: ExclusionReason | null;
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

export class StrategyBook {
  readonly bidStrategyIds: readonly string[];
  readonly cacheTtlSeconds: StrategyFile['cacheTtlSeconds'];
  private readonly exclusionsBeforeScoring: CompiledExclusion[];
  private readonly exclusionsAfterScoring: CompiledExclusion[];
  private readonly bidStrategies: CompiledBidStrategy[];
  private readonly byId: ReadonlyMap<string, CompiledBidStrategy>;
  /** The first experiment's arm is also reported at request level (Tencent's top-level dsp_tag). */
  private readonly primaryExperiment: CompiledExperiment | null;
  private readonly value: ValueModelIndices;

  constructor(file: StrategyFile, profile: ProfileSchema, modelNames: readonly string[]) {
    const scope: ConditionScope = { profile, modelIndex: new Map(modelNames.map((name, i) => [name, i])) };
    this.cacheTtlSeconds = file.cacheTtlSeconds;
    this.value = resolveValueModels(file.valueModels, scope.modelIndex);

    const ids = new Set<string>();
    for (const s of file.strategies) {
      if (ids.has(s.id)) throw new Error(`strategies: id "${s.id}" is used twice`);
      ids.add(s.id);
    }

    this.exclusionsBeforeScoring = [];
    this.exclusionsAfterScoring = [];
    for (const [i, s] of file.strategies.entries()) {
      if (s.kind !== 'exclude' || !s.enabled) continue;
      const where = `strategies[${i}](${s.id}).when`;
      const condition = compileCondition(s.when, scope, where);
      if (!condition.needsScores) {
        this.exclusionsBeforeScoring.push({ id: s.id, reason: s.reason, condition });
        continue;
      }
      const early = sufficientBeforeScoring(s.when);
      if (early) this.exclusionsBeforeScoring.push({ id: s.id, reason: s.reason, condition: compileCondition(early, scope, where) });
      this.exclusionsAfterScoring.push({ id: s.id, reason: s.reason, condition });
    }

    const bidSources = file.strategies.flatMap((s, i) => (s.kind === 'bid' && s.enabled ? [{ s, i }] : []));
    const experimentOf = compileExperiments(file, (id, where) => {
      const found = bidSources.find(({ s }) => s.id === id);
      if (!found) throw new Error(`${where}: strategy "${id}" is not an enabled bidding strategy`);
      return found.s.bid;
    });
    this.bidStrategies = bidSources.map(({ s, i }) => {
      const where = `strategies[${i}](${s.id})`;
      const { beforeScoring, afterScoring } = splitByStage(s.when);
      return {
        id: s.id,
        beforeScoring: compileCondition(beforeScoring, scope, `${where}.when`),
        afterScoring: compileCondition(afterScoring, scope, `${where}.when`),
        bid: s.bid,
        experiment: experimentOf.get(s.id) ?? null,
        creatives: s.creatives.map((c, j) => ({
          id: c.id,
          condition: c.when ? compileCondition(c.when, scope, `${where}.creatives[${j}].when`) : null,
        })),
        preferredCreativeBoost: s.secondRequest.preferredCreativeBoost,
        templateFactors: new Map(Object.entries(s.secondRequest.templateFactors).map(([k, v]) => [Number(k), v])),
      };
    });
    this.bidStrategyIds = this.bidStrategies.map((s) => s.id);
    this.byId = new Map(this.bidStrategies.map((s) => [s.id, s]));
    this.primaryExperiment = file.experiments.length > 0 ? experimentOf.get(file.experiments[0]!.strategies[0]!)! : null;
  }

  get bidStrategyCount(): number {
    return this.bidStrategies.length;
  }

  screen(view: DeviceView, mask: StrategyMask): ScreenResult {
    for (const exclusion of this.exclusionsBeforeScoring)
      if (exclusion.condition.test(view)) return { exclusion: exclusion.reason, candidates: 0 };
    let candidates = 0;
    for (let i = 0; i < this.bidStrategies.length; i++) {
      const pass = this.bidStrategies[i]!.beforeScoring.test(view);
      mask[i] = pass ? 1 : 0;
      if (pass) candidates++;
    }
    return { exclusion: null, candidates };
  }

  /**
   * With scores in the view: score-based exclusions, then each candidate strategy's expected value, coefficient and
   * creative; for a second request, a raise factor for every candidate creative (and only those).
   */
  decide(view: DeviceView, mask: StrategyMask, key: Uint8Array, keyOffset: number, candidateAds: readonly CandidateAd[]): StrategyOutcome {
    const primaryArm = this.primaryExperiment ? this.primaryExperiment.armFor(key, keyOffset) : null;
    for (const exclusion of this.exclusionsAfterScoring)
      if (exclusion.condition.test(view)) return outcome(exclusion.reason, [], [], primaryArm);

    const scores = view.scores;
    const at = view.scoresOffset;
    const pApply = scores[at + this.value.apply]!;
    const pApprove = scores[at + this.value.approve]!;
    const pRisk = scores[at + this.value.risk]!;
    const ltvFen = scores[at + this.value.ltv]! * 100;

    const decisions: StrategyDecision[] = [];
    for (let i = 0; i < this.bidStrategies.length; i++) {
      if (mask[i] === 0) continue;
      const strategy = this.bidStrategies[i]!;
      if (!strategy.afterScoring.test(view)) continue;
      const arm = strategy.experiment ? strategy.experiment.armFor(key, keyOffset) : null;
      const bid = arm ? arm.bidByStrategy.get(strategy.id)! : strategy.bid;
      const approved = bid.assumeApproved ? 1 : pApprove;
      const valueFen = pApply * approved * ((1 - pRisk) * ltvFen - pRisk * bid.lossGivenDefaultFen);
      if (!(valueFen > 0) || valueFen < bid.minValueFen) continue;
      const coefficient = roundCoefficient(clamp(Math.pow(valueFen / bid.targetValueFen, bid.exponent), bid.minCoefficient, bid.maxCoefficient));
      decisions.push({
        strategyId: strategy.id,
        coefficient,
        creativeId: chooseCreative(strategy, view),
        cpaPriceFen: bid.cpaBidFen > 0 ? Math.round(bid.cpaBidFen * coefficient) : 0,
        cpcPriceFen: bid.cpcBidFen > 0 ? Math.max(10, Math.round(bid.cpcBidFen * coefficient)) : 0,
        experimentTag: arm ? arm.tag : 0,
        experimentTagName: arm ? arm.name : '',
        pcvr: pApply * approved,
      });
    }
    const adResults = candidateAds.length > 0 && decisions.length > 0 ? this.adjustCandidateAds(candidateAds, decisions) : [];
    return outcome(null, decisions, adResults, primaryArm);
  }

  /**
   * The scores did not come back in time: take the device for every strategy that passed the profile stage at
   * coefficient 1.0 with its default creative. Only used when the operator chose the `neutral` fallback.
   */
  neutral(mask: StrategyMask, key: Uint8Array, keyOffset: number): StrategyOutcome {
    const primaryArm = this.primaryExperiment ? this.primaryExperiment.armFor(key, keyOffset) : null;
    const decisions: StrategyDecision[] = [];
    for (let i = 0; i < this.bidStrategies.length; i++) {
      if (mask[i] === 0) continue;
      const strategy = this.bidStrategies[i]!;
      const arm = strategy.experiment ? strategy.experiment.armFor(key, keyOffset) : null;
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
    return outcome(null, decisions, [], primaryArm);
  }

  /** The request-level experiment bucket of a device, for replies that carry no strategy (rejects). */
  primaryArm(key: Uint8Array, keyOffset: number): { tag: number; name: string } | null {
    return this.primaryExperiment ? this.primaryExperiment.armFor(key, keyOffset) : null;
  }

  private adjustCandidateAds(ads: readonly CandidateAd[], decisions: StrategyDecision[]): AdAdjustment[] {
    let best = decisions[0]!;
    for (const d of decisions) if (d.coefficient > best.coefficient) best = d;
    return ads.map((ad) => {
      // An ad bound to a strategy id we do not know is not ours to price; an unbound ad gets our best strategy.
      const decision = ad.outTargetId === '' ? best : decisions.find((d) => d.strategyId === ad.outTargetId);
      const strategy = ad.outTargetId === '' ? this.byId.get(best.strategyId) : this.byId.get(ad.outTargetId);
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

function chooseCreative(strategy: CompiledBidStrategy, view: DeviceView): number {
  for (const creative of strategy.creatives) if (creative.condition === null || creative.condition.test(view)) return creative.id;
  return strategy.creatives[strategy.creatives.length - 1]!.id;
}

function outcome(exclusion: ExclusionReason | null, strategies: StrategyDecision[], adResults: AdAdjustment[], arm: CompiledArm | null): StrategyOutcome {
  return { exclusion, strategies, adResults, experimentTag: arm ? arm.tag : 0, experimentTagName: arm ? arm.name : '' };
}

function clamp(value: number, min: number, max: number): number {
  return value < min ? min : value > max ? max : value;
}

/** Three decimals are finer than any media acts on, and keep replies readable. */
function roundCoefficient(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function resolveValueModels(names: StrategyFile['valueModels'], modelIndex: ReadonlyMap<string, number>): ValueModelIndices {
  const index = (role: keyof ValueModelIndices) => {
    const i = modelIndex.get(names[role]);
    if (i === undefined) throw new Error(`valueModels.${role}: no model "${names[role]}" in the model manifest (known: ${[...modelIndex.keys()].join(', ')})`);
    return i;
  };
  return { apply: index('apply'), approve: index('approve'), risk: index('risk'), ltv: index('ltv') };
}

function compileExperiments(file: StrategyFile, bidOf: (id: string, where: string) => BidParams): Map<string, CompiledExperiment> {
  const byStrategy = new Map<string, CompiledExperiment>();
  for (const [i, experiment] of file.experiments.entries()) {
    const baseBid = (id: string) => bidOf(id, `experiments[${i}](${experiment.id})`);
    for (const arm of experiment.arms) {
      for (const strategyId of Object.keys(arm.overrides))
        if (!experiment.strategies.includes(strategyId))
          throw new Error(`experiments[${i}](${experiment.id}).arms(${arm.name}): overrides strategy "${strategyId}", which is not in this experiment`);
      for (const strategyId of experiment.strategies) {
        const merged = bidSchema.safeParse({ ...baseBid(strategyId), ...arm.overrides[strategyId] });
        if (!merged.success) throw new Error(`experiments[${i}](${experiment.id}).arms(${arm.name}) on "${strategyId}": ${merged.error.issues[0]!.message}`);
      }
    }
    const compiled = compileExperiment(experiment, baseBid);
    for (const strategyId of experiment.strategies) {
      if (byStrategy.has(strategyId)) throw new Error(`experiments[${i}](${experiment.id}): strategy "${strategyId}" is already in experiment "${byStrategy.get(strategyId)!.id}"`);
      byStrategy.set(strategyId, compiled);
    }
  }
  return byStrategy;
}

export function parseStrategyFile(json: unknown, source: string): StrategyFile {
  const parsed = strategyFileSchema.safeParse(json);
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 10).map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new Error(`${source} is invalid:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

export function loadStrategyBook(path: string, profile: ProfileSchema, modelNames: readonly string[]): StrategyBook {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`strategies ${path}: ${(err as Error).message}`);
  }
  return new StrategyBook(parseStrategyFile(json, `strategies ${path}`), profile, modelNames);
}
