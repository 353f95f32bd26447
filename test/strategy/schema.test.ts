import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadStrategyBook, parseStrategyFile } from '../../src/strategy/book.js';
import { bidStrategy, problemWith, profile, refusal } from './support.js';

/** A valid file: one exclusion and two bidding strategies. Each test breaks one thing in a copy. */
function validFile(): any {
  return {
    strategies: [
      { id: 'excl_blacklist', kind: 'exclude', reason: 'blacklisted', when: { flagsAny: ['blacklisted'] } },
      bidStrategy('acq', { targetValueFen: 1000 }, { when: { flagsNone: ['registered'] } }),
      bidStrategy('react', { targetValueFen: 2000 }, { when: { flagsAll: ['approved'] } }),
    ],
  };
}

function withExperiment(arms: unknown[], strategies = ['acq']): any {
  return { ...validFile(), experiments: [{ id: 'exp_one', salt: 's1', strategies, arms }] };
}

describe('strategy file: what is accepted', () => {
  test('the valid base file compiles, with defaults for everything left out', () => {
    const file = parseStrategyFile(validFile(), 'test');
    expect(file.cacheTtlSeconds).toEqual({ take: 3600, reject: 86400, fallback: 3600 });
    expect(file.valueModels).toEqual({ apply: 'apply', approve: 'approve', risk: 'risk', ltv: 'ltv' });
    const acq = file.strategies[1]!;
    if (acq.kind !== 'bid') throw new Error('expected a bidding strategy');
    expect(acq.bid).toEqual({
      targetValueFen: 1000,
      minValueFen: 0,
      exponent: 1,
      minCoefficient: 0.2,
      maxCoefficient: 5,
      assumeApproved: false,
      lossGivenDefaultFen: 200_000,
      cpaBidFen: 0,
      cpcBidFen: 0,
    });
    expect(acq.secondRequest).toEqual({ preferredCreativeBoost: 1.2, templateFactors: {} });
    expect(problemWith(validFile())).toBeUndefined();
  });

  test('the demo book in data/strategies.json loads', () => {
    const book = loadStrategyBook(new URL('../../data/strategies.json', import.meta.url).pathname, profile, ['apply', 'approve', 'risk', 'ltv']);
    expect(book.bidStrategyIds).toEqual(['acq_prime_new', 'react_dormant', 'nudge_registered', 'acq_platform_lookalike']);
    expect(book.cacheTtlSeconds).toEqual({ take: 3600, reject: 86400, fallback: 3600 });
  });

  test('a missing or non-JSON strategies file is refused with its path', () => {
    expect(() => loadStrategyBook('/nonexistent/strategies.json', profile, ['apply'])).toThrow(/^strategies \/nonexistent\/strategies\.json: ENOENT/);
    const path = join(mkdtempSync(join(tmpdir(), 'strategies-')), 'broken.json');
    writeFileSync(path, '{"strategies": [');
    expect(() => loadStrategyBook(path, profile, ['apply'])).toThrow(new RegExp(`^strategies ${path}: .*JSON`));
  });
});

describe('strategy file: refusals name the place and the problem', () => {
  test('a strategy id used twice', () => {
    const file = validFile();
    file.strategies[2].id = 'acq';
    expect(refusal(file)).toBe('strategies: id "acq" is used twice');
  });

  test('the same id on an exclusion and a bidding strategy', () => {
    const file = validFile();
    file.strategies[0].id = 'react';
    expect(refusal(file)).toBe('strategies: id "react" is used twice');
  });

  test('an unknown flag in flagsAll names the strategy index, id and path', () => {
    const file = validFile();
    file.strategies[2].when = { flagsAll: ['approved', 'vip'] };
    const message = refusal(file);
    expect(message).toMatch(/^strategies\[2\]\(react\)\.when\.flagsAll: /);
    expect(message).toContain('no profile flag "vip"');
    expect(message).toContain('known: registered, applied, approved');
  });

  test('an unknown flag inside an exclusion, nested in anyOf', () => {
    const file = validFile();
    file.strategies[0].when = { anyOf: [{ flagsAny: ['blacklisted'] }, { flagsNone: ['frozen'] }] };
    expect(refusal(file)).toMatch(/^strategies\[0\]\(excl_blacklist\)\.when\.anyOf\[1\]\.flagsNone: .*no profile flag "frozen"/);
  });

  test('an unknown profile field', () => {
    const file = validFile();
    file.strategies[1].when = { fields: { salary: { min: 1 } } };
    const message = refusal(file);
    expect(message).toMatch(/^strategies\[1\]\(acq\)\.when\.fields\.salary: /);
    expect(message).toContain('no profile field "salary"');
  });

  test('an unknown model in `scores`, in a strategy and in a creative', () => {
    const inWhen = validFile();
    inWhen.strategies[1].when = { scores: { churn: { max: 0.5 } } };
    expect(refusal(inWhen)).toBe(
      'strategies[1](acq).when.scores.churn: no model "churn" in the model manifest (known: risk, fraud, ltv, apply, approve)',
    );
    const inCreative = validFile();
    inCreative.strategies[2].creatives = [{ id: 5, when: { not: { scores: { churn: { max: 0.5 } } } } }, { id: 6 }];
    expect(refusal(inCreative)).toMatch(/^strategies\[2\]\(react\)\.creatives\[0\]\.when\.not\.scores\.churn: no model "churn"/);
  });

  test('valueModels naming a model the manifest does not have', () => {
    const file = { ...validFile(), valueModels: { apply: 'apply', approve: 'approve', risk: 'pd', ltv: 'ltv' } };
    expect(refusal(file)).toBe('valueModels.risk: no model "pd" in the model manifest (known: risk, fraud, ltv, apply, approve)');
  });

  test('the last creative has a `when`', () => {
    const file = validFile();
    file.strategies[2].creatives = [{ id: 5 }, { id: 6, when: { os: ['ios'] } }];
    expect(refusal(file)).toBe('test strategies is invalid:\n  strategies.2.creatives: the last creative must have no `when` (the default)');
  });

  test.each([
    ['minCoefficient', 0.19, 'too small'],
    ['maxCoefficient', 5.01, 'too big'],
  ])('%s %s is outside the media range 0.2..5.0', (field, value, kind) => {
    const file = validFile();
    file.strategies[1].bid[field] = value;
    const message = refusal(file);
    expect(message).toMatch(new RegExp(`^test strategies is invalid:\\n  strategies\\.1\\.bid\\.${field}: `));
    expect(message.toLowerCase()).toContain(kind);
    expect(message).toContain(kind === 'too small' ? '0.2' : '5');
  });

  test('the bounds themselves are accepted', () => {
    const file = validFile();
    file.strategies[1].bid.minCoefficient = 0.2;
    file.strategies[1].bid.maxCoefficient = 5.0;
    expect(problemWith(file)).toBeUndefined();
  });

  test('minCoefficient above maxCoefficient', () => {
    const file = validFile();
    file.strategies[1].bid.minCoefficient = 2;
    file.strategies[1].bid.maxCoefficient = 1.5;
    expect(refusal(file)).toBe('test strategies is invalid:\n  strategies.1.bid: minCoefficient must not exceed maxCoefficient');
  });

  test.each([1, 9])('cpcBidFen %i is below the media floor of 10 fen', (cpc) => {
    const file = validFile();
    file.strategies[1].bid.cpcBidFen = cpc;
    expect(refusal(file)).toBe('test strategies is invalid:\n  strategies.1.bid: cpcBidFen must be 0 (unset) or at least the media floor of 10 fen');
  });

  test.each([0, 10])('cpcBidFen %i is accepted', (cpc) => {
    const file = validFile();
    file.strategies[1].bid.cpcBidFen = cpc;
    expect(problemWith(file)).toBeUndefined();
  });

  test('experiment arm percents that do not add up to 100', () => {
    const message = refusal(withExperiment([{ name: 'a', tag: 1, percent: 50 }, { name: 'b', tag: 2, percent: 49.99 }]));
    expect(message).toBe('test strategies is invalid:\n  experiments.0.arms: arm percents must add up to 100');
  });

  test('an arm percent with more than two decimals', () => {
    const message = refusal(withExperiment([{ name: 'a', tag: 1, percent: 50.005 }, { name: 'b', tag: 2, percent: 49.995 }]));
    expect(message).toBe('test strategies is invalid:\n  experiments.0.arms: arm percents have at most two decimals (buckets are 0.01 %)');
  });

  // Two-decimal percents are exactly what the schema promises to accept, but `percent * 100` is not an integer in
  // binary floating point for about one in nine of them (1.1 * 100 = 110.00000000000001).
  test.each([
    [1.1, 98.9],
    [0.07, 99.93],
    [14.29, 85.71],
  ])('an arm split %s / %s (two decimals) is accepted', (first, second) => {
    expect(problemWith(withExperiment([{ name: 'holdout', tag: 1, percent: first }, { name: 'main', tag: 2, percent: second }]))).toBeUndefined();
  });

  test('an arm name over 20 bytes is refused even when it is short in characters', () => {
    const name = '实验组一二三四'; // 7 characters, 21 UTF-8 bytes
    const message = refusal(withExperiment([{ name, tag: 1, percent: 100 }]));
    expect(message).toBe('test strategies is invalid:\n  experiments.0.arms.0.name: arm names go on the wire as dsp_tag_str: at most 20 bytes');
    expect(problemWith(withExperiment([{ name: 'x'.repeat(20), tag: 1, percent: 100 }]))).toBeUndefined();
  });

  test('an arm overriding a strategy that is not in its experiment', () => {
    const file = withExperiment([
      { name: 'control', tag: 1, percent: 50 },
      { name: 'steep', tag: 2, percent: 50, overrides: { react: { exponent: 2 } } },
    ]);
    expect(refusal(file)).toBe('experiments[0](exp_one).arms(steep): overrides strategy "react", which is not in this experiment');
  });

  test('an arm override that makes the strategy invalid names the arm and strategy', () => {
    const file = withExperiment([{ name: 'narrow', tag: 1, percent: 100, overrides: { acq: { minCoefficient: 4, maxCoefficient: 3 } } }]);
    expect(refusal(file)).toBe('experiments[0](exp_one).arms(narrow) on "acq": minCoefficient must not exceed maxCoefficient');
  });

  test('an arm override with an unknown bid field', () => {
    const file = withExperiment([{ name: 'a', tag: 1, percent: 100, overrides: { acq: { exponnent: 2 } } }]);
    expect(refusal(file)).toMatch(/^test strategies is invalid:\n {2}experiments\.0\.arms\.0\.overrides\.acq: .*exponnent/);
  });

  test('a strategy in two experiments', () => {
    const file = {
      ...validFile(),
      experiments: [
        { id: 'first', salt: 'a', strategies: ['acq'], arms: [{ name: 'a', tag: 1, percent: 100 }] },
        { id: 'second', salt: 'b', strategies: ['react', 'acq'], arms: [{ name: 'b', tag: 2, percent: 100 }] },
      ],
    };
    expect(refusal(file)).toBe('experiments[1](second): strategy "acq" is already in experiment "first"');
  });

  test('an experiment on an exclusion or an unknown strategy', () => {
    expect(refusal(withExperiment([{ name: 'a', tag: 1, percent: 100 }], ['excl_blacklist']))).toBe(
      'experiments[0](exp_one): strategy "excl_blacklist" is not an enabled bidding strategy',
    );
    expect(refusal(withExperiment([{ name: 'a', tag: 1, percent: 100 }], ['nobody']))).toBe('experiments[0](exp_one): strategy "nobody" is not an enabled bidding strategy');
  });

  test.each([
    ['take', 3599],
    ['reject', 604801],
    ['fallback', 60],
  ])('cache TTL %s = %i is outside 3600..604800', (which, seconds) => {
    const message = refusal({ ...validFile(), cacheTtlSeconds: { [which]: seconds } });
    expect(message).toMatch(new RegExp(`^test strategies is invalid:\\n  cacheTtlSeconds\\.${which}: Too (small|big)`));
  });

  test('cache TTL bounds 3600 and 604800 are accepted', () => {
    expect(problemWith({ ...validFile(), cacheTtlSeconds: { take: 3600, reject: 604800, fallback: 3600 } })).toBeUndefined();
  });
});
