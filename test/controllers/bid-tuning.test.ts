import { describe, expect, test } from 'vitest';
import { tooCostly, tuningStep } from '../../src/controllers/bid-tuning.js';

/** The controller's step for one strategy: direction, damping, the step limit, the bounds around a person's book, volume. */
const strategy = (targetValueFen: number, exponent = 1, tuning: Record<string, number> = {}) => ({
  id: 'acq',
  bid: { targetValueFen, exponent },
  tuning: { targetCostPerApprovedFen: 10_000, minApprovals: 20, maxStep: 0.1, maxChange: 2, ...tuning },
});

describe('tuningStep', () => {
  test('too costly: coefficients down, at most maxStep, by raising targetValueFen', () => {
    // 40,000 fen per approval against a 10,000 target: the damped wish (0.25^0.5 = 0.5) is cut to 1/1.1.
    const step = tuningStep(strategy(9000), { costFen: 40 * 40_000, approvals: 40 }, 9000, 0.5);
    expect(step.targetValueFen).toBe(9900);
    expect(step.reason).toBe('cost per approved 40000 fen over 40 approvals, target 10000: targetValueFen 9000 -> 9900 (coefficients down 9.1 %)');
  });

  test('cheap: coefficients up; a small gap moves by the damped gap, not the step limit', () => {
    // 9,604 fen against 10,000: (10000/9604)^0.5 = 1.0204, coefficients up 2 %.
    const step = tuningStep(strategy(9000), { costFen: 9604 * 25, approvals: 25 }, 9000, 0.5);
    expect(step.targetValueFen).toBe(Math.round(9000 / Math.sqrt(10_000 / 9604)));
    expect(step.reason).toMatch(/coefficients up 2\.0 %\)$/);
  });

  test('the exponent: coefficients scale as targetValueFen^-exponent, so a 10 % step with exponent 0.5 is 21 % of target', () => {
    const step = tuningStep(strategy(9500, 0.5), { costFen: 40_000 * 30, approvals: 30 }, 9500, 0.5);
    expect(step.targetValueFen).toBe(Math.round(9500 * 1.1 ** 2));
  });

  test('never beyond maxChange around the book a person applied; at the bound it says so and leaves it', () => {
    const near = tuningStep(strategy(17_000), { costFen: 40_000 * 30, approvals: 30 }, 9000, 0.5);
    expect(near.targetValueFen).toBe(18_000);
    const at = tuningStep(strategy(18_000), { costFen: 40_000 * 30, approvals: 30 }, 9000, 0.5);
    expect(at.targetValueFen).toBeNull();
    expect(at.reason).toMatch(/at its bound \(maxChange 2 around 9000\)/);
  });

  test('too few approvals, or coefficients that do not depend on the target: no change, and why', () => {
    expect(tuningStep(strategy(9000), { costFen: 1_000_000, approvals: 19 }, 9000, 0.5)).toMatchObject({
      targetValueFen: null,
      reason: '19 approvals since the last look, fewer than minApprovals 20',
    });
    expect(tuningStep(strategy(9000, 0), { costFen: 1_000_000, approvals: 50 }, 9000, 0.5).reason).toBe('bid.exponent is 0: its coefficients do not depend on targetValueFen');
  });
});

describe('tooCostly (the pause rule)', () => {
  const pausing = (tuning: Record<string, number> = {}) => strategy(9000, 1, { pauseAbove: 3, ...tuning });

  test('above pauseAbove x target on enough spend: too costly, and why', () => {
    expect(tooCostly(pausing(), { costFen: 40_000 * 20, approvals: 20 })).toBe('cost per approved 40000 fen (800000 fen over 20 approvals), above 3 x target 10000');
    // Spend without a single approval counts against one.
    expect(tooCostly(pausing(), { costFen: 700_000, approvals: 0 })).toMatch(/^cost per approved 700000 fen/);
  });

  test('not above the multiple, too little spend to be sure, or no pauseAbove: never paused', () => {
    expect(tooCostly(pausing(), { costFen: 30_000 * 40, approvals: 40 })).toBeNull();
    // 3 x 10,000 x 20 approvals' worth = 600,000 fen is the least spend that can pause.
    expect(tooCostly(pausing(), { costFen: 599_999, approvals: 0 })).toBeNull();
    expect(tooCostly(strategy(9000), { costFen: 10_000_000, approvals: 1 })).toBeNull();
  });
});
