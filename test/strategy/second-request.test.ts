import { describe, expect, test } from 'vitest';
import type { CandidateAd } from '../../src/engine/types.js';
import { bidStrategy, buildBook, screenAndDecide, type ModelScores } from './support.js';

/** value = 8250 fen (see book.test.ts): `hi` takes the device at 4.0, `lo` at 0.5, `never` does not take it. */
const SCORES: ModelScores = { apply: 0.5, approve: 0.5, risk: 0.125, ltv: 400 };
const VALUE_FEN = 8250;

const book = buildBook({
  strategies: [
    { id: 'excl_blacklist', kind: 'exclude', reason: 'blacklisted', when: { flagsAny: ['blacklisted'] } },
    bidStrategy(
      'lo',
      { targetValueFen: VALUE_FEN * 2, lossGivenDefaultFen: 16000 },
      { creatives: [{ id: 31 }], secondRequest: { templateFactors: { '450': 0.3 } } },
    ),
    bidStrategy(
      'hi',
      { targetValueFen: VALUE_FEN / 4, lossGivenDefaultFen: 16000 },
      {
        creatives: [{ id: 21, when: { os: ['ios'] } }, { id: 22 }],
        secondRequest: { preferredCreativeBoost: 1.25, templateFactors: { '311': 1.1, '450': 0.5 } },
      },
    ),
    bidStrategy('never', { targetValueFen: 1 }, { when: { known: true }, creatives: [{ id: 41 }] }),
  ],
});

function ad(adGroupId: number, outTargetId: string, creatives: [number, number][]): CandidateAd {
  return { adGroupId, advertiserId: 9, outTargetId, creatives: creatives.map(([creativeId, templateId]) => ({ creativeId, templateId })) };
}

function secondRequest(ads: CandidateAd[]) {
  const outcome = screenAndDecide(book, { os: 2, scores: SCORES }, { ads }).outcome!;
  expect(outcome.strategies.map((s) => [s.strategyId, s.coefficient, s.creativeId])).toEqual([
    ['lo', 0.5, 31],
    ['hi', 4, 22],
  ]);
  return outcome.adResults;
}

const factors = (result: { creatives: { creativeId: number; raiseFactor: number }[] }) => result.creatives.map((c) => [c.creativeId, c.raiseFactor]);

describe('second request: re-pricing the candidate creatives', () => {
  test('raise factor = coefficient x boost for our chosen creative x template factor, clamped to 0.2..5.0', () => {
    const [hi, lo] = secondRequest([
      ad(2, 'hi', [
        [22, 311],
        [23, 311],
        [24, 450],
        [25, 7],
      ]),
      ad(1, 'lo', [
        [31, 999],
        [32, 311],
        [33, 450],
      ]),
    ]);
    expect(hi).toMatchObject({ adGroupId: 2, ignore: false });
    // 22: 4 x 1.25 x 1.1 = 5.5 -> 5.0; 23: 4 x 1.1; 24: 4 x 0.5; 25: no template factor.
    expect(factors(hi!)).toEqual([
      [22, 5],
      [23, 4.4],
      [24, 2],
      [25, 4],
    ]);
    expect(lo).toMatchObject({ adGroupId: 1, ignore: false });
    // 31: 0.5 x 1.2 (default boost); 32: `lo` has no factor for 311; 33: 0.5 x 0.3 = 0.15 -> 0.2.
    expect(factors(lo!)).toEqual([
      [31, 0.6],
      [32, 0.5],
      [33, 0.2],
    ]);
  });

  test('only creatives from the request are named, even when our preferred creative is missing', () => {
    const [result] = secondRequest([ad(6, 'hi', [[23, 1]])]);
    expect(factors(result!)).toEqual([[23, 4]]);
    const [empty] = secondRequest([ad(7, 'hi', [])]);
    expect(empty).toEqual({ adGroupId: 7, ignore: false, creatives: [] });
  });

  test('an ad bound to a strategy id we do not know (or to an exclusion) is left to the media', () => {
    expect(secondRequest([ad(3, 'someone_else', [[1, 311]]), ad(8, 'excl_blacklist', [[2, 311]])])).toEqual([
      { adGroupId: 3, ignore: true, creatives: [] },
      { adGroupId: 8, ignore: true, creatives: [] },
    ]);
  });

  test('an ad bound to our strategy that did not take the device gets the floor for every creative', () => {
    const [result] = secondRequest([
      ad(4, 'never', [
        [41, 1],
        [42, 311],
      ]),
    ]);
    expect(result).toEqual({
      adGroupId: 4,
      ignore: false,
      creatives: [
        { creativeId: 41, raiseFactor: 0.2 },
        { creativeId: 42, raiseFactor: 0.2 },
      ],
    });
  });

  test('an unbound ad is priced with the strategy of the best coefficient', () => {
    const [result] = secondRequest([
      ad(5, '', [
        [22, 450],
        [31, 1],
      ]),
    ]);
    // `hi` (4.0) prices it: 22 is its chosen creative, 4 x 1.25 x 0.5; 31 is `lo`'s creative, so no boost.
    expect(factors(result!)).toEqual([
      [22, 2.5],
      [31, 4],
    ]);
  });

  test('one result per candidate ad, in request order', () => {
    const results = secondRequest([ad(10, 'lo', [[31, 1]]), ad(11, 'x', []), ad(12, '', [[22, 1]]), ad(13, 'never', [[41, 1]])]);
    expect(results.map((r) => [r.adGroupId, r.ignore])).toEqual([
      [10, false],
      [11, true],
      [12, false],
      [13, false],
    ]);
  });

  test('a first request (no candidate ads) has no ad results; nor does a device no strategy takes', () => {
    expect(secondRequest([])).toEqual([]);
    const notTaken = screenAndDecide(book, { os: 2, scores: { ...SCORES, risk: 0.9 } }, { ads: [ad(1, 'hi', [[22, 1]])] }).outcome!;
    expect(notTaken.strategies).toEqual([]);
    expect(notTaken.adResults).toEqual([]);
  });
});
