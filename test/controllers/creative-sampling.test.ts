import { describe, expect, test } from 'vitest';
import { thompsonShares } from '../../src/controllers/creative-sampling.js';
import { DemoRandom } from '../../src/store/demo-population.js';

describe('Thompson shares', () => {
  const random = () => {
    const r = new DemoRandom(11);
    return () => r.unit();
  };

  test('a creative clearly better at approvals per impression takes all but the floor', () => {
    const shares = thompsonShares(
      [
        { creative: 1, impressions: 2000, clicks: 200, approvals: 40 },
        { creative: 2, impressions: 2000, clicks: 100, approvals: 10 },
        { creative: 3, impressions: 2000, clicks: 90, approvals: 9 },
      ],
      0.05,
      4000,
      random(),
    );
    expect(shares).toEqual([0.9, 0.05, 0.05]);
  });

  test('approvals per click count, not clicks alone: more clicks that never get approved lose', () => {
    const [clicky, approved] = thompsonShares(
      [
        { creative: 1, impressions: 3000, clicks: 300, approvals: 3 },
        { creative: 2, impressions: 3000, clicks: 150, approvals: 30 },
      ],
      0.05,
      4000,
      random(),
    );
    expect(approved).toBeGreaterThan(0.9);
    expect(clicky).toBe(0.05);
  });

  test('with little to tell them apart the shares stay near even, and they add up to 1', () => {
    const shares = thompsonShares(
      [
        { creative: 1, impressions: 50, clicks: 5, approvals: 1 },
        { creative: 2, impressions: 50, clicks: 5, approvals: 1 },
      ],
      0.05,
      4000,
      random(),
    );
    expect(Math.abs(shares[0]! - 0.5)).toBeLessThan(0.05);
    expect(shares[0]! + shares[1]!).toBeCloseTo(1, 2);
  });
});
