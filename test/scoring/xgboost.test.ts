import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { referenceXgboost } from '../../src/scoring/reference.js';
import { compileXgboost, loadXgboostModel, MAX_TREE_DEPTH, parseXgboostModel, type XgboostModel } from '../../src/scoring/xgboost.js';
import { randomRows, randomXgboostJson, type RandomModelOptions } from './generate.js';

const ROOT = new URL('../../', import.meta.url);

function compiledScores(model: XgboostModel, rows: Float32Array, count: number): Float32Array {
  const out = new Float32Array(count);
  compileXgboost(model).scoreRows(rows, count, out, 0, 1);
  return out;
}

describe('compiled trees agree exactly with the reference walk', () => {
  const cases: [string, RandomModelOptions][] = [
    ['binary:logistic, deep uneven trees', { trees: 60, maxDepth: 8, features: 7, objective: 'binary:logistic', baseScore: 0.3 }],
    ['reg:logistic', { trees: 25, maxDepth: 5, features: 3, objective: 'reg:logistic', baseScore: 0.5 }],
    ['reg:squarederror', { trees: 40, maxDepth: 6, features: 12, objective: 'reg:squarederror', baseScore: 1234.5 }],
    ['single-leaf trees mixed in', { trees: 30, maxDepth: 1, features: 2, objective: 'binary:logistic', baseScore: 0.9 }],
    // Several generated functions: the margin must carry over from one to the next in tree order.
    ['300 trees of depth 6, more than one compiled chunk', { trees: 300, maxDepth: 6, features: 15, objective: 'binary:logistic', baseScore: 0.5 }],
  ];
  test.each(cases)('%s', (_, options) => {
    const model = parseXgboostModel(randomXgboostJson(options.trees * 7 + options.features, options), 'generated');
    const count = 500;
    const rows = randomRows(options.features, count, options.features);
    const compiled = compiledScores(model, rows, count);
    const reference = Array.from({ length: count }, (_, row) => referenceXgboost(model, rows, row * options.features));
    expect(Array.from(compiled)).toEqual(reference);
    // The model must actually discriminate between rows, or agreement would prove little.
    expect(new Set(reference).size).toBeGreaterThan(count / 4);
  });

  test('batch size does not change any score, and the output lands at offset + row * stride', () => {
    const options: RandomModelOptions = { trees: 20, maxDepth: 5, features: 4, objective: 'binary:logistic', baseScore: 0.5 };
    const model = parseXgboostModel(randomXgboostJson(99, options), 'generated');
    const rows = randomRows(5, 100, 4);
    const whole = compiledScores(model, rows, 100);
    const compiled = compileXgboost(model);
    const strided = new Float32Array(300).fill(-1);
    for (let row = 0; row < 100; row++) compiled.scoreRows(rows.subarray(row * 4), 1, strided, 1 + row * 3, 3);
    expect(Array.from({ length: 100 }, (_, row) => strided[1 + row * 3])).toEqual(Array.from(whole));
    expect(strided.filter((v) => v === -1).length).toBe(200);
  });
});

describe('a hand-made tree follows XGBoost rules', () => {
  // Root splits feature 0 at 0.5 (missing -> right); its left child splits feature 1 at 2 (missing -> left).
  const json = randomXgboostJson(1, { trees: 1, maxDepth: 0, features: 2, objective: 'reg:squarederror', baseScore: 10 });
  const tree = (json.learner as { gradient_booster: { model: { trees: Record<string, unknown>[] } } }).gradient_booster.model.trees[0]!;
  Object.assign(tree, {
    left_children: [1, 3, -1, -1, -1],
    right_children: [2, 4, -1, -1, -1],
    split_indices: [0, 1, 0, 0, 0],
    split_conditions: [0.5, 2, 300, 100, 200],
    default_left: [0, 1, 0, 0, 0],
    split_type: [0, 0, 0, 0, 0],
    tree_param: { num_nodes: '5', num_feature: '2', size_leaf_vector: '0' },
  });
  const model = parseXgboostModel(json, 'hand-made');
  const cases: [number, number, number][] = [
    [0.4, 1, 110],
    [0.4, 2, 210], // 2 < 2 is false: equal goes right
    [0.5, 0, 310],
    [NaN, 0, 310],
    [0.1, NaN, 110],
    [-Infinity, Infinity, 210],
  ];
  test.each(cases)('x = [%d, %d] -> %d', (a, b, expected) => {
    const rows = Float32Array.of(a, b);
    expect(compiledScores(model, rows, 1)[0]).toBe(expected);
    expect(referenceXgboost(model, rows)).toBe(expected);
  });
});

/** A one-tree model whose arrays are given node by node; `baseScore` as XGBoost writes it. */
function oneTreeModel(tree: Record<string, unknown[]>, baseScore: string, features = 2): XgboostModel {
  const json = randomXgboostJson(1, { trees: 1, maxDepth: 0, features, objective: 'reg:squarederror', baseScore: 0 }) as any;
  const nodes = tree.left_children!.length;
  Object.assign(json.learner.gradient_booster.model.trees[0], tree, {
    split_type: Array(nodes).fill(0),
    tree_param: { num_nodes: String(nodes), num_feature: String(features), size_leaf_vector: '0' },
  });
  json.learner.learner_model_param.base_score = baseScore;
  return parseXgboostModel(json, 'hand-made');
}

describe('numbers that float32 and printing could get wrong', () => {
  // Root: feature 0 at 0.7 (float32 0.699999988...), right leaf -0; left child: feature 1 at -1e39 (float32
  // -Infinity), missing goes left to 0.1, anything else right to 1e39 (float32 Infinity). The base margin is -0.
  const model = oneTreeModel(
    {
      left_children: [1, 3, -1, -1, -1],
      right_children: [2, 4, -1, -1, -1],
      split_indices: [0, 1, 0, 0, 0],
      split_conditions: [0.7, -1e39, -0, 0.1, 1e39],
      default_left: [0, 1, 0, 0, 0],
    },
    '-0E0',
  );
  const cases: [number, number, number][] = [
    [0.7, 0, -0], // equal to the float32 threshold goes right, though 0.7 as a double is larger; -0 + -0 stays -0
    [0.5, -Infinity, Infinity],
    [0.5, NaN, Math.fround(0.1)],
  ];
  test.each(cases)('x = [%d, %d] -> %d', (a, b, expected) => {
    const rows = Float32Array.of(a, b);
    expect(compiledScores(model, rows, 1)[0]).toBe(expected);
    expect(referenceXgboost(model, rows)).toBe(expected);
  });
});

describe('tree depth', () => {
  /** A chain: node 2k splits feature 0 at k + 0.5, its right child 2k+2 goes on, its left child 2k+1 is leaf k. */
  const chain = (levels: number) => {
    const nodes = 2 * levels + 1;
    const tree = { left_children: [], right_children: [], split_indices: [], split_conditions: [], default_left: [] } as Record<string, number[]>;
    for (let node = 0; node < nodes; node++) {
      const split = node % 2 === 0 && node < nodes - 1;
      tree.left_children!.push(split ? node + 1 : -1);
      tree.right_children!.push(split ? node + 2 : -1);
      tree.split_indices!.push(0);
      tree.split_conditions!.push(split ? node / 2 + 0.5 : node);
      tree.default_left!.push(node % 4 === 0 ? 1 : 0);
    }
    return oneTreeModel(tree, '0E0', 1);
  };

  test(`the deepest tree allowed (${MAX_TREE_DEPTH} levels) compiles and agrees with the reference`, () => {
    const model = chain(MAX_TREE_DEPTH);
    const rows = Float32Array.from({ length: 2 * MAX_TREE_DEPTH + 4 }, (_, i) => (i === 0 ? NaN : i / 2 - 1));
    const compiled = compiledScores(model, rows, rows.length);
    expect(Array.from(compiled)).toEqual(Array.from(rows, (_, row) => referenceXgboost(model, rows, row)));
    expect(new Set(compiled).size).toBeGreaterThan(MAX_TREE_DEPTH);
  });

  test('a deeper tree is refused with its depth', () => {
    expect(() => chain(MAX_TREE_DEPTH + 1)).toThrow(
      new RegExp(`^hand-made: tree 0: node ${2 * MAX_TREE_DEPTH + 1} is ${MAX_TREE_DEPTH + 1} levels deep \\(at most ${MAX_TREE_DEPTH} are supported\\)`),
    );
  });
});

describe("XGBoost's own predictions (fixtures written by data/models/train_demo_models.py)", () => {
  interface Fixture {
    model: string;
    features: string[];
    rows: (number | null)[][];
    predictions: number[];
  }
  test.each(['apply', 'risk', 'ltv'])('%s', (name) => {
    const fixture = JSON.parse(readFileSync(new URL(`test/fixtures/scoring/${name}-xgboost-predictions.json`, ROOT), 'utf8')) as Fixture;
    const model = loadXgboostModel(new URL(fixture.model, ROOT).pathname);
    expect(model.featureNames).toEqual(fixture.features);
    const width = fixture.features.length;
    const rows = Float32Array.from(fixture.rows.flatMap((row) => row.map((v) => (v === null ? NaN : v))));
    expect(rows.some(Number.isNaN)).toBe(true);
    const compiled = compiledScores(model, rows, fixture.rows.length);
    fixture.predictions.forEach((expected, row) => {
      const tolerance = model.objective === 'reg:squarederror' ? 1e-6 * Math.max(1, Math.abs(expected)) : 1e-6;
      expect(Math.abs(compiled[row]! - expected)).toBeLessThanOrEqual(tolerance);
      expect(referenceXgboost(model, rows, row * width)).toBe(compiled[row]);
    });
  });
});

describe('malformed models are refused with a precise message', () => {
  const base = () => randomXgboostJson(3, { trees: 4, maxDepth: 3, features: 3, objective: 'binary:logistic', baseScore: 0.5 }) as any;
  const refuse = (mutate: (json: any) => void) => {
    const json = base();
    mutate(json);
    return () => parseXgboostModel(json, 'model.json');
  };
  const tree = (json: any, t: number) => json.learner.gradient_booster.model.trees[t];

  test('a missing array names the tree', () => {
    expect(refuse((j) => delete tree(j, 2).left_children)).toThrow(/^model\.json: tree 2: left_children: /);
  });
  test('a wrong element type names tree and index', () => {
    expect(refuse((j) => (tree(j, 1).split_indices[0] = 'x'))).toThrow(/^model\.json: tree 1: split_indices\[0\]: /);
  });
  test('an array of the wrong length', () => {
    expect(refuse((j) => tree(j, 0).split_conditions.pop())).toThrow(/tree 0: split_conditions has \d+ entries but num_nodes is \d+/);
  });
  test('a child index out of range names tree and node', () => {
    expect(refuse((j) => (tree(j, 3).left_children[0] = 999))).toThrow(/tree 3: node 0: child 999 out of range/);
  });
  test('a node pointing back at the root', () => {
    expect(refuse((j) => (tree(j, 0).right_children[0] = 0))).toThrow(/tree 0: node 0: child 0 out of range/);
  });
  test('a cycle or shared child', () => {
    expect(
      refuse((j) => {
        const t = tree(j, 1);
        t.right_children[0] = t.left_children[0];
      }),
    ).toThrow(/tree 1: node \d+ is reached twice from the root/);
  });
  test('one child only', () => {
    expect(refuse((j) => (tree(j, 2).right_children[0] = -1))).toThrow(/tree 2: node 0: left child \d+ and right child -1/);
  });
  test('a split on a feature the model does not have', () => {
    expect(refuse((j) => (tree(j, 0).split_indices[0] = 3))).toThrow(/tree 0: node 0: split on feature 3 but the model has 3 features/);
  });
  test('a categorical split', () => {
    expect(refuse((j) => (tree(j, 0).split_type[0] = 1))).toThrow(/tree 0: node 0: categorical split/);
  });
  test('an unsupported objective', () => {
    expect(refuse((j) => (j.learner.objective.name = 'multi:softprob'))).toThrow(
      /objective "multi:softprob" is not supported \(supported: binary:logistic, reg:logistic, reg:squarederror\)/,
    );
  });
  test('another booster', () => {
    expect(refuse((j) => (j.learner.gradient_booster.name = 'dart'))).toThrow(/gradient_booster\.name: only the "gbtree" booster is supported/);
  });
  test('a base_score that is not a probability for a logistic objective', () => {
    expect(refuse((j) => (j.learner.learner_model_param.base_score = '1.5E0'))).toThrow(/base_score 1.5 is not a probability/);
  });
  test('a parameter that is not a number', () => {
    expect(refuse((j) => (j.learner.learner_model_param.num_feature = 'many'))).toThrow(/learner\.learner_model_param\.num_feature: expected a finite number/);
  });
  test('feature names that do not match num_feature', () => {
    expect(refuse((j) => (j.learner.feature_names = ['a', 'b']))).toThrow(/feature_names has 2 names but num_feature is 3/);
  });
  test('a file that is not JSON', () => {
    expect(() => loadXgboostModel(new URL('data/models/README.md', ROOT).pathname)).toThrow(/README\.md: not readable JSON/);
  });
});
