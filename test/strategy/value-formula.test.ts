import { describe, expect, test } from 'vitest';
import { Verdict } from '../../src/strategy/book.js';
import { compileValueFormula } from '../../src/strategy/value-formula.js';
import { bidStrategy, buildBook, makeView, MODEL_NAMES, onlyProblem, profile, refusedProblems, screenAndDecide, strategyDecision, type ModelScores, type ViewSpec } from './support.js';

/** The book's own formula gives 8250 fen for these (see book.test.ts). */
const SCORES: ModelScores = { apply: 0.5, approve: 0.5, risk: 0.125, ltv: 400 };
const KNOWN: ViewSpec = { scores: SCORES, record: { fields: { income_score: 600 } } };

function withValue(value: string, bid: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return buildBook({ strategies: [bidStrategy('s', { targetValueFen: 1000, ...bid }, { value, ...extra })] });
}

/** The coefficient strategy `s` sends for `spec` with this value formula and target 1000 fen (value / 1000). */
function coefficientOf(value: string, spec: ViewSpec = KNOWN, bid: Record<string, unknown> = {}): number | undefined {
  return strategyDecision(withValue(value, bid), spec, 's')?.coefficient;
}

describe('a strategy with its own value formula', () => {
  test('written like the book formula, it decides exactly as the book formula does', () => {
    const formula = 'score.apply * score.approve * ((1 - score.risk) * score.ltv * 100 - score.risk * bid.lossGivenDefaultFen)';
    const own = strategyDecision(withValue(formula, { targetValueFen: 8250, lossGivenDefaultFen: 16000 }), KNOWN, 's');
    const book = strategyDecision(buildBook({ strategies: [bidStrategy('s', { targetValueFen: 8250, lossGivenDefaultFen: 16000 })] }), KNOWN, 's');
    expect(own?.coefficient).toBe(1);
    expect(own).toEqual(book);
  });

  test('arithmetic keeps the usual precedence, and the functions compute what they say', () => {
    expect(coefficientOf('2000 + 1000 * 2 - 1000 / 2')).toBe(3.5);
    expect(coefficientOf('(2000 + 1000) * 0.5')).toBe(1.5);
    expect(coefficientOf('-(-1500)')).toBe(1.5);
    expect(coefficientOf('min(3000, 2000, 4000)')).toBe(2);
    expect(coefficientOf('max(500, 2500)')).toBe(2.5);
    expect(coefficientOf('clamp(9000, 1000, 3000) + clamp(-5, 0, 1)')).toBe(3);
    expect(coefficientOf('pow(10, 3) * exp(0) + log(1)')).toBe(1);
    expect(coefficientOf('1.5e3')).toBe(1.5);
  });

  test('reads profile fields and model scores of the device', () => {
    expect(coefficientOf('field.income_score * 5')).toBe(3);
    expect(coefficientOf('score.apply * 4000')).toBe(2);
  });

  test('a field of an unknown device is no value: the strategy does not take it', () => {
    const { mask, outcome } = screenAndDecide(withValue('field.income_score * 5'), { scores: SCORES });
    expect(outcome?.strategies).toEqual([]);
    expect(mask[0]).toBe(Verdict.NO_VALUE);
  });

  test('bid numbers are those of the device arm, after its overrides', () => {
    const book = buildBook({
      strategies: [bidStrategy('s', { targetValueFen: 1000, lossGivenDefaultFen: 1000 }, { value: 'bid.lossGivenDefaultFen * 2' })],
      experiments: [{ id: 'lgd', salt: 'x', strategies: ['s'], arms: [{ name: 'high', tag: 7, percent: 100, overrides: { s: { lossGivenDefaultFen: 1500 } } }] }],
    });
    expect(strategyDecision(book, KNOWN, 's')?.coefficient).toBe(3);
  });

  test('the book keeps its own formula for the strategies without one', () => {
    const book = buildBook({
      strategies: [bidStrategy('own', { targetValueFen: 1000 }, { value: '2000' }), bidStrategy('book', { targetValueFen: 8250, lossGivenDefaultFen: 16000 })],
    });
    const { outcome } = screenAndDecide(book, KNOWN);
    expect(outcome?.strategies.map((s) => [s.strategyId, s.coefficient])).toEqual([
      ['own', 2],
      ['book', 1],
    ]);
  });
});

describe('formulas the book refuses, each with its strategy and reason', () => {
  const refused = (value: string, bid: Record<string, unknown> = {}) => onlyProblem({ strategies: [bidStrategy('s', { targetValueFen: 1000, ...bid }, { value })] });

  test.each([
    ['score.fraudd * 2', /strategies\[0\]\(s\)\.value: score\.fraudd: no model "fraudd" in the model manifest \(known: risk, fraud/],
    ['field.salary', /strategies\[0\]\(s\)\.value: field\.salary: .*no profile field "salary"/],
    ['bid.exponent * 2', /strategies\[0\]\(s\)\.value: bid\.exponent: not a number of the bid \(targetValueFen, minValueFen/],
    ['sqrt(4)', /strategies\[0\]\(s\)\.value: unknown name "sqrt"/],
    ['1 +', /strategies\[0\]\(s\)\.value: the formula ends where a value was expected/],
    ['(1 + 2', /strategies\[0\]\(s\)\.value: expected "\)" at the end/],
    ['1 2', /strategies\[0\]\(s\)\.value: unexpected "2" after a complete formula/],
    ['clamp(1, 2)', /strategies\[0\]\(s\)\.value: clamp takes 3 arguments, not 2/],
    ['min(1)', /strategies\[0\]\(s\)\.value: min takes 2 or more arguments, not 1/],
    ['process.exit(1)', /strategies\[0\]\(s\)\.value: unknown name "process\.exit"/],
    ['constructor.constructor(1)', /strategies\[0\]\(s\)\.value: unknown name "constructor\.constructor"/],
    ['"a"', /strategies\[0\]\(s\)\.value: unexpected """ at character 1/],
    ['score.apply; 1', /strategies\[0\]\(s\)\.value: unexpected ";" at character 12/],
    ['1e999 * score.apply', /strategies\[0\]\(s\)\.value: 1e999 is too large for a number/],
    ['x'.repeat(501), /strategies\[0\]\(s\)\.value: a value formula has at most 500 characters/],
  ])('%s', (value, reason) => {
    expect(refused(value)).toMatch(reason);
  });

  test('assumeApproved is a term of the book formula only, so next to an own formula it is refused, in an arm too', () => {
    expect(refused('2000', { assumeApproved: true })).toMatch(/strategies\[0\]\(s\)\.bid\.assumeApproved: applies to the book's value formula only/);
    const problems = refusedProblems({
      strategies: [bidStrategy('s', { targetValueFen: 1000 }, { value: '2000' })],
      experiments: [{ id: 'e', salt: 'x', strategies: ['s'], arms: [{ name: 'a', tag: 1, percent: 100, overrides: { s: { assumeApproved: true } } }] }],
    });
    expect(problems).toEqual([expect.stringMatching(/experiments\[0\]\(e\)\.arms\[0\]\(a\)\.overrides\.s\.assumeApproved: applies to the book's value formula only/)]);
  });

  test('every bad formula of a file is reported at once', () => {
    const problems = refusedProblems({
      strategies: [bidStrategy('a', { targetValueFen: 1000 }, { value: 'score.nope' }), bidStrategy('b', { targetValueFen: 1000 }, { value: '1 *' })],
    });
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^strategies\[0\]\(a\)\.value/);
    expect(problems[1]).toMatch(/^strategies\[1\]\(b\)\.value/);
  });
});

test('inputs names each value the formula read, for explain', () => {
  const problems: string[] = [];
  const scope = { profile, modelIndex: new Map(MODEL_NAMES.map((name, i) => [name, i])) };
  const formula = compileValueFormula('score.apply * field.income_score - bid.lossGivenDefaultFen + score.apply', scope, 'value', problems)!;
  expect(problems).toEqual([]);
  const view = makeView(KNOWN);
  const bid = withValue('1').strategiesOutline()[0]!.bid;
  expect(formula.inputs(view.scores, view.scoresOffset, view.records, view.recordOffset, bid)).toBe('score.apply = 0.5, field.income_score = 600, bid.lossGivenDefaultFen = 200000');
  expect(formula.evaluate(view.scores, view.scoresOffset, view.records, view.recordOffset, bid)).toBe(0.5 * 600 - 200000 + 0.5);
});
