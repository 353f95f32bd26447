import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { beforeEach, describe, expect, test } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { Engine, type AsyncDeviceStore, type DecisionSink, type DeviceLookupJob, type EngineParts, type Scorer } from '../../src/engine/engine.js';
import { DeviceIdKind, Os, type BidContext, type CandidateAd, type Decision } from '../../src/engine/types.js';
import { createMetrics, type Metrics } from '../../src/observe/metrics.js';
import { InlineScorer } from '../../src/scoring/inline-scorer.js';
import { DEFAULT_MANIFEST_PATH } from '../../src/scoring/manifest.js';
import type { ScoringJob } from '../../src/scoring/pool.js';
import { allocateBatch, BatchScorer } from '../../src/scoring/scorer.js';
import { EmbeddedDeviceStore } from '../../src/store/embedded.js';
import { ProfileRecordWriter } from '../../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../../src/store/profile-schema.js';
import { parseStrategyFile, StrategyBook } from '../../src/strategy/book.js';
import { experimentBucket } from '../../src/strategy/experiments.js';
import { bookVersion } from '../../src/strategy/versions.js';

/**
 * The engine end to end, minus the network: a small real embedded store, the demo strategy book, the demo models
 * scored inline, real metrics. Scorers are wrapped only to count submissions or, as fault injection, to miss the
 * deadline.
 */

const STRATEGIES_PATH = new URL('../../data/strategies.json', import.meta.url).pathname;
const DEMO_SALT = 'prime-curve-2026w48';
const profile = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const inline = new InlineScorer(new BatchScorer(DEFAULT_MANIFEST_PATH, DEFAULT_PROFILE_SCHEMA_PATH));
const demoFile = JSON.parse(readFileSync(STRATEGIES_PATH, 'utf8'));
const demoBook = new StrategyBook(parseStrategyFile(demoFile, 'demo'), profile, inline.modelNames, bookVersion(demoFile));
/** The demo book with a fallback cache time of its own, so a fallback reply cannot pass for a take or a reject. */
const FALLBACK_TTL = 7200;
const fallbackFile = { ...demoFile, cacheTtlSeconds: { ...demoFile.cacheTtlSeconds, fallback: FALLBACK_TTL } };
const fallbackBook = new StrategyBook(parseStrategyFile(fallbackFile, 'demo'), profile, inline.modelNames, bookVersion(fallbackFile));
const defaultEngineConfig = loadConfig({ env: {} }).engine;

const md5 = (text: string) => new Uint8Array(createHash('md5').update(text).digest());

/** The demo experiment's arm for a device key, computed from the bucket alone. */
function demoArm(key: Uint8Array): { tag: number; name: string } {
  return experimentBucket(DEMO_SALT, key) < 5000 ? { tag: 480001, name: 'control' } : { tag: 480002, name: 'steep' };
}

/** Two keys in different arms of the demo experiment, so that keying by the wrong one shows. */
function keysInDifferentArms(prefix: string): [Uint8Array, Uint8Array] {
  const first = md5(`${prefix}-0`);
  for (let i = 1; ; i++) {
    const other = md5(`${prefix}-${i}`);
    if (demoArm(other).tag !== demoArm(first).tag) return [first, other];
  }
}

// --- the store ---------------------------------------------------------------------------------------------

const writer = new ProfileRecordWriter(profile);
function record(flags: string[], fields: Record<string, number>): Uint8Array {
  writer.clear();
  const flagProblem = writer.writeFlags(profile.field('flags'), flags);
  if (flagProblem) throw new Error(flagProblem);
  for (const [name, value] of Object.entries(fields)) {
    const problem = writer.write(profile.field(name), value);
    if (problem) throw new Error(problem);
  }
  return writer.record.slice();
}

const PRIME_FIELDS = { multi_lender_count: 0, credit_band: 1, finance_app_count: 8, region_tier: 1, income_score: 0.9, engagement_score: 0.9 };
const PRIME = { oaid: md5('prime-oaid'), imei: md5('prime-imei'), record: record([], PRIME_FIELDS) };
const BORROWER = {
  oaid: md5('borrower-oaid'),
  imei: md5('borrower-imei'),
  record: record(['registered', 'applied', 'approved', 'active_borrower'], { days_since_last_active: 3, repay_score: 0.9 }),
};
const BLACKLISTED = { oaid: md5('blacklisted-oaid'), record: record(['blacklisted'], { multi_lender_count: 1 }) };
/** No risky flag or field: only the risk model (about 0.62 for this profile) excludes it, after scoring. */
const RISKY = { oaid: md5('risky-oaid'), record: record([], { multi_lender_count: 3, credit_band: 5, income_score: 0.05, repay_score: 0.05 }) };
/** Registered with poor credit: no demo bidding strategy can want it. */
const NOBODY = { oaid: md5('nobody-oaid'), record: record(['registered'], { credit_band: 5 }) };

const store = EmbeddedDeviceStore.create(profile);
store.addDevice(PRIME.record, Buffer.concat([PRIME.oaid, PRIME.imei]));
store.addDevice(BORROWER.record, Buffer.concat([BORROWER.oaid, BORROWER.imei]));
store.addDevice(BLACKLISTED.record, BLACKLISTED.oaid);
store.addDevice(RISKY.record, RISKY.oaid);
store.addDevice(NOBODY.record, NOBODY.oaid);

// --- scorers and the sink ----------------------------------------------------------------------------------

/** The real inline scorer, counting what it is asked to score. */
class CountingScorer implements Scorer {
  readonly modelNames = inline.modelNames;
  readonly modelVersion = inline.modelVersion;
  submits = 0;
  submit(job: ScoringJob): void {
    this.submits++;
    inline.submit(job);
  }
}

/** Fault injection: scores never come back in time, so the pool's deadline callback answers instead. */
class MissingDeadlineScorer implements Scorer {
  readonly modelNames = inline.modelNames;
  readonly modelVersion = inline.modelVersion;
  deadlines: number[] = [];
  submit(job: ScoringJob): void {
    this.deadlines.push(job.deadline);
    job.onDeadline();
  }
}

class RecordingSink implements DecisionSink {
  readonly decisions: Decision[] = [];
  readonly contexts: BidContext[] = [];
  readonly failures: string[] = [];
  deliver(context: BidContext, decision: Decision): void {
    this.contexts.push(context);
    this.decisions.push(decision);
  }
  fail(_context: BidContext, stage: string): void {
    this.failures.push(stage);
  }
}

let metrics: Metrics;
beforeEach(() => {
  metrics = createMetrics({ processMetrics: false });
});

function engineWith(options: { scorer?: Scorer; config?: Partial<Config['engine']>; book?: StrategyBook; media?: EngineParts['media'] } = {}): Engine {
  return new Engine({
    // A generous deadline: the first scores of a cold (not warmed-up) scorer take milliseconds.
    config: { ...defaultEngineConfig, scoreDeadlineMicros: 50_000, ...options.config },
    media: options.media ?? {},
    book: options.book ?? demoBook,
    store,
    scorer: options.scorer ?? new CountingScorer(),
    profile,
    metrics,
  });
}

function bidRequest(ids: [DeviceIdKind, Uint8Array][], extra: Partial<BidContext> = {}): BidContext {
  return {
    media: 'test',
    requestId: 'r1',
    requestIdBytes: null,
    isPing: false,
    isTest: false,
    os: Os.ANDROID,
    deviceIds: ids.map(([kind, key]) => ({ kind, key })),
    refusedDeviceIds: 0,
    platformExperimentIds: [],
    secondRequest: false,
    candidateAds: [],
    askedStrategyIds: null,
    wantsJson: false,
    ...extra,
  };
}

/** Handles one request and returns its decision, which must have been delivered exactly once, before handle returned. */
function decide(engine: Engine, context: BidContext, receivedAt = performance.now()): Decision {
  const sink = new RecordingSink();
  engine.handle(context, sink, receivedAt);
  expect(sink.decisions).toHaveLength(1);
  expect(sink.contexts[0]).toBe(context);
  return sink.decisions[0]!;
}

async function counterValue(metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> }, labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  const found = values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  return found?.value ?? 0;
}

/** The coefficient the demo book must give acq_prime_new for a record, computed from the models' own scores. */
function expectedPrimeCoefficient(rec: Uint8Array, key: Uint8Array): number {
  const scorer = new BatchScorer(DEFAULT_MANIFEST_PATH, DEFAULT_PROFILE_SCHEMA_PATH);
  const batch = allocateBatch(1, profile.recordBytes, scorer.modelCount);
  batch.count = 1;
  batch.records.set(rec);
  batch.known[0] = 1;
  batch.os[0] = Os.ANDROID;
  scorer.scoreBatch(batch);
  const score = (name: string) => batch.scores[scorer.modelNames.indexOf(name)]!;
  const bid = demoFile.strategies.find((s: { id: string }) => s.id === 'acq_prime_new').bid;
  const exponent = demoArm(key).name === 'steep' ? 0.8 : bid.exponent;
  const value = score('apply') * score('approve') * ((1 - score('risk')) * score('ltv') * 100 - score('risk') * bid.lossGivenDefaultFen);
  expect(value).toBeGreaterThan(bid.minValueFen);
  const coefficient = Math.min(bid.maxCoefficient, Math.max(bid.minCoefficient, (value / bid.targetValueFen) ** exponent));
  return Math.round(coefficient * 1000) / 1000;
}

// --- tests -------------------------------------------------------------------------------------------------

describe('Engine', () => {
  test('a ping is answered at once with code 0, without looking anything up or scoring', async () => {
    const scorer = new CountingScorer();
    const decision = decide(engineWith({ scorer }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]], { isPing: true }));
    expect(decision).toMatchObject({ code: 0, reason: 'ping', strategies: [], modelVersion: '', bookVersion: demoBook.version, facts: null, experimentTag: 0, experimentTagName: '' });
    expect(scorer.submits).toBe(0);
    expect(await counterValue(metrics.deviceLookups, { result: 'known' })).toBe(0);
  });

  test('a take: code 0, the take cache time, the model versions, the coefficient the models imply', async () => {
    const scorer = new CountingScorer();
    const decision = decide(engineWith({ scorer }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    expect(scorer.submits).toBe(1);
    expect(decision).toMatchObject({ code: 0, reason: 'take', cacheTtlSeconds: demoBook.cacheTtlSeconds.take, modelVersion: inline.modelVersion, bookVersion: demoBook.version });
    expect(decision.facts).not.toBeNull();
    expect(inline.modelVersion).toMatch(/^apply@.+,approve@.+,risk@.+,ltv@.+$/);
    const arm = demoArm(PRIME.oaid);
    expect(decision.strategies).toEqual([
      expect.objectContaining({
        strategyId: 'acq_prime_new',
        coefficient: expectedPrimeCoefficient(PRIME.record, PRIME.oaid),
        experimentTag: arm.tag,
        experimentTagName: arm.name,
      }),
    ]);
    expect([decision.experimentTag, decision.experimentTagName]).toEqual([arm.tag, arm.name]);
    expect(await counterValue(metrics.deviceLookups, { result: 'known' })).toBe(1);
    expect(await counterValue(metrics.strategyDecisions, { strategy: 'acq_prime_new' })).toBe(1);
  });

  test("the request's media rules apply to what is sent and to the facts the log and explain read", () => {
    const plain = decide(engineWith(), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    const raw = plain.strategies[0]!.coefficient;
    const rules = { coefficient: { min: 0.2, max: raw - 0.05, decimals: 1 }, cpcFloorFen: 10, cacheSeconds: { min: 0, max: 1800 }, declineStatus: 200 as const };
    const ruled = decide(engineWith({ media: { test: rules } }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    const expected = Math.round((raw - 0.05) * 10) / 10;
    expect(ruled.strategies[0]!.coefficient).toBe(expected);
    expect(ruled.cacheTtlSeconds).toBe(1800);
    expect(ruled.facts!.parts.book.scratch.coefficient[0]).toBe(expected);
    const rejected = decide(engineWith({ media: { test: rules } }), bidRequest([[DeviceIdKind.OAID_MD5, BORROWER.oaid]]));
    expect([rejected.code, rejected.cacheTtlSeconds]).toEqual([2, 1800]);
    expect(decide(engineWith({ media: { other: rules } }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]])).strategies[0]!.coefficient).toBe(raw);
  });

  test('a second request gets ad results for its candidate ads', () => {
    const ads: CandidateAd[] = [
      { adGroupId: 1, advertiserId: 2, outTargetId: 'acq_prime_new', creatives: [{ creativeId: 710100, templateId: 450 }] },
      { adGroupId: 3, advertiserId: 2, outTargetId: 'not_ours', creatives: [{ creativeId: 5, templateId: 1 }] },
    ];
    const decision = decide(engineWith(), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]], { secondRequest: true, candidateAds: ads }));
    expect(decision.code).toBe(0);
    expect(decision.adResults.map((a) => [a.adGroupId, a.ignore, a.creatives.map((c) => c.creativeId)])).toEqual([
      [1, false, [710100]],
      [3, true, []],
    ]);
  });

  test('an active borrower is rejected with code 2 before any scoring, with no experiment tag', () => {
    const scorer = new CountingScorer();
    const decision = decide(engineWith({ scorer }), bidRequest([[DeviceIdKind.OAID_MD5, BORROWER.oaid]]));
    expect(scorer.submits).toBe(0);
    // A reject puts the device in no arm, whatever its bucket in the demo experiment.
    expect(decision).toEqual({
      code: 2,
      reason: 'existing_borrower',
      strategies: [],
      adResults: [],
      cacheTtlSeconds: demoBook.cacheTtlSeconds.reject,
      experimentTag: 0,
      experimentTagName: '',
      processingTimeUs: 0,
      modelVersion: '',
      bookVersion: expect.any(String),
      mediaStrategyIds: demoBook.strategyIdsOn('test'),
      facts: expect.anything(),
    });
    expect(decision.bookVersion).toBe(demoBook.version);
  });

  test('a blacklisted device is rejected with code 3 before any scoring', () => {
    const scorer = new CountingScorer();
    expect(decide(engineWith({ scorer }), bidRequest([[DeviceIdKind.OAID_MD5, BLACKLISTED.oaid]]))).toMatchObject({ code: 3, reason: 'blacklisted' });
    expect(scorer.submits).toBe(0);
  });

  test('a device only the risk model excludes is scored, then rejected with code 4', () => {
    const scorer = new CountingScorer();
    const decision = decide(engineWith({ scorer }), bidRequest([[DeviceIdKind.OAID_MD5, RISKY.oaid]]));
    expect(scorer.submits).toBe(1);
    expect(decision).toMatchObject({ code: 4, reason: 'high_risk', strategies: [], cacheTtlSeconds: demoBook.cacheTtlSeconds.reject, modelVersion: inline.modelVersion, experimentTag: 0, experimentTagName: '' });
  });

  test('a device no strategy can want gets code 1 without scoring', () => {
    const scorer = new CountingScorer();
    expect(decide(engineWith({ scorer }), bidRequest([[DeviceIdKind.OAID_MD5, NOBODY.oaid]]))).toMatchObject({ code: 1, reason: 'no_strategy_wants', experimentTag: 0, experimentTagName: '' });
    expect(scorer.submits).toBe(0);
  });

  test('no usable id kind: code 5, no lookup, no scoring', async () => {
    const scorer = new CountingScorer();
    const idfaOnly = engineWith({ scorer, config: { deviceIdOrder: ['idfa_md5'] } });
    expect(decide(idfaOnly, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]))).toMatchObject({ code: 5, reason: 'no_usable_device_id', strategies: [], experimentTag: 0, experimentTagName: '', facts: null });
    expect(decide(engineWith({ scorer }), bidRequest([]))).toMatchObject({ code: 5, reason: 'no_usable_device_id', bookVersion: demoBook.version, facts: null });
    expect(scorer.submits).toBe(0);
    expect(await counterValue(metrics.deviceLookups, { result: 'unknown' })).toBe(0);
    expect(await counterValue(metrics.deviceLookups, { result: 'known' })).toBe(0);
  });

  test('the configured id order wins over the order on the wire', () => {
    // The IMEI belongs to an active borrower, the OAID to a prime prospect; the wire lists the IMEI first.
    const request = bidRequest([
      [DeviceIdKind.IMEI_MD5, BORROWER.imei],
      [DeviceIdKind.OAID_MD5, PRIME.oaid],
    ]);
    expect(decide(engineWith(), request).code).toBe(0);
    expect(decide(engineWith({ config: { deviceIdOrder: ['imei_md5', 'oaid_md5'] } }), request).code).toBe(2);
  });

  test('the first id found in the store wins; ids of kinds not configured are never looked up', async () => {
    const request = bidRequest([
      [DeviceIdKind.OAID_MD5, md5('oaid nobody knows')],
      [DeviceIdKind.IMEI_MD5, BORROWER.imei],
    ]);
    expect(decide(engineWith(), request).code).toBe(2);
    expect(await counterValue(metrics.deviceLookups, { result: 'known' })).toBe(1);

    const imeiOnly = engineWith({ config: { deviceIdOrder: ['imei_md5'] } });
    const borrowerByOaid = bidRequest([
      [DeviceIdKind.OAID_MD5, BORROWER.oaid],
      [DeviceIdKind.IMEI_MD5, md5('imei nobody knows')],
    ]);
    // Looked up by its IMEI only, the borrower is an unknown device (taken as a prospect), not an existing borrower.
    expect(decide(imeiOnly, borrowerByOaid).code).toBe(0);
    expect(await counterValue(metrics.deviceLookups, { result: 'unknown' })).toBe(1);
  });

  test('an unknown device is bucketed by its first id in the configured order', () => {
    const [imeiKey, oaidKey] = keysInDifferentArms('unknown');
    const request = bidRequest([
      [DeviceIdKind.IMEI_MD5, imeiKey],
      [DeviceIdKind.OAID_MD5, oaidKey],
    ]);
    const byOaid = decide(engineWith(), request);
    expect(byOaid.code).toBe(0);
    expect(byOaid.experimentTag).toBe(demoArm(oaidKey).tag);
    expect(byOaid.strategies[0]).toMatchObject({ strategyId: 'acq_prime_new', experimentTag: demoArm(oaidKey).tag });
    const byImei = decide(engineWith({ config: { deviceIdOrder: ['imei_md5', 'oaid_md5'] } }), request);
    expect(byImei.experimentTag).toBe(demoArm(imeiKey).tag);
    expect(byImei.experimentTagName).toBe(demoArm(imeiKey).name);
  });

  test('a known device is bucketed by the key it was found under', () => {
    expect(demoArm(PRIME.imei).tag).not.toBe(demoArm(PRIME.oaid).tag);
    const decision = decide(engineWith(), bidRequest([[DeviceIdKind.IMEI_MD5, PRIME.imei]]));
    expect(decision.experimentTag).toBe(demoArm(PRIME.imei).tag);
  });

  test('test traffic is decided normally but does not move the strategy metrics', async () => {
    const engine = engineWith();
    const test = decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]], { isTest: true }));
    expect(test.code).toBe(0);
    expect(await counterValue(metrics.strategyDecisions, { strategy: 'acq_prime_new' })).toBe(0);
    expect((await metrics.coefficients.get()).values.filter((v) => v.metricName === 'rta_bid_coefficient_count').every((v) => v.value === 0)).toBe(true);
    const real = decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    expect(real.strategies).toEqual(test.strategies);
    expect(await counterValue(metrics.strategyDecisions, { strategy: 'acq_prime_new' })).toBe(1);
  });

  test('a missed deadline with the reject fallback: code 6, fallback cache time, no experiment tag', async () => {
    const scorer = new MissingDeadlineScorer();
    const engine = engineWith({ scorer, book: fallbackBook, config: { scoreDeadlineMicros: 2000 } });
    const decision = decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]), 1000);
    // The job carries the deadline: the body's arrival plus the configured budget.
    expect(scorer.deadlines).toEqual([1002]);
    // PRIME would be taken by acq_prime_new in its arm; a reject fallback takes nothing, so it reports no arm.
    expect(decision).toEqual({
      code: 6,
      reason: 'deadline_fallback',
      strategies: [],
      adResults: [],
      cacheTtlSeconds: FALLBACK_TTL,
      experimentTag: 0,
      experimentTagName: '',
      processingTimeUs: 0,
      modelVersion: '',
      bookVersion: expect.any(String),
      mediaStrategyIds: demoBook.strategyIdsOn('test'),
      facts: expect.anything(),
    });
    expect(decision.bookVersion).toBe(fallbackBook.version);
    expect(await counterValue(metrics.deadlineFallbacks, { media: 'test' })).toBe(1);
  });

  test('scoreDeadlineMicros 0 switches the deadline off (for counting instructions), 1 keeps it', () => {
    const scorer = new MissingDeadlineScorer();
    decide(engineWith({ scorer, book: fallbackBook, config: { scoreDeadlineMicros: 0 } }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]), 1000);
    decide(engineWith({ scorer, book: fallbackBook, config: { scoreDeadlineMicros: 1 } }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]), 1000);
    expect(scorer.deadlines).toEqual([Infinity, 1000.001]);
  });

  test('a missed deadline with the neutral fallback: a take at coefficient 1 for every strategy the profile allows', async () => {
    const engine = engineWith({ scorer: new MissingDeadlineScorer(), book: fallbackBook, config: { fallback: 'neutral' } });
    const prime = decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    expect(prime).toMatchObject({ code: 0, reason: 'deadline_fallback', cacheTtlSeconds: FALLBACK_TTL, modelVersion: '', experimentTag: demoArm(PRIME.oaid).tag });
    expect(prime.strategies.map((s) => [s.strategyId, s.coefficient, s.creativeId])).toEqual([['acq_prime_new', 1, 710100]]);

    const unknownKey = md5('unknown in the lookalike bucket');
    const lookalike = decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, unknownKey]], { platformExperimentIds: [32768] }));
    expect(lookalike.code).toBe(0);
    expect(lookalike.strategies.map((s) => [s.strategyId, s.coefficient, s.creativeId])).toEqual([
      ['acq_prime_new', 1, 710100],
      ['acq_platform_lookalike', 1, 740400],
    ]);
    expect(lookalike.strategies.every((s) => s.cpaPriceFen === 0 && s.cpcPriceFen === 0)).toBe(true);
    expect(lookalike.strategies[0]).toMatchObject({ experimentTag: demoArm(unknownKey).tag, experimentTagName: demoArm(unknownKey).name });
    expect(lookalike.strategies[1]).toMatchObject({ experimentTag: 0, experimentTagName: '' });
    // Both at coefficient 1: the first in book order, acq_prime_new, gives the request-level tag.
    expect([lookalike.experimentTag, lookalike.experimentTagName]).toEqual([demoArm(unknownKey).tag, demoArm(unknownKey).name]);
    expect(await counterValue(metrics.deadlineFallbacks, { media: 'test' })).toBe(2);

    // Exclusions before scoring still apply: the deadline never comes into it.
    expect(decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, BORROWER.oaid]])).code).toBe(2);
    expect(await counterValue(metrics.deadlineFallbacks, { media: 'test' })).toBe(2);
  });
});

// --- the error boundary ------------------------------------------------------------------------------------

/** Fault injection: a model whose evaluation throws. */
class ThrowingScorer implements Scorer {
  readonly modelNames = inline.modelNames;
  readonly modelVersion = inline.modelVersion;
  submit(): void {
    throw new RangeError('tree 17 reads feature 99 of 12');
  }
}

/** Fault injection: a strategy condition or a value formula that throws, before or after scoring. */
class ThrowingBook extends StrategyBook {
  constructor(private readonly throwsIn: 'screen' | 'decide' | 'decide and neutral') {
    super(parseStrategyFile(fallbackFile, 'demo'), profile, inline.modelNames, bookVersion(fallbackFile));
  }
  override screen(...args: Parameters<StrategyBook['screen']>): ReturnType<StrategyBook['screen']> {
    if (this.throwsIn === 'screen') throw new TypeError("Cannot read properties of undefined (reading 'when')");
    return super.screen(...args);
  }
  override decide(): never {
    throw new Error('condition on a missing field');
  }
  override neutral(...args: Parameters<StrategyBook['neutral']>): ReturnType<StrategyBook['neutral']> {
    if (this.throwsIn === 'decide and neutral') throw new Error('neutral fallback broken too');
    return super.neutral(...args);
  }
}

/** The embedded store answering a turn later, as Redis does: the callbacks run outside `handle`. */
class LaterStore implements AsyncDeviceStore {
  lookup(job: DeviceLookupJob): void {
    queueMicrotask(() => {
      const offset = store.find(job.lookupKeys[0]!, 0);
      if (offset >= 0) job.onProfileFound(0, store.records, offset);
      else job.onProfileMissing();
    });
  }
}

describe('the error boundary: whatever throws answers that request with the fallback, counted by stage', () => {
  test.each([
    ['score', { scorer: new ThrowingScorer(), book: fallbackBook }],
    ['screen', { book: new ThrowingBook('screen') }],
    ['decide', { book: new ThrowingBook('decide') }],
  ] as const)('a throw in %s: code 6 with the fallback cache time and no experiment tag, the thread goes on', async (stage, parts) => {
    const engine = engineWith(parts);
    const decision = decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    expect(decision).toMatchObject({ code: 6, reason: 'error_fallback', cacheTtlSeconds: FALLBACK_TTL, strategies: [], experimentTag: 0, experimentTagName: '', modelVersion: '', bookVersion: fallbackBook.version });
    expect(await counterValue(metrics.requestErrors, { stage })).toBe(1);
    // Exclusions decided before the faulty stage are still answered normally.
    if (stage !== 'screen') expect(decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, BORROWER.oaid]])).code).toBe(2);
    expect(decide(engine, bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]])).reason).toBe('error_fallback');
    expect(await counterValue(metrics.requestErrors, { stage })).toBe(2);
  });

  test('the neutral fallback answers a throw with coefficient 1; if the fallback throws too, the sink is told to fail', async () => {
    const neutral = decide(engineWith({ book: new ThrowingBook('decide'), config: { fallback: 'neutral' } }), bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]));
    expect(neutral).toMatchObject({ code: 0, reason: 'error_fallback', cacheTtlSeconds: FALLBACK_TTL });
    expect(neutral.strategies.map((s) => s.coefficient)).toEqual([1]);

    const sink = new RecordingSink();
    engineWith({ book: new ThrowingBook('decide and neutral'), config: { fallback: 'neutral' } }).handle(bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]), sink, performance.now());
    expect(sink.decisions).toEqual([]);
    expect(sink.failures).toEqual(['decide']);
    expect(await counterValue(metrics.requestErrors, { stage: 'decide' })).toBe(2);
  });

  test('a throw in a callback from a store that answers later is caught there, not left to the event loop', async () => {
    // No deadline: this is about where the throw is caught, not how fast the scores come.
    const engine = new Engine({ config: { ...defaultEngineConfig, scoreDeadlineMicros: 0 }, media: {}, book: new ThrowingBook('decide'), store: new LaterStore(), scorer: inline, profile, metrics });
    const sink = new RecordingSink();
    engine.handle(bidRequest([[DeviceIdKind.OAID_MD5, PRIME.oaid]]), sink, performance.now());
    expect(sink.decisions).toEqual([]);
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    expect(sink.decisions.map((d) => d.reason)).toEqual(['error_fallback']);
    expect(await counterValue(metrics.requestErrors, { stage: 'decide' })).toBe(1);
  });
});
