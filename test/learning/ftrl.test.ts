import { describe, expect, test } from 'vitest';
import { figures, FtrlCorrection } from '../../src/learning/ftrl.js';
import { compileLogistic, parseLogisticModel, type LogisticModel } from '../../src/scoring/logistic.js';
import { DemoRandom } from '../../src/store/demo-population.js';

/**
 * FTRL-proximal on our logistic format: a file model that knows nothing of income or credit band, and outcomes that
 * depend on both. Progressive validation must show the learned model better than the file's on examples neither had
 * seen, and the learned file must score exactly what the learner predicts.
 */
const FEATURES = ['income_score', 'credit_band'];
const PARAMS = { alpha: 0.1, beta: 1, l1: 0.5, l2: 1, maxCorrection: 3, holdout: 2000 };
const blank: LogisticModel = parseLogisticModel(
  {
    format: 'rta-logistic/1',
    name: 'approve',
    version: 'file-1',
    bias: 0,
    dense: [{ feature: 'income_score', weight: 0, ifMissing: 0.5 }],
    hashed: { hash: 'fnv1a32', buckets: 64, features: ['credit_band'], weights: new Array(64).fill(0) },
  },
  'test model',
);

function world(seed: number, count: number): { rows: Float32Array[]; labels: (0 | 1)[] } {
  const random = new DemoRandom(seed);
  const rows: Float32Array[] = [];
  const labels: (0 | 1)[] = [];
  for (let i = 0; i < count; i++) {
    const income = random.chance(0.1) ? NaN : random.unit();
    const band = random.int(1, 5);
    const logit = -1 + 3 * (Number.isNaN(income) ? 0.5 : income) + (band === 1 ? 1.5 : band === 5 ? -1.5 : 0);
    rows.push(Float32Array.of(income, band));
    labels.push(random.chance(1 / (1 + Math.exp(-logit))) ? 1 : 0);
  }
  return { rows, labels };
}

describe('FTRL correction', () => {
  test('learns what the file model misses: lower log loss and higher AUC than the file on the same unseen examples', () => {
    const learner = new FtrlCorrection(blank, FEATURES, PARAMS);
    const { rows, labels } = world(3, 8000);
    rows.forEach((row, i) => learner.learn(row, labels[i]!));
    const f = learner.figures();
    expect(f).toMatchObject({ examples: 8000, holdout: 2000 });
    // The file says 0.5 for everyone: log loss ln 2, AUC one half.
    expect(f.live.logLoss).toBeCloseTo(Math.log(2), 6);
    expect(f.live.auc).toBeCloseTo(0.5, 6);
    expect(f.candidate.logLoss).toBeLessThan(f.live.logLoss - 0.05);
    expect(f.candidate.auc).toBeGreaterThan(0.7);
  });

  test('the published file scores what the learner predicts, and adopting it makes it the one to beat', () => {
    const learner = new FtrlCorrection(blank, FEATURES, PARAMS);
    const { rows, labels } = world(5, 3000);
    rows.forEach((row, i) => learner.learn(row, labels[i]!));
    const model = parseLogisticModel(JSON.parse(JSON.stringify(learner.candidate('file-1.online-1', 'learned'))), 'candidate');
    expect(model.version).toBe('file-1.online-1');
    const compiled = compileLogistic(model, FEATURES);
    const out = new Float32Array(1);
    for (const row of rows.slice(0, 50)) {
      compiled.scoreRows(row, 1, out, 0, 1);
      expect(out[0]).toBeCloseTo(learner.predict(row), 5);
    }
    learner.adopt();
    const more = world(6, 2000);
    more.rows.forEach((row, i) => learner.learn(row, more.labels[i]!));
    const f = learner.figures();
    // In service is now the learned model: the two differ only by what the last 2,000 examples taught.
    expect(Math.abs(f.candidate.logLoss - f.live.logLoss)).toBeLessThan(0.02);
  });

  test('no weight moves further than maxCorrection from the file', () => {
    const learner = new FtrlCorrection(blank, FEATURES, { ...PARAMS, alpha: 5, maxCorrection: 0.25 });
    const { rows, labels } = world(7, 3000);
    rows.forEach((row, i) => learner.learn(row, labels[i]!));
    const model = learner.candidate('v', 'd');
    for (const w of [model.bias, ...model.dense.map((d) => d.weight), ...model.hashed!.weights]) expect(Math.abs(w)).toBeLessThanOrEqual(0.25);
  });

  test('figures: log loss and AUC with ties counted half', () => {
    expect(figures([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]).auc).toBeCloseTo(0.75, 10);
    expect(figures([0, 1], [0.5, 0.5]).auc).toBe(0.5);
    expect(figures([1], [0.5]).auc).toBeNaN();
    expect(figures([1, 0], [0.9, 0.1]).logLoss).toBeCloseTo(-Math.log(0.9), 10);
  });
});
