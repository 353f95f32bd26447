import { describe, expect, test } from 'vitest';
import { bigBook } from '../../bench/lib/big-book.js';
import { Os, type CandidateAd } from '../../src/engine/types.js';
import { DemoRandom, drawDemoDevice } from '../../src/store/demo-population.js';
import { loadStrategyBook, Verdict, type StrategyBook } from '../../src/strategy/book.js';
import { compileCondition, splitByStage } from '../../src/strategy/conditions.js';
import { experimentBucket } from '../../src/strategy/experiments.js';
import type { Condition } from '../../src/strategy/schema.js';
import { bidStrategy, buildBook, makeView, md5Key, MODEL_NAMES, profile, screenAndDecide, strategyDecision, type ModelScores, type ViewSpec } from './support.js';

/**
 * Scores chosen to be exact in float32. With lossGivenDefaultFen 16000:
 * value = 0.5 x 0.5 x ((1 - 0.125) x 400 yuan x 100 - 0.125 x 16000) = 0.25 x (35000 - 2000) = 8250 fen.
 */
const SCORES: ModelScores = { apply: 0.5, approve: 0.5, risk: 0.125, ltv: 400 };
const VALUE_FEN = 8250;

/** One strategy `s` with these bid parameters; LGD 16000 unless given. */
function decisionWith(bid: Record<string, unknown>, scores: ModelScores = SCORES, extra: Record<string, unknown> = {}) {
  const book = buildBook({ strategies: [bidStrategy('s', { lossGivenDefaultFen: 16000, ...bid }, extra)] });
  return strategyDecision(book, { scores }, 's');
}

function coefficientWith(bid: Record<string, unknown>, scores: ModelScores = SCORES): number | undefined {
  return decisionWith(bid, scores)?.coefficient;
}

/** The first device key (md5 of "device-<i>") that satisfies `wanted`. */
function firstKey(wanted: (key: Uint8Array) => boolean): Uint8Array {
  for (let i = 0; i < 100_000; i++) {
    const key = md5Key(`device-${i}`);
    if (wanted(key)) return key;
  }
  throw new Error('no key found');
}

describe('expected value and coefficient', () => {
  test('coefficient = value / target with exponent 1', () => {
    expect(coefficientWith({ targetValueFen: VALUE_FEN })).toBe(1);
    expect(coefficientWith({ targetValueFen: VALUE_FEN / 2 })).toBe(2);
    expect(coefficientWith({ targetValueFen: VALUE_FEN * 2 })).toBe(0.5);
  });

  test('the loss given default is subtracted in proportion to the risk', () => {
    // LGD 48000: 0.25 x (35000 - 6000) = 7250.
    expect(coefficientWith({ targetValueFen: 7250, lossGivenDefaultFen: 48000 })).toBe(1);
    expect(coefficientWith({ targetValueFen: 3625, lossGivenDefaultFen: 48000 })).toBe(2);
  });

  test('the exponent bends the curve', () => {
    expect(coefficientWith({ targetValueFen: VALUE_FEN / 4, exponent: 0.5 })).toBe(2);
    expect(coefficientWith({ targetValueFen: VALUE_FEN * 2, exponent: 2 })).toBe(0.25);
    expect(coefficientWith({ targetValueFen: VALUE_FEN * 3, exponent: 0 })).toBe(1);
  });

  test('rounded to three decimals', () => {
    expect(coefficientWith({ targetValueFen: VALUE_FEN / 2, exponent: 0.5 })).toBe(1.414);
    expect(coefficientWith({ targetValueFen: VALUE_FEN / 3, exponent: 0.5 })).toBe(1.732);
    expect(coefficientWith({ targetValueFen: VALUE_FEN * 3 })).toBe(0.333);
  });

  test('clamped to the strategy bounds, which default to the media bounds', () => {
    expect(coefficientWith({ targetValueFen: VALUE_FEN / 10 })).toBe(5);
    expect(coefficientWith({ targetValueFen: VALUE_FEN / 10, maxCoefficient: 3 })).toBe(3);
    expect(coefficientWith({ targetValueFen: VALUE_FEN * 10 })).toBe(0.2);
    expect(coefficientWith({ targetValueFen: VALUE_FEN * 10, minCoefficient: 0.5 })).toBe(0.5);
  });

  test('below minValueFen the strategy does not want the device; at it, it does', () => {
    expect(coefficientWith({ targetValueFen: VALUE_FEN, minValueFen: VALUE_FEN })).toBe(1);
    expect(coefficientWith({ targetValueFen: VALUE_FEN, minValueFen: VALUE_FEN + 1 })).toBeUndefined();
  });

  test('a value of zero or less, or no value at all, is never taken, whatever minValueFen says', () => {
    // 0.25 x (0.5 x 40000 - 0.5 x 40000) = 0
    expect(coefficientWith({ targetValueFen: 1000, minValueFen: -1e9, lossGivenDefaultFen: 40000 }, { ...SCORES, risk: 0.5 })).toBeUndefined();
    expect(coefficientWith({ targetValueFen: 1000, minValueFen: -1e9 }, { ...SCORES, risk: 0.75, ltv: 50 })).toBeUndefined();
    expect(coefficientWith({ targetValueFen: 1000, minValueFen: -1e9 }, {})).toBeUndefined();
    // Just above zero is taken (clamped to the floor), so the refusal above is about the sign, not the size.
    expect(coefficientWith({ targetValueFen: 1000, minValueFen: -1e9, lossGivenDefaultFen: 39999 }, { ...SCORES, risk: 0.5 })).toBe(0.2);
  });

  test('assumeApproved uses 1 for P(approved), also in the reported pcvr', () => {
    const asScored = decisionWith({ targetValueFen: VALUE_FEN });
    const assumed = decisionWith({ targetValueFen: VALUE_FEN, assumeApproved: true });
    expect(asScored?.coefficient).toBe(1);
    expect(assumed?.coefficient).toBe(2);
    expect(asScored?.pcvr).toBe(0.25);
    expect(assumed?.pcvr).toBe(0.5);
  });

  test('CPA and CPC prices are scaled by the coefficient (the CPC floor is the media rules\', below)', () => {
    const doubled = decisionWith({ targetValueFen: VALUE_FEN / 2, cpaBidFen: 1000, cpcBidFen: 120 });
    expect(doubled).toMatchObject({ coefficient: 2, cpaPriceFen: 2000, cpcPriceFen: 240 });
    const root2 = decisionWith({ targetValueFen: VALUE_FEN / 2, exponent: 0.5, cpaBidFen: 1000, cpcBidFen: 120 });
    expect(root2).toMatchObject({ coefficient: 1.414, cpaPriceFen: 1414, cpcPriceFen: 170 });
    const quarter = decisionWith({ targetValueFen: VALUE_FEN * 4, cpaBidFen: 1000, cpcBidFen: 30 });
    expect(quarter).toMatchObject({ coefficient: 0.25, cpaPriceFen: 250, cpcPriceFen: 8 });
    expect(decisionWith({ targetValueFen: VALUE_FEN })).toMatchObject({ cpaPriceFen: 0, cpcPriceFen: 0 });
  });

  test("a media's rules: the coefficient sent, prices scaled by it, the CPC floor, and the scratch the log reads", () => {
    const book = buildBook({ strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN * 4, lossGivenDefaultFen: 16000, cpaBidFen: 1000, cpcBidFen: 30 })] });
    const { outcome } = screenAndDecide(book, { scores: SCORES });
    expect(outcome!.strategies[0]).toMatchObject({ coefficient: 0.25, cpaPriceFen: 250, cpcPriceFen: 8 });
    book.applyMediaRules(outcome!, { coefficient: { min: 0.2, max: 1.2, decimals: 1 }, cpcFloorFen: 10, cacheSeconds: { min: 0, max: 1 }, declineStatus: 200 });
    // 0.25 to one decimal is 0.3; the prices follow it (300 and 9 fen), and 9 fen is under the floor.
    expect(outcome!.strategies[0]).toMatchObject({ coefficient: 0.3, cpaPriceFen: 300, cpcPriceFen: 10 });
    expect(book.scratch.coefficient[0]).toBe(0.3);
  });

  test('strategy and value models are found by name, not by position', () => {
    // Swapping apply and approve changes nothing (their product is used); swapping with risk does.
    expect(coefficientWith({ targetValueFen: VALUE_FEN }, { ...SCORES, apply: 0.5, approve: 0.5 })).toBe(1);
    expect(MODEL_NAMES.indexOf('apply')).not.toBe(0);
    const book = buildBook({
      valueModels: { apply: 'approve', approve: 'apply', risk: 'fraud', ltv: 'ltv' },
      strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 })],
    });
    // fraud 0.125 plays the risk model; risk 0.9 is ignored.
    expect(strategyDecision(book, { scores: { ...SCORES, risk: 0.9, fraud: 0.125 } }, 's')?.coefficient).toBe(1);
  });
});

describe('creative choice', () => {
  const creatives = [{ id: 11, when: { scores: { apply: { min: 0.6 } } } }, { id: 12, when: { os: ['ios'] } }, { id: 13 }];
  const book = buildBook({ strategies: [bidStrategy('s', { targetValueFen: 1000, lossGivenDefaultFen: 16000 }, { creatives })] });
  const creativeFor = (os: number, apply: number) => strategyDecision(book, { os, scores: { ...SCORES, apply } }, 's')?.creativeId;

  test('the first creative whose condition holds wins; the last one is the default', () => {
    expect(creativeFor(Os.ANDROID, 0.5)).toBe(13);
    expect(creativeFor(Os.IOS, 0.5)).toBe(12);
    expect(creativeFor(Os.ANDROID, 0.75)).toBe(11);
    expect(creativeFor(Os.IOS, 0.75)).toBe(11);
  });

  test('with creative sampling, devices split by share among the creatives that suit them, each device always the same', () => {
    const sampled = [{ id: 21, when: { os: ['ios'] }, share: 0.2 }, { id: 22, share: 0.5 }, { id: 23, share: 0.3 }];
    const sampling = buildBook({ strategies: [bidStrategy('s', { targetValueFen: 1000, lossGivenDefaultFen: 16000 }, { creatives: sampled, creativeSampling: {} })] });
    const counts = (os: number) => {
      const seen = new Map<number, number>();
      for (let i = 0; i < 4000; i++) {
        const id = strategyDecision(sampling, { os, scores: SCORES }, 's', { key: md5Key(`device ${i}`) })!.creativeId;
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      return seen;
    };
    const ios = counts(Os.IOS);
    expect(ios.get(21)! / 4000).toBeCloseTo(0.2, 1);
    expect(ios.get(22)! / 4000).toBeCloseTo(0.5, 1);
    // An Android device does not suit creative 21: the others share its devices by 0.5 : 0.3.
    const android = counts(Os.ANDROID);
    expect(android.get(21)).toBeUndefined();
    expect(android.get(22)! / 4000).toBeCloseTo(0.625, 1);
    const key = md5Key('device 7');
    expect(new Set([1, 2, 3].map(() => strategyDecision(sampling, { os: Os.IOS, scores: SCORES }, 's', { key })!.creativeId)).size).toBe(1);
    // Without creativeSampling, the same shares are ignored: the first creative that suits wins.
    const unsampled = buildBook({ strategies: [bidStrategy('s', { targetValueFen: 1000, lossGivenDefaultFen: 16000 }, { creatives: sampled })] });
    expect(strategyDecision(unsampled, { os: Os.ANDROID, scores: SCORES }, 's', { key })!.creativeId).toBe(22);
  });
});

describe('exclusions and screening', () => {
  const book = buildBook({
    strategies: [
      { id: 'excl_off', kind: 'exclude', reason: 'high_risk', enabled: false, when: {} },
      { id: 'excl_blacklist', kind: 'exclude', reason: 'blacklisted', when: { flagsAny: ['blacklisted'] } },
      { id: 'excl_borrower', kind: 'exclude', reason: 'existing_borrower', when: { flagsAny: ['active_borrower'] } },
      {
        id: 'excl_risk',
        kind: 'exclude',
        reason: 'high_risk',
        when: { anyOf: [{ flagsAny: ['overdue_recent'] }, { scores: { risk: { min: 0.2 } } }] },
      },
      bidStrategy('new', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 }, { when: { flagsNone: ['registered'] } }),
      bidStrategy('off', { targetValueFen: VALUE_FEN }, { enabled: false }),
      bidStrategy('approved', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 }, { when: { flagsAll: ['approved'] } }),
      bidStrategy('likely', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 }, { when: { scores: { apply: { min: 0.6 } } } }),
    ],
  });

  test('disabled strategies are not compiled', () => {
    expect(book.bidStrategyIds).toEqual(['new', 'approved', 'likely']);
    expect(book.bidStrategyCount).toBe(3);
    expect(screenAndDecide(book, { record: {}, scores: SCORES }).screen.exclusion).toBeNull();
  });

  test('a profile-only exclusion stops everything before scoring, the first listed one winning', () => {
    const both = screenAndDecide(book, { record: { flags: ['active_borrower', 'blacklisted'] }, scores: SCORES });
    expect(both.screen).toEqual({ exclusion: 'blacklisted', excludedBy: 'excl_blacklist', candidates: 0 });
    expect(screenAndDecide(book, { record: { flags: ['active_borrower'] } }).screen).toEqual({ exclusion: 'existing_borrower', excludedBy: 'excl_borrower', candidates: 0 });
  });

  test('screening marks the strategies whose profile part holds; score parts wait for decide', () => {
    const screenMask = new Uint8Array(book.bidStrategyCount);
    expect(book.screen(makeView({ record: { flags: ['registered', 'approved'] }, scores: SCORES }), screenMask)).toEqual({ exclusion: null, excludedBy: null, candidates: 2 });
    expect([...screenMask]).toEqual([Verdict.NOT_CANDIDATE, Verdict.CANDIDATE, Verdict.CANDIDATE]);
    const { screen, mask, outcome } = screenAndDecide(book, { record: { flags: ['registered', 'approved'] }, scores: SCORES });
    expect(screen).toEqual({ exclusion: null, excludedBy: null, candidates: 2 });
    // decide turns each candidate's byte into its verdict.
    expect([...mask]).toEqual([Verdict.NOT_CANDIDATE, Verdict.TAKEN, Verdict.SCORES_FAILED]);
    expect(outcome?.strategies.map((s) => s.strategyId)).toEqual(['approved']);
    const likely = screenAndDecide(book, { record: { flags: ['registered', 'approved'] }, scores: { ...SCORES, apply: 0.75 } });
    expect(likely.outcome?.strategies.map((s) => s.strategyId)).toEqual(['approved', 'likely']);
  });

  test('decide skips strategies the mask left out even when they would take the device', () => {
    const view = makeView({ scores: SCORES });
    const mask = new Uint8Array([0, 0, 0]);
    expect(book.decide(view, mask, md5Key('k'), 0, []).strategies).toEqual([]);
    mask[0] = 1;
    expect(book.decide(view, mask, md5Key('k'), 0, []).strategies.map((s) => s.strategyId)).toEqual(['new']);
  });

  test('an exclusion that reads a score is applied in decide', () => {
    const risky = screenAndDecide(book, { scores: { ...SCORES, risk: 0.25 } });
    expect(risky.screen).toEqual({ exclusion: null, excludedBy: null, candidates: 2 });
    expect(risky.outcome).toMatchObject({ exclusion: 'high_risk', excludedBy: 'excl_risk', strategies: [], adResults: [], experimentTag: 0, experimentTagName: '' });
    // Its score-free option already excludes before scoring, so a device excluded by its profile is never scored.
    const overdue = screenAndDecide(book, { record: { flags: ['overdue_recent'] }, scores: SCORES });
    expect(overdue.screen).toEqual({ exclusion: 'high_risk', excludedBy: 'excl_risk', candidates: 0 });
    expect(overdue.outcome).toBeNull();
    const safe = screenAndDecide(book, { scores: SCORES });
    expect(safe.outcome).toMatchObject({ exclusion: null, excludedBy: null, strategies: [{ strategyId: 'new', coefficient: 1 }] });
  });

  test('a device no bidding strategy can want has no candidates', () => {
    const { screen, mask, outcome } = screenAndDecide(book, { record: { flags: ['registered'] }, scores: SCORES });
    expect(screen).toEqual({ exclusion: null, excludedBy: null, candidates: 1 });
    expect([...mask]).toEqual([Verdict.NOT_CANDIDATE, Verdict.NOT_CANDIDATE, Verdict.SCORES_FAILED]);
    expect(outcome?.strategies).toEqual([]);
    const nobody = buildBook({ strategies: [bidStrategy('s', { targetValueFen: 1 }, { when: { known: true } })] });
    expect(screenAndDecide(nobody, {}).screen).toEqual({ exclusion: null, excludedBy: null, candidates: 0 });
  });
});

describe('the demo book (data/strategies.json)', () => {
  const demo = loadStrategyBook(new URL('../../data/strategies.json', import.meta.url).pathname, profile, MODEL_NAMES);

  test('a dormant approved customer: react_dormant with approval assumed, high-limit creative', () => {
    // value = 0.5 x 1 x (0.875 x 40000 - 0.125 x 120000) = 10000 fen; coefficient = sqrt(10000 / 32000) = 0.559
    const key = md5Key('dormant device');
    const { outcome } = screenAndDecide(
      demo,
      {
        record: { flags: ['registered', 'applied', 'approved', 'dormant'], fields: { days_since_last_active: 120, credit_limit_hundred_yuan: 300 } },
        scores: { apply: 0.5, approve: 0.25, risk: 0.125, ltv: 400 },
      },
      { key },
    );
    expect(outcome?.strategies).toEqual([
      { strategyId: 'react_dormant', coefficient: 0.559, creativeId: 720201, cpaPriceFen: 0, cpcPriceFen: 0, experimentTag: 0, experimentTagName: '', pcvr: 0.5 },
    ]);
    // The request-level tag is the arm of the best strategy taken: react_dormant is in no experiment, so none, even
    // for a device that falls in an arm of the demo experiment (whose strategy acq_prime_new did not take it).
    expect(outcome).toMatchObject({ exclusion: null, excludedBy: null, experimentTag: 0, experimentTagName: '' });
    const otherArm = firstKey((k) => experimentBucket('prime-curve-2026w48', k) < 5000 !== experimentBucket('prime-curve-2026w48', key) < 5000);
    const other = screenAndDecide(demo, { record: { flags: ['registered', 'applied', 'approved', 'dormant'], fields: { days_since_last_active: 120, credit_limit_hundred_yuan: 300 } }, scores: { apply: 0.5, approve: 0.25, risk: 0.125, ltv: 400 } }, { key: otherArm });
    expect(other.outcome).toMatchObject({ strategies: [{ strategyId: 'react_dormant', experimentTag: 0 }], experimentTag: 0, experimentTagName: '' });
  });

  test('a dormant customer below 90 days or with a small limit', () => {
    const dormant = (days: number, limit: number) =>
      screenAndDecide(demo, {
        record: { flags: ['registered', 'applied', 'approved', 'dormant'], fields: { days_since_last_active: days, credit_limit_hundred_yuan: limit } },
        scores: { apply: 0.5, approve: 0.25, risk: 0.125, ltv: 400 },
      });
    expect(dormant(89, 300).screen.candidates).toBe(0);
    expect(dormant(90, 100).outcome?.strategies[0]?.creativeId).toBe(720200);
  });

  test('a registered applicant with decent credit gets the CPC nudge with a scaled price', () => {
    // value = 0.5 x 0.5 x (0.875 x 40000 - 0.125 x 150000) = 4062.5; coefficient = sqrt(4062.5 / 27500) = 0.384 -> cpc 120 x 0.384 = 46
    const decision = strategyDecision(demo, { record: { flags: ['registered'], fields: { credit_band: 2 } }, scores: SCORES }, 'nudge_registered');
    expect(decision).toMatchObject({ coefficient: 0.384, cpcPriceFen: 46, cpaPriceFen: 0, creativeId: 730300 });
    expect(screenAndDecide(demo, { record: { flags: ['registered'], fields: { credit_band: 4 } }, scores: SCORES }).screen.candidates).toBe(0);
  });

  test('multi-lender debt and the risk score exclude; profile-only reasons are found before scoring', () => {
    expect(screenAndDecide(demo, { record: { fields: { multi_lender_count: 5 } }, scores: SCORES }).screen.exclusion).toBe('high_risk');
    expect(screenAndDecide(demo, { record: { fields: { multi_lender_count: 4 } }, scores: SCORES }).outcome?.exclusion).toBeNull();
    expect(screenAndDecide(demo, { scores: { ...SCORES, risk: 0.2 } }).outcome?.exclusion).toBe('high_risk');
    expect(screenAndDecide(demo, { record: { flags: ['blacklisted'] } }).screen.exclusion).toBe('blacklisted');
    expect(screenAndDecide(demo, { record: { flags: ['active_borrower'] } }).screen.exclusion).toBe('existing_borrower');
  });

  test('the request-level tag is the arm of the strategy taken with the highest coefficient', () => {
    // value = 0.25 x (0.875 x 40000 - 0.125 x 150000) = 4062.5 fen. acq_prime_new: control sqrt(4062.5 / 9500) = 0.654,
    // steep (4062.5 / 9500) ^ 0.8 = 0.507; acq_platform_lookalike (no experiment): sqrt(4062.5 / 12000) = 0.582.
    const control = firstKey((k) => experimentBucket('prime-curve-2026w48', k) < 5000);
    const steep = firstKey((k) => experimentBucket('prime-curve-2026w48', k) >= 5000);
    const outcomeFor = (key: Uint8Array, platformExperimentIds: number[]) => screenAndDecide(demo, { platformExperimentIds, scores: SCORES }, { key }).outcome!;
    const tags = (o: ReturnType<typeof outcomeFor>) => o.strategies.map((s) => [s.strategyId, s.coefficient, s.experimentTag, s.experimentTagName]);

    const alone = outcomeFor(steep, []);
    expect(tags(alone)).toEqual([['acq_prime_new', 0.507, 480002, 'steep']]);
    expect(alone).toMatchObject({ experimentTag: 480002, experimentTagName: 'steep' });

    const controlBoth = outcomeFor(control, [32768]);
    expect(tags(controlBoth)).toEqual([
      ['acq_prime_new', 0.654, 480001, 'control'],
      ['acq_platform_lookalike', 0.582, 0, ''],
    ]);
    expect(controlBoth).toMatchObject({ experimentTag: 480001, experimentTagName: 'control' });

    // Under the steep arm the lookalike probe bids higher, and it is in no experiment: no request-level tag.
    const steepBoth = outcomeFor(steep, [32768]);
    expect(tags(steepBoth)).toEqual([
      ['acq_prime_new', 0.507, 480002, 'steep'],
      ['acq_platform_lookalike', 0.582, 0, ''],
    ]);
    expect(steepBoth).toMatchObject({ experimentTag: 0, experimentTagName: '' });
  });

  test('the lookalike probe only runs inside platform experiment 32768 and only for unknown devices', () => {
    const ids = (spec: Parameters<typeof screenAndDecide>[1]) => screenAndDecide(demo, spec).outcome?.strategies.map((s) => s.strategyId);
    expect(ids({ platformExperimentIds: [32768], scores: SCORES })).toEqual(['acq_prime_new', 'acq_platform_lookalike']);
    expect(ids({ platformExperimentIds: [1], scores: SCORES })).toEqual(['acq_prime_new']);
    expect(ids({ record: {}, platformExperimentIds: [32768], scores: SCORES })).toEqual(['acq_prime_new']);
  });
});

describe('the candidate index (a generated book of 350 strategies and 200 experiments)', () => {
  interface GeneratedBook {
    strategies: { id: string; kind: string; when: Condition; creatives: { id: number }[] }[];
    experiments: { arms: { platformExperimentIds?: number[] }[] }[];
  }
  const json = bigBook(7) as GeneratedBook;
  const bidding = json.strategies.filter((s) => s.kind === 'bid');
  const indexed = buildBook(json);
  // What the index reads (the top level of a condition) moved one level down, where it does not look: this book
  // visits every strategy for every device and lets each one's compiled condition decide.
  const unindexed = buildBook({ ...json, strategies: json.strategies.map((s) => (s.kind === 'bid' ? { ...s, when: requirementsHidden(s.when) } : s)) });
  const scope = { profile, modelIndex: new Map(MODEL_NAMES.map((name, i) => [name, i])) };
  const profileStage = bidding.map((s) => compileCondition(splitByStage(s.when).beforeScoring, scope, s.id, []));

  function requirementsHidden(when: Condition): Condition {
    const { os, known, flagsAll, flagsNone, flagsAny, ...rest } = when;
    const requirements: Condition = JSON.parse(JSON.stringify({ os, known, flagsAll, flagsNone, flagsAny }));
    if (Object.keys(requirements).length === 0) return when;
    if (rest.not === undefined) return { ...rest, not: { not: requirements } };
    if (rest.anyOf === undefined) return { ...rest, anyOf: [requirements] };
    throw new Error('a generated condition has both anyOf and not: hide its requirements another way');
  }

  const platformIds = [...new Set([1024, 1027, 32768, 40_000, ...json.experiments.flatMap((e) => e.arms.flatMap((a) => a.platformExperimentIds ?? []))])];
  /** Demo-population profiles, a third unknown, on every OS (and one number that is none); random scores and ads. */
  function device(random: DemoRandom, n: number): { spec: ViewSpec; key: Uint8Array; ads: CandidateAd[] } {
    const drawn = drawDemoDevice(random);
    const osDraw = random.unit();
    const os = osDraw < 0.04 ? Os.OTHER : osDraw < 0.07 ? Os.UNKNOWN : osDraw < 0.08 ? 9 : drawn.os === 'ios' ? Os.IOS : Os.ANDROID;
    const fields = Object.fromEntries(Object.entries(drawn.values).filter(([, value]) => !Number.isNaN(value)));
    const spec: ViewSpec = {
      os,
      platformExperimentIds: platformIds.filter(() => random.chance(0.15)),
      scores: { apply: random.score(0, 0.6), approve: random.score(0, 1), risk: random.score(0, 0.25), ltv: random.score(0, 3000), fraud: random.score(0, 1) },
    };
    if (random.chance(0.7)) spec.record = { flags: drawn.flags, fields };
    const bound = bidding[random.int(0, bidding.length - 1)]!;
    const ads: CandidateAd[] = random.chance(0.1)
      ? [
          { adGroupId: 1, advertiserId: 9, outTargetId: bound.id, creatives: bound.creatives.map((c) => ({ creativeId: c.id, templateId: 311 })) },
          { adGroupId: 2, advertiserId: 9, outTargetId: '', creatives: [{ creativeId: 5, templateId: 450 }] },
        ]
      : [];
    return { spec, key: md5Key(`device-${n}`), ads };
  }

  /** What the decision log and explain read of the last decide: the scratch of every strategy decide looked at. */
  function recorded(book: StrategyBook, mask: Uint8Array) {
    const { scratch } = book;
    const arm = (i: number) => (scratch.arm[i] ? `${scratch.arm[i]!.experiment}/${scratch.arm[i]!.name}` : null);
    return {
      strategies: [...mask].flatMap((verdict, i) =>
        verdict === Verdict.NOT_CANDIDATE ? [] : [{ i, verdict, value: scratch.valueFen[i], raw: scratch.rawCoefficient[i], rule: scratch.creativeRule[i], arm: arm(i), bid: scratch.bid[i] }],
      ),
      arms: book.armsOfLastDecision().map((a) => `${a.experiment}/${a.name}`),
    };
  }

  test('2,000 devices: the same masks, outcomes and recorded facts as visiting every strategy', () => {
    const random = new DemoRandom(20_261_202);
    // One mask for every device, as benchmarks and tools use it: what the index skips must still read NOT_CANDIDATE.
    const reused = new Uint8Array(indexed.bidStrategyCount);
    const seen = new Map<number, number>();
    let excluded = 0;
    for (let n = 0; n < 2000; n++) {
      const { spec, key, ads } = device(random, n);
      const view = makeView(spec);
      const everyStrategy = new Uint8Array(unindexed.bidStrategyCount);
      const screen = indexed.screen(view, reused);
      expect(screen).toEqual(unindexed.screen(view, everyStrategy));
      if (screen.exclusion !== null) {
        excluded++;
        continue;
      }
      expect(reused).toEqual(everyStrategy);
      expect([...reused]).toEqual(profileStage.map((condition) => (condition.test(view) ? Verdict.CANDIDATE : Verdict.NOT_CANDIDATE)));
      if (screen.candidates === 0) continue;
      expect(indexed.decide(view, reused, key, 0, ads)).toEqual(unindexed.decide(view, everyStrategy, key, 0, ads));
      expect(reused).toEqual(everyStrategy);
      expect(recorded(indexed, reused)).toEqual(recorded(unindexed, everyStrategy));
      for (const verdict of reused) seen.set(verdict, (seen.get(verdict) ?? 0) + 1);
    }
    // Not a vacuous comparison: profile exclusions, and every verdict (CANDIDATE: a score exclusion stopped decide).
    expect(excluded).toBeGreaterThan(100);
    // The big book has no media lists, schedules, cap or shadow strategies and is asked about all: those verdicts are tested in book-reach.test.ts.
    const elsewhere: number[] = [Verdict.OFF_SCHEDULE, Verdict.OTHER_MEDIA, Verdict.CAPPED, Verdict.SHADOW, Verdict.NOT_ASKED];
    const decidedHere = Object.values(Verdict).filter((v) => !elsewhere.includes(v));
    for (const verdict of decidedHere) expect(seen.get(verdict), `verdict ${verdict}`).toBeGreaterThan(100);
  });
});
