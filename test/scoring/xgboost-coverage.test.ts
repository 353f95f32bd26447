import { describe, expect, test } from 'vitest';
import { coveringRows } from '../../src/scoring/xgboost-coverage.js';
import { loadXgboostModel, parseXgboostModel, type XgboostTree } from '../../src/scoring/xgboost.js';
import { randomRows, randomXgboostJson } from './generate.js';

const ROOT = new URL('../../', import.meta.url);

/** Marks in `seen` (one array per tree) every node that some row of `rows` walks through, by XGBoost's rules. */
function markWalked(trees: readonly XgboostTree[], rows: Float32Array, featureCount: number, seen: Uint8Array[]): void {
  for (let row = 0; row < rows.length / featureCount; row++) {
    trees.forEach((tree, t) => {
      let node = 0;
      seen[t]![0] = 1;
      while (tree.left_children[node] !== -1) {
        const value = rows[row * featureCount + tree.split_indices[node]!]!;
        const goLeft = Number.isNaN(value) ? Boolean(tree.default_left[node]) : value < Math.fround(tree.split_conditions[node]!);
        node = goLeft ? tree.left_children[node]! : tree.right_children[node]!;
        seen[t]![node] = 1;
      }
    });
  }
}

const unseen = (trees: readonly XgboostTree[]) => trees.map((tree) => new Uint8Array(tree.tree_param.num_nodes));

describe('covering rows take every node some input can reach', () => {
  test.each(['apply', 'risk', 'ltv'])('%s: every node of the trained model', (name) => {
    const model = loadXgboostModel(new URL(`data/models/${name}.json`, ROOT).pathname);
    const rows = coveringRows(model.trees, model.featureCount);
    const seen = unseen(model.trees);
    markWalked(model.trees, rows, model.featureCount, seen);
    const missed = seen.flatMap((nodes, t) => [...nodes.keys()].filter((node) => nodes[node] === 0).map((node) => `tree ${t} node ${node}`));
    expect(missed).toEqual([]);
    // Far fewer rows than leaves (one row per leaf would do): each row serves many trees.
    const leaves = model.trees.reduce((sum, tree) => sum + tree.left_children.filter((child) => child === -1).length, 0);
    expect(rows.length / model.featureCount).toBeLessThan(leaves / 4);
  });

  test('random trees with contradicting splits: everything random rows reach, the covering rows reach too', () => {
    const options = { trees: 40, maxDepth: 7, features: 4, objective: 'binary:logistic', baseScore: 0.5 } as const;
    const model = parseXgboostModel(randomXgboostJson(7, options), 'generated');
    const covered = unseen(model.trees);
    markWalked(model.trees, coveringRows(model.trees, options.features), options.features, covered);
    const sampled = unseen(model.trees);
    markWalked(model.trees, randomRows(8, 20_000, options.features), options.features, sampled);
    const missed = sampled.flatMap((nodes, t) => [...nodes.keys()].filter((node) => nodes[node] === 1 && covered[t]![node] === 0));
    expect(missed).toEqual([]);
    // The generator's trees do contain dead nodes, so the covering rows must have skipped something.
    expect(covered.some((nodes) => nodes.includes(0))).toBe(true);
  });

  test('a node only a missing value reaches, and a dead one', () => {
    // Node 0: x0 < 1, missing left. Node 1: x0 < 2, missing right: no value below 1 is >= 2, so only NaN gets to
    // node 4. Node 2: x0 < 0.5, missing left: no value >= 1 is below 0.5 and NaN went left at the root: node 5 is dead.
    const json = randomXgboostJson(1, { trees: 1, maxDepth: 0, features: 1, objective: 'reg:squarederror', baseScore: 0 }) as any;
    Object.assign(json.learner.gradient_booster.model.trees[0], {
      left_children: [1, 3, 5, -1, -1, -1, -1],
      right_children: [2, 4, 6, -1, -1, -1, -1],
      split_indices: [0, 0, 0, 0, 0, 0, 0],
      split_conditions: [1, 2, 0.5, 10, 20, 30, 40],
      default_left: [1, 0, 1, 0, 0, 0, 0],
      split_type: [0, 0, 0, 0, 0, 0, 0],
      tree_param: { num_nodes: '7', num_feature: '1', size_leaf_vector: '0' },
    });
    const model = parseXgboostModel(json, 'hand-made');
    const rows = coveringRows(model.trees, 1);
    const seen = unseen(model.trees);
    markWalked(model.trees, rows, 1, seen);
    expect(Array.from(seen[0]!)).toEqual([1, 1, 1, 1, 1, 0, 1]);
    expect(Array.from(rows).some(Number.isNaN)).toBe(true);
  });
});
