import { describe, expect, test } from 'vitest';
import { compileLogistic, fnv1a32, logisticFeatures, logisticToken, parseLogisticModel } from '../../src/scoring/logistic.js';
import { referenceLogistic } from '../../src/scoring/reference.js';
import { seededRandom } from '../support/seeded-random.js';

const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

function score(json: unknown, featureNames: string[], row: number[]): number {
  const out = new Float32Array(1);
  compileLogistic(parseLogisticModel(json, 'model.json'), featureNames).scoreRows(Float32Array.from(row), 1, out, 0, 1);
  return out[0]!;
}

describe('FNV-1a 32', () => {
  test.each([
    ['', 0x811c9dc5],
    ['a', 0xe40c292c],
    ['foobar', 0xbf9cf968],
  ])('published test vector %j', (text, expected) => {
    expect(fnv1a32(text)).toBe(expected);
  });
  test('hashes UTF-8 bytes, not UTF-16 code units', () => {
    // "é" is 0xC3 0xA9 in UTF-8.
    const byHand = Math.imul(Math.imul(0x811c9dc5 ^ 0xc3, 0x01000193) ^ 0xa9, 0x01000193) >>> 0;
    expect(fnv1a32('é')).toBe(byHand);
  });
});

describe('scoring against hand-computed values', () => {
  const buckets = 64;
  const weights = Array.from({ length: buckets }, (_, i) => (i - 32) / 100);
  const model = {
    format: 'rta-logistic/1',
    name: 'approve',
    version: '1',
    bias: -0.25,
    dense: [
      { feature: 'income_score', weight: 2, ifMissing: 0.5 },
      { feature: 'multi_lender_count', weight: -0.5 },
    ],
    hashed: { hash: 'fnv1a32', buckets, features: ['credit_band', 'flag:approved'], weights },
  };
  const features = ['flag:approved', 'income_score', 'credit_band', 'multi_lender_count'];
  const bucketWeight = (token: string) => weights[fnv1a32(token) % buckets]!;

  test('dense weights plus one hashed weight per token', () => {
    const income = Math.fround(0.7);
    const z = -0.25 + 2 * income - 0.5 * 3 + bucketWeight('credit_band=2') + bucketWeight('flag:approved=1');
    expect(score(model, features, [1, 0.7, 2, 3])).toBe(Math.fround(sigmoid(z)));
  });
  test('a missing dense feature takes ifMissing (default 0); a missing hashed one hashes "name=missing"', () => {
    const z = -0.25 + 2 * 0.5 + bucketWeight('credit_band=missing') + bucketWeight('flag:approved=0');
    expect(score(model, features, [0, NaN, NaN, NaN])).toBe(Math.fround(sigmoid(z)));
  });
  test('multi-digit values hash as their decimal text', () => {
    const z = -0.25 + 2 * 0.5 + bucketWeight('credit_band=65535') + bucketWeight('flag:approved=0');
    expect(score(model, features, [0, 0.5, 65535, 0])).toBe(Math.fround(sigmoid(z)));
  });
  test('Platt calibration applies sigmoid(a * z + b)', () => {
    const calibrated = { ...model, calibration: { method: 'platt', a: 1.5, b: -0.2 } };
    const z = -0.25 + 2 * 0.5 + bucketWeight('credit_band=4') + bucketWeight('flag:approved=1');
    expect(score(calibrated, features, [1, 0.5, 4, 0])).toBe(Math.fround(sigmoid(1.5 * z - 0.2)));
  });
  test('a model without hashed features', () => {
    const dense = { ...model, hashed: undefined };
    expect(score(dense, ['income_score', 'multi_lender_count'], [0.25, 2])).toBe(Math.fround(sigmoid(-0.25 + 0.5 - 1)));
  });
  test('the features it reads, dense first', () => {
    expect(logisticFeatures(parseLogisticModel(model, 'm'))).toEqual(['income_score', 'multi_lender_count', 'credit_band', 'flag:approved']);
  });
});

test('compiled (digits hashed in place) agrees exactly with the reference (token strings hashed)', () => {
  const random = seededRandom(7);
  const buckets = 1021;
  const json = {
    format: 'rta-logistic/1',
    name: 'm',
    version: '1',
    bias: 0.1,
    dense: [{ feature: 'd', weight: 0.3, ifMissing: 1 }],
    hashed: { hash: 'fnv1a32', buckets, features: ['a', 'b', 'd'], weights: Array.from({ length: buckets }, () => random() - 0.5) },
  };
  const model = parseLogisticModel(json, 'm');
  const names = ['b', 'a', 'd'];
  const rows = 2000;
  const values = new Float32Array(rows * 3);
  const samples = [0, 1, 9, 10, 99, 100, 255, 1000, 65535, 4294967295];
  for (let i = 0; i < values.length; i++) {
    const pick = random();
    values[i] = pick < 0.15 ? NaN : pick < 0.5 ? samples[Math.floor(random() * samples.length)]! : Math.floor(random() * 100000);
  }
  const out = new Float32Array(rows);
  compileLogistic(model, names).scoreRows(values, rows, out, 0, 1);
  for (let row = 0; row < rows; row++) expect(out[row]).toBe(referenceLogistic(model, names, values, row * 3));
  expect(logisticToken('credit_band', 3)).toBe('credit_band=3');
});

describe('malformed logistic models are refused with a precise message', () => {
  const valid = () => ({
    format: 'rta-logistic/1',
    name: 'approve',
    version: '1',
    bias: 0,
    dense: [{ feature: 'income_score', weight: 1 }],
    hashed: { hash: 'fnv1a32', buckets: 4, features: ['credit_band'], weights: [0, 0, 0, 0] },
  });
  const refuse = (mutate: (json: any) => void) => {
    const json: any = valid();
    mutate(json);
    return () => parseLogisticModel(json, 'approve.json');
  };
  test('unknown format tag', () => {
    expect(refuse((j) => (j.format = 'rta-logistic/2'))).toThrow(/^approve\.json: format: expected format "rta-logistic\/1"/);
  });
  test('weights not matching the bucket count', () => {
    expect(refuse((j) => j.hashed.weights.pop())).toThrow(/hashed\.weights has 3 entries but buckets is 4/);
  });
  test('a non-numeric weight names its place', () => {
    expect(refuse((j) => (j.hashed.weights[2] = 'x'))).toThrow(/^approve\.json: hashed\.weights\[2\]: /);
  });
  test('a dense feature with two weights', () => {
    expect(refuse((j) => j.dense.push({ feature: 'income_score', weight: 2 }))).toThrow(/dense: feature "income_score" has two weights/);
  });
  test('an unknown hash', () => {
    expect(refuse((j) => (j.hashed.hash = 'murmur3'))).toThrow(/hashed\.hash: the only token hash is "fnv1a32"/);
  });
  test('an unknown calibration', () => {
    expect(refuse((j) => (j.calibration = { method: 'isotonic', a: 1, b: 0 }))).toThrow(/calibration\.method: the only calibration is "platt"/);
  });
  test('an unexpected key', () => {
    expect(refuse((j) => (j.intercept = 1))).toThrow(/^approve\.json: \(root\): /);
  });
  test('a feature missing from the manifest feature list', () => {
    expect(() => compileLogistic(parseLogisticModel(valid(), 'm'), ['income_score'])).toThrow(
      /model "approve" reads feature "credit_band", which is not in its feature list \(income_score\)/,
    );
  });
});
