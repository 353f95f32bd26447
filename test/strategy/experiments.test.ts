import { describe, expect, test } from 'vitest';
import { BUCKETS, experimentBucket } from '../../src/strategy/experiments.js';
import { bidStrategy, buildBook, md5Key, screenAndDecide, type ModelScores } from './support.js';

/** value = 0.25 x (0.875 x 40000 - 0.125 x 16000) = 8250 fen, as in book.test.ts. */
const SCORES: ModelScores = { apply: 0.5, approve: 0.5, risk: 0.125, ltv: 400 };
const VALUE_FEN = 8250;
const SALT = 'curve-salt-1';

/** The first device key (md5 of "device-<i>") whose bucket under `salt` satisfies `wanted`. */
function keyInBuckets(salt: string, wanted: (bucket: number) => boolean): Uint8Array {
  for (let i = 0; i < 100_000; i++) {
    const key = md5Key(`device-${i}`);
    if (wanted(experimentBucket(salt, key))) return key;
  }
  throw new Error('no key found');
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

  test('per-strategy tags come from each strategy own experiment; the request-level tag from the first experiment', () => {
    const book = buildBook({
      strategies: [
        bidStrategy('a', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 }, { when: { os: ['android'] } }),
        bidStrategy('b', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 }),
        bidStrategy('plain', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 }),
      ],
      experiments: [
        { id: 'first', salt: 'salt-first', strategies: ['a'], arms: [{ name: 'f1', tag: 11, percent: 50 }, { name: 'f2', tag: 12, percent: 50 }] },
        { id: 'second', salt: 'salt-second', strategies: ['b'], arms: [{ name: 's1', tag: 21, percent: 50 }, { name: 's2', tag: 22, percent: 50 }] },
      ],
    });
    // A device on different sides in the two experiments, so mixing them up shows.
    const key = keyInBuckets('salt-first', (b) => b < 5000);
    const secondArm = experimentBucket('salt-second', key) < 5000 ? { tag: 21, name: 's1' } : { tag: 22, name: 's2' };
    const both = screenAndDecide(book, { os: 2, scores: SCORES }, { key }).outcome!;
    expect(both.strategies.map((s) => [s.strategyId, s.experimentTag, s.experimentTagName])).toEqual([
      ['a', 11, 'f1'],
      ['b', secondArm.tag, secondArm.name],
      ['plain', 0, ''],
    ]);
    expect([both.experimentTag, both.experimentTagName]).toEqual([11, 'f1']);
    expect(book.primaryArm(key, 0)).toMatchObject({ tag: 11, name: 'f1' });

    // Strategy `a` does not take an iOS device; the request still reports the first experiment's arm.
    const iosOnly = screenAndDecide(book, { os: 1, scores: SCORES }, { key }).outcome!;
    expect(iosOnly.strategies.map((s) => s.strategyId)).toEqual(['b', 'plain']);
    expect([iosOnly.experimentTag, iosOnly.experimentTagName]).toEqual([11, 'f1']);

    const otherKey = keyInBuckets('salt-first', (b) => b >= 5000);
    expect(screenAndDecide(book, { os: 2, scores: SCORES }, { key: otherKey }).outcome!.experimentTag).toBe(12);
  });

  test('without experiments every tag is 0 and every name empty', () => {
    const book = buildBook({ strategies: [bidStrategy('s', { targetValueFen: VALUE_FEN, lossGivenDefaultFen: 16000 })] });
    const outcome = screenAndDecide(book, { scores: SCORES }).outcome!;
    expect(outcome).toMatchObject({ experimentTag: 0, experimentTagName: '' });
    expect(outcome.strategies[0]).toMatchObject({ experimentTag: 0, experimentTagName: '' });
    expect(book.primaryArm(md5Key('x'), 0)).toBeNull();
  });
});
