import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { loadStrategyBook, parseStrategyFile } from '../../src/strategy/book.js';
import { bidStrategy, buildBook, onlyProblem, problemWith, profile, refusal, refusedProblems } from './support.js';

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

const DEMO_PATH = new URL('../../data/strategies.json', import.meta.url).pathname;

function demoFile(): any {
  return JSON.parse(readFileSync(DEMO_PATH, 'utf8'));
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
    expect(refusal(file)).toBe('test strategies is invalid (1 error):\n  strategies: id "acq" is used twice');
  });

  test('the same id on an exclusion and a bidding strategy', () => {
    const file = validFile();
    file.strategies[0].id = 'react';
    expect(onlyProblem(file)).toBe('strategies: id "react" is used twice');
  });

  test('an unknown flag in flagsAll names the strategy index, id and path', () => {
    const file = validFile();
    file.strategies[2].when = { flagsAll: ['approved', 'vip'] };
    const message = onlyProblem(file);
    expect(message).toMatch(/^strategies\[2\]\(react\)\.when\.flagsAll: /);
    expect(message).toContain('no profile flag "vip"');
    expect(message).toContain('known: registered, applied, approved');
  });

  test('an unknown flag inside an exclusion, nested in anyOf', () => {
    const file = validFile();
    file.strategies[0].when = { anyOf: [{ flagsAny: ['blacklisted'] }, { flagsNone: ['frozen'] }] };
    expect(onlyProblem(file)).toMatch(/^strategies\[0\]\(excl_blacklist\)\.when\.anyOf\[1\]\.flagsNone: .*no profile flag "frozen"/);
  });

  test('an unknown profile field', () => {
    const file = validFile();
    file.strategies[1].when = { fields: { salary: { min: 1 } } };
    const message = onlyProblem(file);
    expect(message).toMatch(/^strategies\[1\]\(acq\)\.when\.fields\.salary: /);
    expect(message).toContain('no profile field "salary"');
  });

  test('an unknown model in `scores`, in a strategy and in a creative', () => {
    const inWhen = validFile();
    inWhen.strategies[1].when = { scores: { churn: { max: 0.5 } } };
    expect(onlyProblem(inWhen)).toBe(
      'strategies[1](acq).when.scores.churn: no model "churn" in the model manifest (known: risk, fraud, ltv, apply, approve)',
    );
    const inCreative = validFile();
    inCreative.strategies[2].creatives = [{ id: 5, when: { not: { scores: { churn: { max: 0.5 } } } } }, { id: 6 }];
    expect(onlyProblem(inCreative)).toMatch(/^strategies\[2\]\(react\)\.creatives\[0\]\.when\.not\.scores\.churn: no model "churn"/);
  });

  test('valueModels naming a model the manifest does not have', () => {
    const file = { ...validFile(), valueModels: { apply: 'apply', approve: 'approve', risk: 'pd', ltv: 'ltv' } };
    expect(onlyProblem(file)).toBe('valueModels.risk: no model "pd" in the model manifest (known: risk, fraud, ltv, apply, approve)');
  });

  test('the last creative has a `when`', () => {
    const file = validFile();
    file.strategies[2].creatives = [{ id: 5 }, { id: 6, when: { os: ['ios'] } }];
    expect(refusal(file)).toBe('test strategies is invalid (1 error):\n  strategies[2](react).creatives: the last creative must have no `when` (the default)');
  });

  test.each([
    ['minCoefficient', 0.19, 'too small'],
    ['maxCoefficient', 5.01, 'too big'],
  ])('%s %s is outside the media range 0.2..5.0', (field, value, kind) => {
    const file = validFile();
    file.strategies[1].bid[field] = value;
    const message = onlyProblem(file);
    expect(message).toMatch(new RegExp(`^strategies\\[1\\]\\(acq\\)\\.bid\\.${field}: `));
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
    expect(onlyProblem(file)).toBe('strategies[1](acq).bid: minCoefficient must not exceed maxCoefficient');
  });

  test.each([1, 9])('cpcBidFen %i is below the media floor of 10 fen', (cpc) => {
    const file = validFile();
    file.strategies[1].bid.cpcBidFen = cpc;
    expect(onlyProblem(file)).toBe('strategies[1](acq).bid: cpcBidFen must be 0 (unset) or at least the media floor of 10 fen');
  });

  test.each([0, 10])('cpcBidFen %i is accepted', (cpc) => {
    const file = validFile();
    file.strategies[1].bid.cpcBidFen = cpc;
    expect(problemWith(file)).toBeUndefined();
  });

  test('experiment arm percents that do not add up to 100 name the experiment and the sum', () => {
    expect(onlyProblem(withExperiment([{ name: 'a', tag: 1, percent: 50 }, { name: 'b', tag: 2, percent: 49.99 }]))).toBe(
      'experiments[0](exp_one).arms: arm percents add up to 99.99, not 100',
    );
    expect(onlyProblem(withExperiment([{ name: 'a', tag: 1, percent: 60 }, { name: 'b', tag: 2, percent: 50 }]))).toBe(
      'experiments[0](exp_one).arms: arm percents add up to 110, not 100',
    );
  });

  test('an arm percent with more than two decimals', () => {
    const message = refusal(withExperiment([{ name: 'a', tag: 1, percent: 50.005 }, { name: 'b', tag: 2, percent: 49.995 }]));
    expect(message).toBe('test strategies is invalid (1 error):\n  experiments[0](exp_one).arms: arm percents have at most two decimals (buckets are 0.01 %)');
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
    expect(message).toBe(`test strategies is invalid (1 error):\n  experiments[0](exp_one).arms[0](${name}).name: arm names go on the wire as dsp_tag_str: at most 20 bytes`);
    expect(problemWith(withExperiment([{ name: 'x'.repeat(20), tag: 1, percent: 100 }]))).toBeUndefined();
  });

  test('an arm overriding a strategy that is not in its experiment', () => {
    const file = withExperiment([
      { name: 'control', tag: 1, percent: 50 },
      { name: 'steep', tag: 2, percent: 50, overrides: { react: { exponent: 2 } } },
    ]);
    expect(onlyProblem(file)).toBe('experiments[0](exp_one).arms[1](steep): overrides strategy "react", which is not in this experiment');
  });

  test('an arm override that makes the strategy invalid names the arm and strategy', () => {
    const file = withExperiment([{ name: 'narrow', tag: 1, percent: 100, overrides: { acq: { minCoefficient: 4, maxCoefficient: 3 } } }]);
    expect(onlyProblem(file)).toBe('experiments[0](exp_one).arms[0](narrow).overrides.acq: minCoefficient must not exceed maxCoefficient');
  });

  test('an arm override with an unknown bid field', () => {
    const file = withExperiment([{ name: 'a', tag: 1, percent: 100, overrides: { acq: { exponnent: 2 } } }]);
    expect(onlyProblem(file)).toMatch(/^experiments\[0\]\(exp_one\)\.arms\[0\]\(a\)\.overrides\.acq: .*exponnent/);
  });

  test('a strategy in two experiments: accepted, unless two layers change the same bid field of it', () => {
    const twoLayers = (secondOverride: Record<string, unknown>) => ({
      ...validFile(),
      experiments: [
        { id: 'first', salt: 'a', strategies: ['acq'], arms: [{ name: 'a', tag: 1, percent: 100, overrides: { acq: { exponent: 2 } } }] },
        { id: 'second', salt: 'b', strategies: ['react', 'acq'], arms: [{ name: 'b', tag: 2, percent: 100, overrides: { acq: secondOverride } }] },
      ],
    });
    // Each experiment without a layer is a layer of its own: different fields of acq can be changed by each.
    expect(problemWith(twoLayers({ maxCoefficient: 2 }))).toBeUndefined();
    expect(onlyProblem(twoLayers({ maxCoefficient: 2, exponent: 0.5 }))).toBe(
      'experiments: layers "first" and "second" both change acq.exponent; a device in both could not have both',
    );
    // Two experiments of one layer never share a device, so they may change the same field.
    const oneLayer = {
      ...validFile(),
      layers: [{ id: 'curve', salt: 'curve-salt' }],
      experiments: [
        { id: 'first', layer: 'curve', percent: 50, strategies: ['acq'], arms: [{ name: 'a', tag: 1, percent: 100, overrides: { acq: { exponent: 2 } } }] },
        { id: 'second', layer: 'curve', percent: 50, strategies: ['acq'], arms: [{ name: 'b', tag: 2, percent: 100, overrides: { acq: { exponent: 0.5 } } }] },
      ],
    };
    expect(problemWith(oneLayer)).toBeUndefined();
  });

  test('an experiment on an exclusion or an unknown strategy', () => {
    expect(onlyProblem(withExperiment([{ name: 'a', tag: 1, percent: 100 }], ['excl_blacklist']))).toBe(
      'experiments[0](exp_one): strategy "excl_blacklist" is not an enabled bidding strategy',
    );
    expect(onlyProblem(withExperiment([{ name: 'a', tag: 1, percent: 100 }], ['nobody']))).toBe('experiments[0](exp_one): strategy "nobody" is not an enabled bidding strategy');
  });

  test.each([
    ['take', 3599],
    ['reject', 604801],
    ['fallback', 60],
  ])('cache TTL %s = %i is outside 3600..604800', (which, seconds) => {
    const message = onlyProblem({ ...validFile(), cacheTtlSeconds: { [which]: seconds } });
    expect(message).toMatch(new RegExp(`^cacheTtlSeconds\\.${which}: Too (small|big)`));
  });

  test('cache TTL bounds 3600 and 604800 are accepted', () => {
    expect(problemWith({ ...validFile(), cacheTtlSeconds: { take: 3600, reject: 604800, fallback: 3600 } })).toBeUndefined();
  });
});

describe('strategy file: guardrails', () => {
  test('a bidding strategy without creatives is a schema error, not a crash', () => {
    const file = validFile();
    file.strategies[1].creatives = [];
    expect(onlyProblem(file)).toBe('strategies[1](acq).creatives: a bidding strategy needs at least one creative');
  });

  test('a creative id listed twice in one strategy is refused, naming the id', () => {
    const file = validFile();
    file.strategies[2].creatives = [{ id: 5, when: { os: ['ios'] } }, { id: 6, when: { os: ['android'] } }, { id: 5 }];
    expect(onlyProblem(file)).toBe('strategies[2](react).creatives[2].id: creative id 5 is listed twice (also creatives[0])');
    // One creative serving two strategies is fine: the helper gives both acq and react creative 100.
    expect(problemWith(validFile())).toBeUndefined();
  });

  test('schema errors name strategies, experiments and arms like the compiler does, and only by index when unnamed', () => {
    const file = withExperiment([
      { name: 'control', tag: 1, percent: 50 },
      { name: 'steep', tag: 0, percent: 50 },
    ]);
    delete file.strategies[1].id;
    const problems = refusedProblems(file);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^strategies\[1\]\.id: /);
    expect(problems[1]).toMatch(/^experiments\[0\]\(exp_one\)\.arms\[1\]\(steep\)\.tag: Too small/);
  });

  test('every schema error is listed, however many', () => {
    const file = { strategies: Array.from({ length: 12 }, (_, i) => bidStrategy(`s${i}`, { targetValueFen: -1 })) };
    const problems = refusedProblems(file);
    expect(problems).toHaveLength(12);
    problems.forEach((problem, i) => expect(problem).toMatch(new RegExp(`^strategies\\[${i}\\]\\(s${i}\\)\\.bid\\.targetValueFen: Too small`)));
  });

  test('every compile error is listed in one refusal, in the order of the file', () => {
    const file = {
      valueModels: { apply: 'apply', approve: 'approve', risk: 'pd', ltv: 'ltv' },
      strategies: [
        { id: 'excl_blacklist', kind: 'exclude', reason: 'blacklisted', when: { flagsAny: ['blacklisted', 'frozen'] } },
        bidStrategy('acq', { targetValueFen: 1000 }, { when: { flagsNone: ['registerd'] }, creatives: [{ id: 5, when: { scores: { churn: { max: 0.5 } } } }, { id: 6 }] }),
        bidStrategy('acq', { targetValueFen: 2000 }),
      ],
      experiments: [
        {
          id: 'first',
          salt: 'a',
          strategies: ['acq', 'nobody'],
          arms: [{ name: 'a', tag: 1, percent: 100, overrides: { react: { exponent: 2 }, acq: { minCoefficient: 4, maxCoefficient: 3 } } }],
        },
        // acq in a second experiment is fine in itself; changing maxCoefficient in both layers is not.
        { id: 'second', salt: 'b', strategies: ['acq'], arms: [{ name: 'b', tag: 2, percent: 100, overrides: { acq: { maxCoefficient: 2 } } }] },
      ],
    };
    expect(refusedProblems(file)).toEqual([
      'valueModels.risk: no model "pd" in the model manifest (known: risk, fraud, ltv, apply, approve)',
      'strategies: id "acq" is used twice',
      expect.stringMatching(/^strategies\[0\]\(excl_blacklist\)\.when\.flagsAny: .*no profile flag "frozen"/),
      expect.stringMatching(/^strategies\[1\]\(acq\)\.when\.flagsNone: .*no profile flag "registerd"/),
      expect.stringMatching(/^strategies\[1\]\(acq\)\.creatives\[0\]\.when\.scores\.churn: no model "churn"/),
      'experiments[0](first): strategy "nobody" is not an enabled bidding strategy',
      'experiments[0](first).arms[0](a): overrides strategy "react", which is not in this experiment',
      'experiments[0](first).arms[0](a).overrides.acq: minCoefficient must not exceed maxCoefficient',
      'experiments: layers "first" and "second" both change acq.maxCoefficient; a device in both could not have both',
    ]);
  });

  test('a compile refusal names the file it came from', () => {
    const file = validFile();
    file.strategies[2].when = { flagsAll: ['vip'] };
    const path = join(mkdtempSync(join(tmpdir(), 'strategies-')), 'strategies.json');
    writeFileSync(path, JSON.stringify(file));
    expect(() => loadStrategyBook(path, profile, ['apply', 'approve', 'risk', 'ltv'])).toThrow(
      new RegExp(`^strategies ${path} is invalid \\(1 error\\):\\n  strategies\\[2\\]\\(react\\)\\.when\\.flagsAll: .*no profile flag "vip"`),
    );
  });

  test('the example in the README', () => {
    const file = demoFile();
    file.strategies[3].bid.exponent = 5;
    file.strategies[5].creatives = [];
    file.experiments[0].arms[1].percent = 40;
    expect(() => parseStrategyFile(file, 'strategies data/strategies.json')).toThrow(
      [
        'strategies data/strategies.json is invalid (3 errors):',
        '  strategies[3](acq_prime_new).bid.exponent: Too big: expected number to be <=4',
        '  strategies[5](nudge_registered).creatives: a bidding strategy needs at least one creative',
        '  experiments[0](prime_curve_w48).arms: arm percents add up to 90, not 100',
      ].join('\n'),
    );
  });
});

describe('strategy file: warnings', () => {
  test('a fixed coefficient or an exponent of 0 is allowed, with a warning naming the strategy', () => {
    const file = validFile();
    file.strategies[1].bid = { targetValueFen: 1000, minCoefficient: 1.5, maxCoefficient: 1.5 };
    file.strategies[2].bid = { targetValueFen: 2000, exponent: 0, minCoefficient: 1.2 };
    expect(buildBook(file).warnings).toEqual([
      'strategies[1](acq).bid: minCoefficient = maxCoefficient = 1.5, so every device taken gets that coefficient',
      'strategies[2](react).bid: exponent 0 gives every device taken the same coefficient, 1.2',
    ]);
  });

  test('none for the demo book, the base file or a disabled strategy', () => {
    expect(loadStrategyBook(DEMO_PATH, profile, ['apply', 'approve', 'risk', 'ltv']).warnings).toEqual([]);
    const file = validFile();
    expect(buildBook(file).warnings).toEqual([]);
    file.strategies[1].enabled = false;
    file.strategies[1].bid.exponent = 0;
    expect(buildBook(file).warnings).toEqual([]);
  });
});
