import { describe, expect, test } from 'vitest';
import { BUCKETS, experimentBucket } from '../../src/strategy/experiments.js';
import type { StrategyOutcome } from '../../src/strategy/book.js';
import { bidStrategy, buildBook, makeView, md5Key, onlyProblem, problemWith, screenAndDecide, type ModelScores } from './support.js';

/** value = 0.25 x (0.875 x 40000 - 0.125 x 16000) = 8250 fen, as in book.test.ts. */
const SCORES: ModelScores = { apply: 0.5, approve: 0.5, risk: 0.125, ltv: 400 };
const VALUE_FEN = 8250;
const SALT = 'curve-salt-1';

/** The first device key (md5 of "device-<i>") that satisfies `wanted`. */
function keyWhere(wanted: (key: Uint8Array) => boolean): Uint8Array {
  for (let i = 0; i < 100_000; i++) {
    const key = md5Key(`device-${i}`);
    if (wanted(key)) return key;
  }
  throw new Error('no key found');
}

/** The first device key whose bucket under `salt` satisfies `wanted`. */
function keyInBuckets(salt: string, wanted: (bucket: number) => boolean): Uint8Array {
  return keyWhere((key) => wanted(experimentBucket(salt, key)));
}

/** A bid at which a strategy takes a device with SCORES at coefficient `coefficient` (exponent 1). */
function bidAt(coefficient: number) {
  return { targetValueFen: VALUE_FEN / coefficient, lossGivenDefaultFen: 16000 };
}

/** [strategy, tag, tag name] of each strategy taken. */
function tagsOf(outcome: StrategyOutcome) {
  return outcome.strategies.map((s) => [s.strategyId, s.experimentTag, s.experimentTagName]);
}

const CONTROL_KEY = keyInBuckets(SALT, (b) => b < 5000);
const STEEP_KEY = keyInBuckets(SALT, (b) => b >= 5000);

function halfAndHalf(overrides: Record<string, unknown>) {
  return {
    id: 'curve',
    salt: SALT,
    strategies: ['s'],
    arms: [
      { name: 'control', tag: 101, percent: 50 },
      { name: 'steep', tag: 102, percent: 50, overrides: { s: overrides } },
    ],
  };
}

describe('experimentBucket', () => {
  test('is deterministic and within 0..9999', () => {
    for (let i = 0; i < 200; i++) {
      const key = md5Key(`k${i}`);
      const bucket = experimentBucket('salt-a', key);
      expect(Number.isInteger(bucket) && bucket >= 0 && bucket < BUCKETS).toBe(true);
      expect(experimentBucket('salt-a', md5Key(`k${i}`))).toBe(bucket);
    }
  });

  test('reads the key at an offset', () => {
    const key = md5Key('x');
    const buffer = new Uint8Array(40);
    buffer.set(key, 9);
    expect(experimentBucket('s', buffer, 9)).toBe(experimentBucket('s', key));
    expect(experimentBucket('s', buffer, 8)).not.toBe(experimentBucket('s', key));
  });

  test('a new salt reshuffles devices', () => {
    let moved = 0;
    let sameSide = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) {
      const key = md5Key(`device-${i}`);
      const a = experimentBucket('salt-a', key);
      const b = experimentBucket('salt-b', key);
      if (a !== b) moved++;
      if (a < 5000 === b < 5000) sameSide++;
    }
    expect(moved).toBeGreaterThan(n * 0.99);
    // Independent halves: about half stay on the same side of a 50/50 split, not nearly all.
    expect(sameSide / n).toBeGreaterThan(0.45);
    expect(sameSide / n).toBeLessThan(0.55);
  });
});

describe('experiments in the book', () => {
  test('a 50/50 experiment splits 20,000 devices within 2 %, each device in the arm its bucket predicts', () => {
    const book = buildBook({
      strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 })],
      experiments: [halfAndHalf({ exponent: 2 })],
    });
    let steep = 0;
    let mispredicted = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const key = md5Key(`split-${i}`);
      const { outcome } = screenAndDecide(book, { scores: SCORES }, { key });
      const tag = outcome!.strategies[0]!.experimentTag;
      if (tag === 102) steep++;
      if (tag !== (experimentBucket(SALT, key) < 5000 ? 101 : 102)) mispredicted++;
    }
    expect(mispredicted).toBe(0);
    expect(Math.abs(steep / n - 0.5)).toBeLessThan(0.02);
  });

  test('uneven arms get their share of buckets', () => {
    const book = buildBook({
      strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 })],
      experiments: [
        {
          id: 'uneven',
          salt: 'u',
          strategies: ['s'],
          arms: [
            { name: 'a', tag: 1, percent: 10.5 },
            { name: 'b', tag: 2, percent: 89.5 },
          ],
        },
      ],
    });
    let a = 0;
    for (let i = 0; i < 5000; i++) {
      const key = md5Key(`u-${i}`);
      const tag = screenAndDecide(book, { scores: SCORES }, { key }).outcome!.strategies[0]!.experimentTag;
      expect(tag).toBe(experimentBucket('u', key) < 1050 ? 1 : 2);
      if (tag === 1) a++;
    }
    expect(a / 5000).toBeGreaterThan(0.09);
    expect(a / 5000).toBeLessThan(0.12);
  });

  test('an arm override changes only the fields it names (maxCoefficient 3.0 and minCoefficient 0.5 are kept)', () => {
    const book = buildBook({
      strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN / 4, exponent: 0.5, minCoefficient: 0.5, maxCoefficient: 3.0, lossGivenDefaultFen: 16000 })],
      experiments: [halfAndHalf({ exponent: 1 })],
    });
    const decision = (key: Uint8Array, scores: ModelScores = SCORES) => screenAndDecide(book, { scores }, { key }).outcome!.strategies[0]!;
    // value / target = 4: control sqrt(4) = 2; steep 4, clamped to the strategy's own 3.0 (not the 5.0 default).
    expect(decision(CONTROL_KEY)).toMatchObject({ coefficient: 2, experimentTag: 101, experimentTagName: 'control' });
    expect(decision(STEEP_KEY)).toMatchObject({ coefficient: 3, experimentTag: 102, experimentTagName: 'steep' });
    // value / target = 0.125 (apply 1/64 instead of 0.5): control 0.354, steep 0.125, both raised to the strategy's 0.5.
    expect(decision(CONTROL_KEY, { ...SCORES, apply: 1 / 64 }).coefficient).toBe(0.5);
    expect(decision(STEEP_KEY, { ...SCORES, apply: 1 / 64 }).coefficient).toBe(0.5);
  });

  test('an override of the bounds or prices applies in its arm only', () => {
    const book = buildBook({
      strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN / 2, lossGivenDefaultFen: 16000, cpaBidFen: 1000 })],
      experiments: [halfAndHalf({ maxCoefficient: 1.5, cpaBidFen: 2000 })],
    });
    const decision = (key: Uint8Array) => screenAndDecide(book, { scores: SCORES }, { key }).outcome!.strategies[0]!;
    expect(decision(CONTROL_KEY)).toMatchObject({ coefficient: 2, cpaPriceFen: 2000 });
    expect(decision(STEEP_KEY)).toMatchObject({ coefficient: 1.5, cpaPriceFen: 3000 });
  });

  describe('tags', () => {
    const first = (strategies: string[]) => ({ id: 'first', salt: 'salt-first', strategies, arms: [{ name: 'f1', tag: 11, percent: 50 }, { name: 'f2', tag: 12, percent: 50 }] });
    const second = (strategies: string[]) => ({ id: 'second', salt: 'salt-second', strategies, arms: [{ name: 's1', tag: 21, percent: 50 }, { name: 's2', tag: 22, percent: 50 }] });
    /** `a` (Android only) in the first experiment, `b` in the second, `plain` in none, at the coefficients given. */
    function tagBook(coefficients: { a: number; b: number; plain: number }, order: ('a' | 'b' | 'plain')[] = ['a', 'b', 'plain']) {
      const strategies = {
        a: bidStrategy('a', bidAt(coefficients.a), { when: { os: ['android'] } }),
        b: bidStrategy('b', bidAt(coefficients.b)),
        plain: bidStrategy('plain', bidAt(coefficients.plain)),
      };
      return buildBook({ strategies: order.map((id) => strategies[id]), experiments: [first(['a']), second(['b'])] });
    }
    // A device in the first arm of `first`; its arm in `second` is whatever its bucket there says.
    const key = keyInBuckets('salt-first', (b) => b < 5000);
    const secondArm: [number, string] = experimentBucket('salt-second', key) < 5000 ? [21, 's1'] : [22, 's2'];
    const decideFor = (book: ReturnType<typeof tagBook>, os: number, k = key) => screenAndDecide(book, { os, scores: SCORES }, { key: k }).outcome!;
    const requestTag = (outcome: StrategyOutcome) => [outcome.experimentTag, outcome.experimentTagName];

    test('each strategy reports the arm of its own experiment, a strategy in none reports none', () => {
      const outcome = decideFor(tagBook({ a: 1, b: 1, plain: 1 }), 2);
      expect(tagsOf(outcome)).toEqual([
        ['a', 11, 'f1'],
        ['b', ...secondArm],
        ['plain', 0, ''],
      ]);
      const otherKey = keyInBuckets('salt-first', (b) => b >= 5000);
      expect(tagsOf(decideFor(tagBook({ a: 1, b: 1, plain: 1 }), 2, otherKey))[0]).toEqual(['a', 12, 'f2']);
    });

    test('the request-level tag is the arm of the strategy taken with the highest coefficient', () => {
      expect(requestTag(decideFor(tagBook({ a: 1, b: 2, plain: 0.5 }), 2))).toEqual(secondArm);
      expect(requestTag(decideFor(tagBook({ a: 2, b: 1, plain: 0.5 }), 2))).toEqual([11, 'f1']);
      // The best strategy is in no experiment: no request-level tag, although the others have arms.
      const plainBest = decideFor(tagBook({ a: 1, b: 2, plain: 4 }), 2);
      expect(tagsOf(plainBest).map(([, tag]) => tag)).toEqual([11, secondArm[0], 0]);
      expect(requestTag(plainBest)).toEqual([0, '']);
    });

    test('on a tie the first taken strategy in book order gives the request-level tag', () => {
      expect(requestTag(decideFor(tagBook({ a: 1, b: 1, plain: 1 }), 2))).toEqual([11, 'f1']);
      expect(requestTag(decideFor(tagBook({ a: 1, b: 1, plain: 1 }, ['b', 'a', 'plain']), 2))).toEqual(secondArm);
      expect(requestTag(decideFor(tagBook({ a: 1, b: 1, plain: 1 }, ['plain', 'a', 'b']), 2))).toEqual([0, '']);
    });

    test('a strategy that does not take the device lends it no tag (the first experiment is not special)', () => {
      // `a` does not take an iOS device: the request reports `b`'s arm, never `first`'s.
      const ios = decideFor(tagBook({ a: 1, b: 1, plain: 1 }), 1);
      expect(tagsOf(ios)).toEqual([
        ['b', ...secondArm],
        ['plain', 0, ''],
      ]);
      expect(requestTag(ios)).toEqual(secondArm);
      expect(requestTag(decideFor(tagBook({ a: 4, b: 1, plain: 2 }), 1))).toEqual([0, '']);
    });

    test('a reject, or a device no strategy takes, carries no tag', () => {
      const book = buildBook({
        strategies: [
          { id: 'excl_risk', kind: 'exclude', reason: 'high_risk', when: { scores: { risk: { min: 0.2 } } } },
          bidStrategy('a', { ...bidAt(1), minValueFen: VALUE_FEN }),
          bidStrategy('b', { ...bidAt(1), minValueFen: VALUE_FEN + 1 }),
        ],
        experiments: [first(['a']), second(['b'])],
      });
      const rejected = screenAndDecide(book, { scores: { ...SCORES, risk: 0.25 } }, { key }).outcome!;
      expect(rejected).toMatchObject({ exclusion: 'high_risk', excludedBy: 'excl_risk', strategies: [], experimentTag: 0, experimentTagName: '' });
      // Neither wants a device with a quarter of the value (below both floors); `b` never takes one with SCORES either.
      const nobody = screenAndDecide(book, { scores: { ...SCORES, apply: 0.125 } }, { key }).outcome!;
      expect(nobody).toMatchObject({ exclusion: null, strategies: [], experimentTag: 0, experimentTagName: '' });
      // The same device, taken by `a`, does carry its arm: the zeros above are not for want of one.
      expect(requestTag(screenAndDecide(book, { scores: SCORES }, { key }).outcome!)).toEqual([11, 'f1']);
    });

    test('the neutral fallback tags like a decision: each strategy its arm, the request the first in book order', () => {
      const book = tagBook({ a: 1, b: 1, plain: 1 }, ['b', 'a', 'plain']);
      const view = makeView({ os: 2, scores: SCORES });
      const mask = new Uint8Array(book.bidStrategyCount);
      book.screen(view, mask);
      const neutral = book.neutral(view, mask, key, 0);
      expect(tagsOf(neutral)).toEqual([
        ['b', ...secondArm],
        ['a', 11, 'f1'],
        ['plain', 0, ''],
      ]);
      expect(requestTag(neutral)).toEqual(secondArm);
    });

    test('without experiments every tag is 0 and every name empty', () => {
      const book = buildBook({ strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 })] });
      const outcome = screenAndDecide(book, { scores: SCORES }).outcome!;
      expect(outcome).toMatchObject({ experimentTag: 0, experimentTagName: '' });
      expect(outcome.strategies[0]).toMatchObject({ experimentTag: 0, experimentTagName: '' });
    });
  });
});

describe('layers', () => {
  /** Layer `split`: ex_a takes 30 % (arms a1, a2 half each) for strategy a, ex_b 50 % (b1) for strategy b, 20 % in neither. */
  function splitBook() {
    return buildBook({
      strategies: [bidStrategy('a', bidAt(1)), bidStrategy('b', bidAt(1))],
      layers: [{ id: 'split', salt: 'split-salt' }],
      experiments: [
        { id: 'ex_a', layer: 'split', percent: 30, strategies: ['a'], arms: [{ name: 'a1', tag: 1, percent: 50 }, { name: 'a2', tag: 2, percent: 50 }] },
        { id: 'ex_b', layer: 'split', percent: 50, strategies: ['b'], arms: [{ name: 'b1', tag: 3, percent: 100 }] },
      ],
    });
  }

  test("experiments of one layer split its 20,000 devices exclusively, each its share within 2 %, in file order", () => {
    const book = splitBook();
    const n = 20_000;
    let inA = 0;
    let inB = 0;
    let inBoth = 0;
    let mispredicted = 0;
    for (let i = 0; i < n; i++) {
      const key = md5Key(`layer-${i}`);
      const outcome = screenAndDecide(book, { scores: SCORES }, { key }).outcome!;
      const tagOf = (id: string) => outcome.strategies.find((s) => s.strategyId === id)!.experimentTag;
      // In an experiment: its own strategy reports one of the experiment's arms.
      const a = tagOf('a') === 1 || tagOf('a') === 2;
      const b = tagOf('b') === 3;
      if (a) inA++;
      if (b) inB++;
      if (a && b) inBoth++;
      const bucket = experimentBucket('split-salt', key);
      const predicted = bucket < 1500 ? 'a1' : bucket < 3000 ? 'a2' : bucket < 8000 ? 'b1' : 'none';
      if (predicted !== (a ? (tagOf('a') === 1 ? 'a1' : 'a2') : b ? 'b1' : 'none')) mispredicted++;
    }
    expect(inBoth).toBe(0);
    expect(mispredicted).toBe(0);
    expect(Math.abs(inA / n - 0.3)).toBeLessThan(0.02);
    expect(Math.abs(inB / n - 0.5)).toBeLessThan(0.02);
  });

  test("a strategy reports no arm for a device its layer gives to another experiment", () => {
    const book = splitBook();
    const inB = keyInBuckets('split-salt', (b) => b >= 3000 && b < 8000);
    const inA = keyInBuckets('split-salt', (b) => b < 1500);
    const nowhere = keyInBuckets('split-salt', (b) => b >= 8000);
    const tags = (key: Uint8Array) => tagsOf(screenAndDecide(book, { scores: SCORES }, { key }).outcome!);
    expect(tags(inA)).toEqual([
      ['a', 1, 'a1'],
      ['b', 0, ''],
    ]);
    // ex_b's device is not in ex_a: strategy a, which is only in ex_a, must not report ex_b's arm.
    expect(tags(inB)).toEqual([
      ['a', 0, ''],
      ['b', 3, 'b1'],
    ]);
    expect(tags(nowhere)).toEqual([
      ['a', 0, ''],
      ['b', 0, ''],
    ]);
    // The request-level tag follows: a ties with b and comes first, so ex_b's device gets none.
    expect(screenAndDecide(book, { scores: SCORES }, { key: inB }).outcome).toMatchObject({ experimentTag: 0, experimentTagName: '' });
    const view = makeView({ scores: SCORES });
    const mask = new Uint8Array(book.bidStrategyCount);
    book.screen(view, mask);
    expect(tagsOf(book.neutral(view, mask, inB, 0))).toEqual([
      ['a', 0, ''],
      ['b', 3, 'b1'],
    ]);
  });

  test("a strategy in two layers gets both layers' overrides merged, and the tag of its first layer", () => {
    const book = buildBook({
      strategies: [bidStrategy('s', bidAt(2))],
      layers: [{ id: 'curve', salt: 'curve-salt' }],
      experiments: [
        { id: 'curve_test', layer: 'curve', strategies: ['s'], arms: [{ name: 'control', tag: 1, percent: 50 }, { name: 'steep', tag: 2, percent: 50, overrides: { s: { exponent: 2 } } }] },
        { id: 'price_test', salt: 'price-salt', strategies: ['s'], arms: [{ name: 'base', tag: 3, percent: 50 }, { name: 'priced', tag: 4, percent: 50, overrides: { s: { maxCoefficient: 3, cpaBidFen: 1000 } } }] },
      ],
    });
    const keyIn = (steep: boolean, priced: boolean) => keyWhere((k) => experimentBucket('curve-salt', k) >= 5000 === steep && experimentBucket('price-salt', k) >= 5000 === priced);
    const decision = (key: Uint8Array) => screenAndDecide(book, { scores: SCORES }, { key }).outcome!.strategies[0]!;
    // value / target = 2: exponent 1 gives 2, exponent 2 gives 4 (capped to 3 where priced); cpa 1000 x coefficient.
    expect(decision(keyIn(false, false))).toMatchObject({ coefficient: 2, cpaPriceFen: 0, experimentTag: 1, experimentTagName: 'control' });
    expect(decision(keyIn(true, false))).toMatchObject({ coefficient: 4, cpaPriceFen: 0, experimentTag: 2, experimentTagName: 'steep' });
    expect(decision(keyIn(false, true))).toMatchObject({ coefficient: 2, cpaPriceFen: 2000, experimentTag: 1, experimentTagName: 'control' });
    expect(decision(keyIn(true, true))).toMatchObject({ coefficient: 3, cpaPriceFen: 3000, experimentTag: 2, experimentTagName: 'steep' });
  });

  test('the tag comes from the first layer (in file order) whose experiment covers the device', () => {
    const book = buildBook({
      strategies: [bidStrategy('s', bidAt(1))],
      layers: [{ id: 'half', salt: 'half-salt' }],
      experiments: [
        { id: 'half_test', layer: 'half', percent: 50, strategies: ['s'], arms: [{ name: 'h1', tag: 7, percent: 100 }] },
        { id: 'all_test', salt: 'all-salt', strategies: ['s'], arms: [{ name: 'z1', tag: 8, percent: 100 }] },
      ],
    });
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const key = md5Key(`cover-${i}`);
      const tag = screenAndDecide(book, { scores: SCORES }, { key }).outcome!.strategies[0]!.experimentTag;
      expect(tag).toBe(experimentBucket('half-salt', key) < 5000 ? 7 : 8);
      seen.add(tag);
    }
    expect([...seen].sort()).toEqual([7, 8]);
  });

  test('two layers changing the same bid field of one strategy are refused; different fields are not', () => {
    const file = (secondOverride: Record<string, unknown>) => ({
      strategies: [bidStrategy('s', bidAt(1))],
      layers: [
        { id: 'l1', salt: 'salt-1' },
        { id: 'l2', salt: 'salt-2' },
      ],
      experiments: [
        { id: 'one', layer: 'l1', strategies: ['s'], arms: [{ name: 'a', tag: 1, percent: 100, overrides: { s: { exponent: 2 } } }] },
        { id: 'two', layer: 'l2', strategies: ['s'], arms: [{ name: 'b', tag: 2, percent: 100, overrides: { s: secondOverride } }] },
      ],
    });
    expect(onlyProblem(file({ maxCoefficient: 3, exponent: 0.5 }))).toBe('experiments: layers "l1" and "l2" both change s.exponent; a device in both could not have both');
    expect(problemWith(file({ maxCoefficient: 3 }))).toBeUndefined();
  });
});

describe('arms impose creatives', () => {
  const book = buildBook({
    strategies: [
      bidStrategy('s', bidAt(1), { creatives: [{ id: 11, when: { os: ['ios'] } }, { id: 13, when: { scores: { apply: { min: 0.6 } } } }, { id: 12 }] }),
      bidStrategy('t', bidAt(1), { creatives: [{ id: 21, when: { os: ['ios'] } }, { id: 22 }] }),
    ],
    experiments: [
      {
        id: 'creative_test',
        salt: 'creative-salt',
        strategies: ['s', 't'],
        arms: [
          { name: 'rules', tag: 1, percent: 34 },
          { name: 'default', tag: 2, percent: 33, creatives: { s: 12 } },
          { name: 'likely', tag: 3, percent: 33, creatives: { s: 13 } },
        ],
      },
    ],
  });
  const creativeOf = (key: Uint8Array, os: number, apply: number, strategy = 's') =>
    screenAndDecide(book, { os, scores: { ...SCORES, apply } }, { key }).outcome!.strategies.find((d) => d.strategyId === strategy)!.creativeId;
  const rules = keyInBuckets('creative-salt', (b) => b < 3400);
  const imposedDefault = keyInBuckets('creative-salt', (b) => b >= 3400 && b < 6700);
  const imposedLikely = keyInBuckets('creative-salt', (b) => b >= 6700);

  test('outside the imposing arms the creative rules decide', () => {
    expect([creativeOf(rules, 1, 0.5), creativeOf(rules, 2, 0.75), creativeOf(rules, 2, 0.5)]).toEqual([11, 13, 12]);
  });

  test('the imposed creative replaces the rules, also where an earlier rule holds', () => {
    expect([creativeOf(imposedDefault, 1, 0.5), creativeOf(imposedDefault, 2, 0.75), creativeOf(imposedDefault, 2, 0.5)]).toEqual([12, 12, 12]);
    expect([creativeOf(imposedLikely, 1, 0.5), creativeOf(imposedLikely, 2, 0.75), creativeOf(imposedLikely, 2, 0.5)]).toEqual([13, 13, 13]);
  });

  test('only for the strategy it names: another strategy of the arm keeps its rules', () => {
    expect([creativeOf(imposedLikely, 1, 0.5, 't'), creativeOf(imposedLikely, 2, 0.5, 't')]).toEqual([21, 22]);
  });
});

describe('platform experiment ids', () => {
  const book = buildBook({
    strategies: [bidStrategy('s', bidAt(1)), bidStrategy('t', bidAt(1))],
    experiments: [
      {
        id: 'mapped',
        salt: 'map-salt',
        strategies: ['s'],
        arms: [
          { name: 'control', tag: 1, percent: 50, platformExperimentIds: [501] },
          { name: 'treat', tag: 2, percent: 50, platformExperimentIds: [777, 778] },
        ],
      },
      { id: 'other', salt: 'other-salt', strategies: ['t'], arms: [{ name: 'o1', tag: 3, percent: 50 }, { name: 'o2', tag: 4, percent: 50 }] },
    ],
  });
  const tagOf = (key: Uint8Array, platformExperimentIds: number[], strategy = 's') =>
    screenAndDecide(book, { platformExperimentIds, scores: SCORES }, { key }).outcome!.strategies.find((d) => d.strategyId === strategy)!.experimentTag;
  const controlKey = keyInBuckets('map-salt', (b) => b < 5000);
  const treatKey = keyInBuckets('map-salt', (b) => b >= 5000);

  test('a mapped platform id puts the device in its arm whatever its bucket', () => {
    expect([tagOf(controlKey, []), tagOf(treatKey, [])]).toEqual([1, 2]);
    expect(tagOf(controlKey, [777])).toBe(2);
    expect(tagOf(controlKey, [5, 778])).toBe(2);
    expect(tagOf(treatKey, [501])).toBe(1);
    // An id nobody mapped leaves the bucket in charge.
    expect([tagOf(controlKey, [5]), tagOf(treatKey, [5])]).toEqual([1, 2]);
  });

  test('within its layer only: another layer still buckets the device', () => {
    for (const key of [controlKey, treatKey]) {
      const bucketTag = experimentBucket('other-salt', key) < 5000 ? 3 : 4;
      expect(tagOf(key, [777], 't')).toBe(bucketTag);
      expect(tagOf(key, [501], 't')).toBe(bucketTag);
    }
  });

  test('in a shared layer a mapped id picks the experiment too', () => {
    const shared = buildBook({
      strategies: [bidStrategy('a', bidAt(1)), bidStrategy('b', bidAt(1))],
      layers: [{ id: 'split', salt: 'split-salt' }],
      experiments: [
        { id: 'ex_a', layer: 'split', percent: 50, strategies: ['a'], arms: [{ name: 'a1', tag: 1, percent: 100 }] },
        { id: 'ex_b', layer: 'split', percent: 50, strategies: ['b'], arms: [{ name: 'b1', tag: 3, percent: 100, platformExperimentIds: [900] }] },
      ],
    });
    const inA = keyInBuckets('split-salt', (b) => b < 5000);
    const bTag = (platformExperimentIds: number[]) =>
      screenAndDecide(shared, { platformExperimentIds, scores: SCORES }, { key: inA }).outcome!.strategies.find((d) => d.strategyId === 'b')!.experimentTag;
    // By its bucket the device is in ex_a, not ex_b (what `a` then reports is the test above's business).
    expect(bTag([])).not.toBe(3);
    expect(bTag([900])).toBe(3);
  });
});

describe('refusals', () => {
  const strategies = [bidStrategy('s', bidAt(1), { creatives: [{ id: 11, when: { os: ['ios'] } }, { id: 13 }] })];
  const arm = (name: string, tag: number, percent = 100, extra: Record<string, unknown> = {}) => ({ name, tag, percent, ...extra });

  test('a layer whose experiments take more than 100 %', () => {
    const file = (second: number) => ({
      strategies,
      layers: [{ id: 'full', salt: 'f' }],
      experiments: [
        { id: 'ex1', layer: 'full', percent: 60, strategies: ['s'], arms: [arm('a', 1)] },
        { id: 'ex2', layer: 'full', percent: second, strategies: ['s'], arms: [arm('b', 2)] },
      ],
    });
    expect(onlyProblem(file(50))).toBe('layers(full): its experiments take 110 % of its traffic, more than 100');
    expect(problemWith(file(40))).toBeUndefined();
  });

  test('an unknown layer', () => {
    const file = { strategies, layers: [{ id: 'known_one', salt: 'k' }], experiments: [{ id: 'ex1', layer: 'nope', strategies: ['s'], arms: [arm('a', 1)] }] };
    expect(onlyProblem(file)).toBe('experiments[0](ex1).layer: no layer "nope" in layers (known: known_one)');
    expect(onlyProblem({ ...file, layers: [] })).toBe('experiments[0](ex1).layer: no layer "nope" in layers (known: none)');
  });

  test('a salt on an experiment inside a layer, and no salt on one outside', () => {
    const inLayer = { strategies, layers: [{ id: 'l1', salt: 'k' }], experiments: [{ id: 'ex1', layer: 'l1', salt: 'own', strategies: ['s'], arms: [arm('a', 1)] }] };
    expect(onlyProblem(inLayer)).toBe("experiments[0](ex1).salt: an experiment in a layer is bucketed by the layer's salt; remove this one");
    const alone = { strategies, experiments: [{ id: 'ex1', strategies: ['s'], arms: [arm('a', 1)] }] };
    expect(onlyProblem(alone)).toBe('experiments[0](ex1): give the experiment a salt, or put it in a layer');
  });

  test('one platform experiment id in two arms of one layer; in two layers it is fine', () => {
    const sameLayer = {
      strategies,
      layers: [{ id: 'l1', salt: 'k' }],
      experiments: [
        { id: 'ex1', layer: 'l1', percent: 50, strategies: ['s'], arms: [arm('a', 1, 100, { platformExperimentIds: [777] })] },
        { id: 'ex2', layer: 'l1', percent: 50, strategies: ['s'], arms: [arm('b', 2, 100, { platformExperimentIds: [5, 777] })] },
      ],
    };
    expect(onlyProblem(sameLayer)).toBe('layers(l1): platform experiment 777 is mapped to both ex1/a and ex2/b');
    const oneExperiment = { strategies, experiments: [{ id: 'ex1', salt: 'x', strategies: ['s'], arms: [arm('a', 1, 50, { platformExperimentIds: [3] }), arm('b', 2, 50, { platformExperimentIds: [3] })] }] };
    expect(onlyProblem(oneExperiment)).toBe('layers(ex1): platform experiment 3 is mapped to both ex1/a and ex1/b');
    const twoLayers = {
      strategies,
      experiments: [
        { id: 'ex1', salt: 'x', strategies: ['s'], arms: [arm('a', 1, 100, { platformExperimentIds: [777] })] },
        { id: 'ex2', salt: 'y', strategies: ['s'], arms: [arm('b', 2, 100, { platformExperimentIds: [777] })] },
      ],
    };
    expect(problemWith(twoLayers)).toBeUndefined();
  });

  test("an imposed creative that is not one of the strategy's creatives", () => {
    const file = (creativeId: number) => ({ strategies, experiments: [{ id: 'ex1', salt: 'x', strategies: ['s'], arms: [arm('a', 1, 50), arm('imposed', 2, 50, { creatives: { s: creativeId } })] }] });
    expect(onlyProblem(file(99))).toBe("experiments[0](ex1).arms[1](imposed).creatives.s: creative 99 is not one of the strategy's creatives (11, 13)");
    expect(problemWith(file(11))).toBeUndefined();
  });
});
