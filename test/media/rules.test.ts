import { describe, expect, test } from 'vitest';
import type { MediaRules } from '../../src/media/module.js';
import { cacheSecondsFor, coefficientFor, cpcPriceFor } from '../../src/media/rules.js';

const TENCENT_LIKE: MediaRules = { coefficient: { min: 0.2, max: 5, decimals: 2 }, cpcFloorFen: 10, cacheSeconds: { min: 3600, max: 604_800 }, declineStatus: 200 };

describe("a media's rules", () => {
  test.each([
    [1.357, 1.36],
    [1.354, 1.35],
    [0.05, 0.2],
    [12, 5],
    [5, 5],
  ])('coefficient %s is sent as %s', (coefficient, sent) => {
    expect(coefficientFor(TENCENT_LIKE, coefficient)).toBe(sent);
  });

  test('rounding never leaves the range: its bounds are rounded inward to the decimals', () => {
    const coarse = { ...TENCENT_LIKE, coefficient: { min: 0.2, max: 4.999, decimals: 0 } };
    expect([coefficientFor(coarse, 0.3), coefficientFor(coarse, 0.1), coefficientFor(coarse, 4.9), coefficientFor(coarse, 2.5)]).toEqual([1, 1, 4, 3]);
    expect(coefficientFor({ ...TENCENT_LIKE, coefficient: { min: 0.2, max: 4.999, decimals: 2 } }, 4.9999)).toBe(4.99);
  });

  test('a coefficient that is no number stays none: the adapters leave it out rather than send a bound', () => {
    expect(coefficientFor(TENCENT_LIKE, Number.NaN)).toBeNaN();
  });

  test('a CPC price under the floor is raised to it; 0 stays "not set"', () => {
    expect([cpcPriceFor(TENCENT_LIKE, 0), cpcPriceFor(TENCENT_LIKE, 3), cpcPriceFor(TENCENT_LIKE, 150)]).toEqual([0, 10, 150]);
  });

  test('cache times are clamped into the range the media accepts', () => {
    expect([cacheSecondsFor(TENCENT_LIKE, 60), cacheSecondsFor(TENCENT_LIKE, 7200), cacheSecondsFor(TENCENT_LIKE, 10_000_000)]).toEqual([3600, 7200, 604_800]);
  });
});
