import type { DecisionFacts } from '../engine/engine.js';
import { DEVICE_ID_KIND_NAMES, type BidContext, type Decision, type DeviceIdKind } from '../engine/types.js';
import { readField, type ProfileSchema } from '../store/profile-schema.js';
import { decidedVerdict, hasCoefficient, hasValue, VERDICT_NAMES, Verdict, type StrategyBook, type StrategyOutline } from '../strategy/book.js';
import type { BidParams, Condition } from '../strategy/schema.js';

/**
 * Explain: why a device got what it got. Built from what the serving path recorded while it decided (the facts,
 * the verdicts, the book's DecideScratch) and from the book as written; nothing here decides again. The inputs of
 * each formula are shown next to the value the serving path computed from them.
 */
export interface Explanation {
  request: { media: string; traceId: string; os: string; deviceIds: { kind: string; md5: string }[]; platformExperimentIds: number[]; secondRequest: boolean };
  versions: { book: string; models: string; store: string };
  device: { key: string; kind: string; known: boolean; profile: Record<string, number | string[] | null> | null } | null;
  scores: Record<string, number> | null;
  exclusions: { id: string; reason: string; when: Condition; result: 'matched' | 'did_not_match' | 'not_evaluated' }[];
  strategies: StrategyExplanation[];
  /** The device's arm in every layer of the book (layers where no experiment covers it are left out). */
  arms: { layer: string; experiment: string; arm: string; tag: number }[];
  decision: { code: number; reason: string; cacheTtlSeconds: number; requestTag: number; requestTagName: string; processingTimeUs: number };
  /** The reply as the media will read it. */
  reply: Record<string, unknown>;
}

export interface StrategyExplanation {
  id: string;
  verdict: (typeof VERDICT_NAMES)[number];
  when: Condition;
  /** Where and when it bids, and its rank in a capped reply, as written. */
  media: string[] | null;
  schedule: StrategyOutline['schedule'];
  priority: number;
  /** The bid parameters in force for this device (the arm's overrides applied). */
  bid: BidParams;
  arm: { experiment: string; arm: string; tag: number } | null;
  value: { fen: number; formula: string } | null;
  /** `sent`: as sent, or for a capped or shadow strategy as it would have been. */
  coefficient: { raw: number; min: number; max: number; sent: number } | null;
  creative: { rule: number; id: number; when: Condition | null; share: number | null } | null;
}

export function explainDecision(context: BidContext, decision: Decision, reply: Record<string, unknown>, profile: ProfileSchema): Explanation {
  const facts = decision.facts;
  const book = facts?.parts.book ?? null;
  const scored = facts !== null && decision.modelVersion !== '';
  return {
    request: {
      media: context.media,
      traceId: context.requestId,
      os: ['unknown', 'ios', 'android', 'other'][context.os]!,
      deviceIds: context.deviceIds.map((id) => ({ kind: DEVICE_ID_KIND_NAMES[id.kind], md5: Buffer.from(id.key).toString('hex') })),
      platformExperimentIds: context.platformExperimentIds,
      secondRequest: context.secondRequest,
    },
    versions: { book: book?.version ?? '', models: decision.modelVersion, store: facts?.parts.store.version ?? '' },
    device: facts === null ? null : describeDevice(context, facts, profile),
    scores: scored ? Object.fromEntries(facts.parts.scorer.modelNames.map((name, i) => [name, facts.scores[facts.scoresOffset + i]!])) : null,
    exclusions: book === null ? [] : explainExclusions(book, facts!.excludedBy, scored),
    strategies: book === null || facts!.excludedBy !== null ? [] : explainStrategies(book, facts!, decision),
    arms: book === null ? [] : book.layersOutline().flatMap((layer) => {
      const arm = layer.armFor(facts!.deviceKey, 0, context.platformExperimentIds);
      return arm ? [{ layer: layer.id, experiment: arm.experiment, arm: arm.name, tag: arm.tag }] : [];
    }),
    decision: {
      code: decision.code,
      reason: decision.reason,
      cacheTtlSeconds: decision.cacheTtlSeconds,
      requestTag: decision.experimentTag,
      requestTagName: decision.experimentTagName,
      processingTimeUs: decision.processingTimeUs,
    },
    reply,
  };
}

function describeDevice(context: BidContext, facts: DecisionFacts, profile: ProfileSchema): NonNullable<Explanation['device']> {
  const kind = context.deviceIds.find((id) => id.key === facts.deviceKey)?.kind;
  let fields: Record<string, number | string[] | null> | null = null;
  if (facts.records !== null) {
    fields = {};
    for (const field of profile.fields) {
      const value = readField(facts.records, facts.recordOffset, field);
      fields[field.name] = field.bits ? Object.entries(field.bits).filter(([, bit]) => (value & (1 << bit)) !== 0).map(([name]) => name) : Number.isNaN(value) ? null : value;
    }
  }
  return { key: Buffer.from(facts.deviceKey).toString('hex'), kind: kind ? DEVICE_ID_KIND_NAMES[kind as DeviceIdKind] : '', known: facts.records !== null, profile: fields };
}

/** The exclusions in the order the serving path tries them, and how far it got: the first match stops it. */
function explainExclusions(book: StrategyBook, excludedBy: string | null, scored: boolean): Explanation['exclusions'] {
  const { beforeScoring, afterScoring } = book.exclusionOrder();
  const results = new Map<string, Explanation['exclusions'][number]['result']>();
  let stopped = false;
  const walk = (ids: readonly string[], evaluated: boolean) => {
    for (const id of ids) {
      if (stopped || !evaluated) {
        if (!results.has(id)) results.set(id, 'not_evaluated');
        continue;
      }
      if (id === excludedBy) {
        results.set(id, 'matched');
        stopped = true;
      } else results.set(id, 'did_not_match');
    }
  };
  walk(beforeScoring, true);
  // A score exclusion's score-free part may already have been tried before scoring; its verdict is the later one.
  for (const id of afterScoring) if (results.get(id) === 'did_not_match') results.delete(id);
  walk(afterScoring, scored);
  return book.exclusionsOutline().map((e) => ({ id: e.id, reason: e.reason, when: e.when, result: results.get(e.id) ?? 'not_evaluated' }));
}

function explainStrategies(book: StrategyBook, facts: DecisionFacts, decision: Decision): StrategyExplanation[] {
  const { scratch } = book;
  const outline = book.strategiesOutline();
  const models = book.valueModelIndices;
  const score = (index: number) => facts.scores[facts.scoresOffset + index]!;
  return outline.map((strategy, i) => {
    const verdict = facts.mask[i]! as Verdict;
    const decided = decidedVerdict(verdict) && decision.modelVersion !== '';
    const arm = decided ? scratch.arm[i] ?? null : null;
    const bid = decided ? scratch.bid[i]! : strategy.bid;
    const valued = decided && hasValue(verdict);
    let value: StrategyExplanation['value'] = null;
    if (valued && strategy.value !== null) {
      value = { fen: scratch.valueFen[i]!, formula: `${strategy.value.source} with ${strategy.value.inputs(facts.scores, facts.scoresOffset, facts.records, facts.recordOffset, bid)}` };
    } else if (valued) {
      const [apply, approve, risk, ltv] = [score(models.apply), bid.assumeApproved ? 1 : score(models.approve), score(models.risk), score(models.ltv) * 100];
      value = {
        fen: scratch.valueFen[i]!,
        formula:
          `P(apply) ${fmt(apply)} x P(approved) ${bid.assumeApproved ? '1 (assumeApproved)' : fmt(approve)}` +
          ` x ((1 - P(default) ${fmt(risk)}) x LTV ${fmt(ltv)} fen - P(default) x loss ${bid.lossGivenDefaultFen} fen)`,
      };
    }
    return {
      id: strategy.id,
      verdict: VERDICT_NAMES[verdict],
      when: strategy.when,
      media: strategy.media,
      schedule: strategy.schedule,
      priority: strategy.priority,
      bid,
      arm: arm ? { experiment: arm.experiment, arm: arm.name, tag: arm.tag } : null,
      value,
      coefficient: decided && hasCoefficient(verdict) ? { raw: scratch.rawCoefficient[i]!, min: bid.minCoefficient, max: bid.maxCoefficient, sent: scratch.coefficient[i]! } : null,
      creative: decided && hasCoefficient(verdict) ? { rule: scratch.creativeRule[i]!, ...strategy.creatives[scratch.creativeRule[i]!]! } : null,
    };
  });
}

/** Four significant digits, whole numbers from 100 up: enough to follow the arithmetic, short enough to read. */
function fmt(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(0) : String(Number(n.toPrecision(4)));
}

/** The explanation for people: one section per pipeline stage, in the order the engine went through them. */
export function explanationText(e: Explanation): string {
  const lines: string[] = [];
  const r = e.request;
  lines.push(`request ${r.traceId} (${r.media}, ${r.os}${r.secondRequest ? ', second request' : ''})`);
  for (const id of r.deviceIds) lines.push(`  id ${id.kind} ${id.md5}`);
  if (r.platformExperimentIds.length > 0) lines.push(`  platform experiments ${r.platformExperimentIds.join(', ')}`);
  lines.push(`versions: book ${e.versions.book || '-'}, models ${e.versions.models || '-'}, store ${e.versions.store || '-'}`);
  if (e.device) {
    lines.push(`device ${e.device.key} (${e.device.kind}): ${e.device.known ? 'known' : 'unknown, no profile'}`);
    for (const [name, value] of Object.entries(e.device.profile ?? {}))
      lines.push(`  ${name} = ${Array.isArray(value) ? `[${value.join(', ')}]` : value === null ? 'missing' : fmt(value)}`);
  } else lines.push('device: none usable');
  lines.push(e.scores ? `scores: ${Object.entries(e.scores).map(([m, s]) => `${m} ${fmt(s)}`).join(', ')}` : 'scores: not scored');
  if (e.exclusions.length > 0) lines.push('exclusions:');
  for (const x of e.exclusions) lines.push(`  ${x.id} (${x.reason}): ${x.result.replace(/_/g, ' ')}  when ${JSON.stringify(x.when)}`);
  if (e.strategies.length > 0) lines.push('strategies:');
  for (const s of e.strategies) {
    lines.push(`  ${s.id}: ${s.verdict.replace(/_/g, ' ')}${s.arm ? `  [${s.arm.experiment}: ${s.arm.arm}, tag ${s.arm.tag}]` : ''}`);
    if (s.verdict === 'not_candidate' || s.verdict === 'scores_failed') lines.push(`    when ${JSON.stringify(s.when)}`);
    if (s.verdict === 'other_media') lines.push(`    media ${s.media?.join(', ') ?? 'all but those whose strategy ids it does not fit (see mediaIds)'}`);
    if (s.verdict === 'not_asked') lines.push(`    the ${r.media} request asked about other strategies only`);
    if (s.verdict === 'off_schedule') lines.push(`    schedule ${JSON.stringify(s.schedule)} (UTC+8)`);
    if (s.verdict === 'capped') lines.push(`    priority ${s.priority}: the reply was full with higher ones`);
    if (s.value) lines.push(`    value = ${s.value.formula} = ${fmt(s.value.fen)} fen (floor ${s.bid.minValueFen}, target ${s.bid.targetValueFen})`);
    if (s.coefficient)
      lines.push(`    coefficient = (${fmt(s.value!.fen)} / ${s.bid.targetValueFen}) ^ ${s.bid.exponent} = ${fmt(s.coefficient.raw)} -> clamp ${s.coefficient.min}..${s.coefficient.max}, round -> ${s.coefficient.sent}${s.verdict === 'taken' ? '' : ' (not sent)'}`);
    if (s.creative) {
      const how = s.creative.share !== null ? `, sampled: share ${s.creative.share} among those that suit` : s.creative.when ? '' : ', the default';
      lines.push(`    creative ${s.creative.id} (rule ${s.creative.rule}${s.creative.when ? ` when ${JSON.stringify(s.creative.when)}` : ''}${how})`);
    }
  }
  if (e.arms.length > 0) lines.push(`arms: ${e.arms.map((a) => `${a.experiment}=${a.arm} (${a.tag})`).join(', ')}`);
  const d = e.decision;
  lines.push(`decision: code ${d.code} ${d.reason}, cache ${d.cacheTtlSeconds} s${d.requestTag ? `, request tag ${d.requestTag} ${d.requestTagName}` : ''}`);
  lines.push(`reply: ${JSON.stringify(e.reply)}`);
  return lines.join('\n') + '\n';
}
