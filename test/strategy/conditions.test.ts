import { describe, expect, test } from 'vitest';
import { Os } from '../../src/engine/types.js';
import { compileCondition, splitByStage, type CompiledCondition, type ConditionScope } from '../../src/strategy/conditions.js';
import { conditionSchema, type Condition, type ConditionInput } from '../../src/strategy/schema.js';
import { makeView, MODEL_NAMES, profile, type ViewSpec } from './support.js';

const scope: ConditionScope = { profile, modelIndex: new Map(MODEL_NAMES.map((name, i) => [name, i])) };

/** Compiles a condition that must have no problems: a predicate compiled with problems is not to be used. */
function compile(condition: Condition, where = 'test'): CompiledCondition {
  const problems: string[] = [];
  const compiled = compileCondition(condition, scope, where, problems);
  expect(problems).toEqual([]);
  return compiled;
}

/** Parses the condition as the strategy file would (defaults filled in), compiles it and runs it on one view. */
function holds(condition: ConditionInput, spec: ViewSpec): boolean {
  return compile(conditionSchema.parse(condition)).test(makeView(spec));
}

function needsScores(condition: ConditionInput): boolean {
  return compile(conditionSchema.parse(condition)).needsScores;
}

describe('compiled conditions', () => {
  test('an empty condition holds for every device', () => {
    expect(holds({}, {})).toBe(true);
    expect(holds({}, { record: { flags: ['blacklisted'] } })).toBe(true);
  });

  test('os', () => {
    expect(holds({ os: ['ios'] }, { os: Os.IOS })).toBe(true);
    expect(holds({ os: ['ios'] }, { os: Os.ANDROID })).toBe(false);
    expect(holds({ os: ['android', 'unknown'] }, { os: Os.UNKNOWN })).toBe(true);
    expect(holds({ os: ['android', 'unknown'] }, { os: Os.OTHER })).toBe(false);
    expect(holds({ os: ['other'] }, { os: Os.OTHER })).toBe(true);
  });

  test('known', () => {
    expect(holds({ known: true }, { record: {} })).toBe(true);
    expect(holds({ known: true }, {})).toBe(false);
    expect(holds({ known: false }, {})).toBe(true);
    expect(holds({ known: false }, { record: {} })).toBe(false);
  });

  test('flagsAll needs every flag, flagsAny one of them, flagsNone none', () => {
    const both = { record: { flags: ['approved', 'dormant'] } };
    const one = { record: { flags: ['approved'] } };
    const neither = { record: { flags: ['registered'] } };
    expect([both, one, neither].map((v) => holds({ flagsAll: ['approved', 'dormant'] }, v))).toEqual([true, false, false]);
    expect([both, one, neither].map((v) => holds({ flagsAny: ['approved', 'dormant'] }, v))).toEqual([true, true, false]);
    expect([both, one, neither].map((v) => holds({ flagsNone: ['approved', 'dormant'] }, v))).toEqual([false, false, true]);
    // An unknown device has no flags set.
    expect(holds({ flagsNone: ['registered'] }, {})).toBe(true);
    expect(holds({ flagsAny: ['registered'] }, {})).toBe(false);
  });

  test('field ranges include both ends', () => {
    const range = { fields: { days_since_last_active: { min: 90, max: 180 } } };
    const at = (days: number) => holds(range, { record: { fields: { days_since_last_active: days } } });
    expect([89, 90, 135, 180, 181].map(at)).toEqual([false, true, true, true, false]);
    expect(holds({ fields: { income_score: { max: 0.5 } } }, { record: { fields: { income_score: 0.25 } } })).toBe(true);
    expect(holds({ fields: { income_score: { max: 0.5 } } }, { record: { fields: { income_score: 0.75 } } })).toBe(false);
  });

  test('a missing value (schema sentinel, NaN float, unknown device) fails by default and passes with missing: pass', () => {
    // data/profile-schema.json: credit_band's missing marker is 0, multi_lender_count's is 255, floats use NaN.
    const sentinelBand = { record: { fields: {} } };
    expect(holds({ fields: { credit_band: { max: 3 } } }, sentinelBand)).toBe(false);
    expect(holds({ fields: { credit_band: { max: 3, missing: 'pass' } } }, sentinelBand)).toBe(true);
    expect(holds({ fields: { multi_lender_count: { max: 300 } } }, sentinelBand)).toBe(false);
    expect(holds({ fields: { multi_lender_count: { max: 300, missing: 'pass' } } }, sentinelBand)).toBe(true);
    expect(holds({ fields: { income_score: { min: 0 } } }, sentinelBand)).toBe(false);
    expect(holds({ fields: { income_score: { min: 0, missing: 'pass' } } }, sentinelBand)).toBe(true);
    expect(holds({ fields: { credit_band: { max: 3 } } }, {})).toBe(false);
    expect(holds({ fields: { credit_band: { max: 3, missing: 'pass' } } }, {})).toBe(true);
    // missing: pass must not let a present value outside the range through.
    expect(holds({ fields: { credit_band: { max: 3, missing: 'pass' } } }, { record: { fields: { credit_band: 4 } } })).toBe(false);
  });

  test('score ranges read the model by name, and a NaN score counts as missing', () => {
    expect(holds({ scores: { risk: { min: 0.2 } } }, { scores: { risk: 0.25 } })).toBe(true);
    expect(holds({ scores: { risk: { min: 0.2 } } }, { scores: { risk: 0.125 } })).toBe(false);
    // The fraud score sits next to risk: reading the wrong index would flip these.
    expect(holds({ scores: { fraud: { max: 0.5 } } }, { scores: { risk: 0.9, fraud: 0.1 } })).toBe(true);
    expect(holds({ scores: { fraud: { max: 0.5 } } }, { scores: { risk: 0.1, fraud: 0.9 } })).toBe(false);
    expect(holds({ scores: { risk: { min: 0.2 } } }, {})).toBe(false);
    expect(holds({ scores: { risk: { min: 0.2, missing: 'pass' } } }, {})).toBe(true);
  });

  test('platformExperimentsAny', () => {
    expect(holds({ platformExperimentsAny: [32768, 7] }, { platformExperimentIds: [1, 7] })).toBe(true);
    expect(holds({ platformExperimentsAny: [32768, 7] }, { platformExperimentIds: [1, 2] })).toBe(false);
    expect(holds({ platformExperimentsAny: [32768] }, { platformExperimentIds: [] })).toBe(false);
  });

  test('anyOf needs one option; not inverts; keys combine with AND', () => {
    const condition: ConditionInput = {
      os: ['android'],
      anyOf: [{ flagsAny: ['overdue_recent'] }, { fields: { multi_lender_count: { min: 5 } } }],
      not: { flagsAny: ['blacklisted'] },
    };
    expect(holds(condition, { record: { flags: ['overdue_recent'] } })).toBe(true);
    expect(holds(condition, { record: { fields: { multi_lender_count: 6 } } })).toBe(true);
    expect(holds(condition, { record: { fields: { multi_lender_count: 2 } } })).toBe(false);
    expect(holds(condition, { record: { flags: ['overdue_recent', 'blacklisted'] } })).toBe(false);
    expect(holds(condition, { os: Os.IOS, record: { flags: ['overdue_recent'] } })).toBe(false);
    expect(holds({ not: { not: { known: true } } }, { record: {} })).toBe(true);
    expect(holds({ not: { not: { known: true } } }, {})).toBe(false);
  });

  test('needsScores is set exactly when a score is read, however deep', () => {
    expect(needsScores({ os: ['ios'], flagsAny: ['approved'], fields: { credit_band: { max: 2 } } })).toBe(false);
    expect(needsScores({ scores: { risk: { max: 0.1 } } })).toBe(true);
    expect(needsScores({ anyOf: [{ known: false }, { not: { scores: { apply: { min: 0.5 } } } }] })).toBe(true);
    expect(needsScores({ anyOf: [{ known: false }, { not: { known: true } }] })).toBe(false);
  });

  test('flags from a non-flags field are refused', () => {
    const problems: string[] = [];
    compileCondition({ flagsAny: ['registered', 'nonsense'] }, scope, 'here', problems);
    expect(problems).toEqual([expect.stringMatching(/^here\.flagsAny: .*no profile flag "nonsense"/)]);
  });

  test('every unknown name in a condition is reported, not just the first', () => {
    const problems: string[] = [];
    compileCondition({ flagsAll: ['vip'], fields: { salary: { min: 1 } }, anyOf: [{ scores: { churn: { max: 0.5 } } }] }, scope, 'here', problems);
    expect(problems).toEqual([
      expect.stringMatching(/^here\.flagsAll: .*no profile flag "vip"/),
      expect.stringMatching(/^here\.fields\.salary: .*no profile field "salary"/),
      expect.stringMatching(/^here\.anyOf\[0\]\.scores\.churn: no model "churn"/),
    ]);
  });
});

describe('splitByStage', () => {
  test('score-free parts go before scoring, score parts after', () => {
    const { beforeScoring, afterScoring } = splitByStage(
      conditionSchema.parse({
        os: ['android'],
        known: true,
        flagsAll: ['approved'],
        flagsNone: ['blacklisted'],
        fields: { credit_band: { max: 3 } },
        platformExperimentsAny: [5],
        scores: { risk: { max: 0.1 } },
      }),
    );
    expect(Object.keys(beforeScoring).sort()).toEqual(['fields', 'flagsAll', 'flagsNone', 'known', 'os', 'platformExperimentsAny']);
    expect(afterScoring).toEqual({ scores: { risk: { max: 0.1, missing: 'fail' } } });
  });

  test('anyOf and not go after scoring when they contain a score, before otherwise', () => {
    const withScores = splitByStage(
      conditionSchema.parse({
        flagsAny: ['approved'],
        anyOf: [{ known: false }, { scores: { apply: { min: 0.5 } } }],
        not: { anyOf: [{ scores: { risk: { min: 0.3 } } }] },
      }),
    );
    expect(Object.keys(withScores.beforeScoring)).toEqual(['flagsAny']);
    expect(Object.keys(withScores.afterScoring).sort()).toEqual(['anyOf', 'not']);

    const withoutScores = splitByStage(conditionSchema.parse({ anyOf: [{ known: false }, { os: ['ios'] }], not: { flagsAny: ['dormant'] } }));
    expect(Object.keys(withoutScores.beforeScoring).sort()).toEqual(['anyOf', 'not']);
    expect(withoutScores.afterScoring).toEqual({});
  });

  test('the two stages together decide like the whole condition', () => {
    const whole = conditionSchema.parse({
      flagsNone: ['registered'],
      anyOf: [{ os: ['ios'] }, { scores: { apply: { min: 0.5 } } }],
      scores: { risk: { max: 0.2 } },
    });
    const { beforeScoring, afterScoring } = splitByStage(whole);
    const before = compile(beforeScoring, 'b');
    const after = compile(afterScoring, 'a');
    expect(before.needsScores).toBe(false);
    const specs: ViewSpec[] = [
      { os: Os.IOS, scores: { risk: 0.1 } },
      { os: Os.ANDROID, scores: { risk: 0.1, apply: 0.25 } },
      { os: Os.ANDROID, scores: { risk: 0.1, apply: 0.75 } },
      { os: Os.IOS, scores: { risk: 0.5 } },
      { os: Os.IOS, record: { flags: ['registered'] }, scores: { risk: 0.1 } },
    ];
    const wholeCompiled = compile(whole, 'w');
    const staged = specs.map((s) => before.test(makeView(s)) && after.test(makeView(s)));
    expect(staged).toEqual(specs.map((s) => wholeCompiled.test(makeView(s))));
    expect(staged).toEqual([true, false, true, false, false]);
  });
});
