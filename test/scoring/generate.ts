import { seededRandom } from '../support/seeded-random.js';

/**
 * Seeded generators for scoring tests: random XGBoost-format models (trees of uneven depth, node ids shuffled so
 * children are not adjacent, random default directions) and feature rows full of NaNs and values sitting exactly on
 * split thresholds.
 */

export interface RandomModelOptions {
  trees: number;
  maxDepth: number;
  features: number;
  objective: 'binary:logistic' | 'reg:logistic' | 'reg:squarederror';
  baseScore: number;
}

interface Node {
  feature: number;
  threshold: number;
  defaultLeft: boolean;
  left: Node | null;
  right: Node | null;
  leaf: number;
}

function randomTree(random: () => number, depth: number, options: RandomModelOptions): Node {
  const isLeaf = depth === options.maxDepth || (depth > 0 && random() < 0.25);
  if (isLeaf) return { feature: 0, threshold: 0, defaultLeft: false, left: null, right: null, leaf: Math.fround((random() - 0.5) * 0.4) };
  return {
    feature: Math.floor(random() * options.features),
    // A small grid of thresholds, so that rows can hit them exactly.
    threshold: Math.fround(Math.round((random() * 20 - 5) * 4) / 4 + 0.1),
    defaultLeft: random() < 0.5,
    left: randomTree(random, depth + 1, options),
    right: randomTree(random, depth + 1, options),
    leaf: 0,
  };
}

/** Lays a tree out as XGBoost's JSON arrays, with node ids shuffled (root stays 0). */
function treeJson(random: () => number, root: Node, features: number, id: number): Record<string, unknown> {
  const nodes: Node[] = [];
  const collect = (node: Node) => {
    nodes.push(node);
    if (node.left) collect(node.left);
    if (node.right) collect(node.right);
  };
  collect(root);
  const order = nodes.slice(1);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const ids = new Map<Node, number>([root, ...order].map((node, i) => [node, i]));
  const byId = [root, ...order];
  const n = byId.length;
  return {
    base_weights: byId.map((node) => node.leaf),
    categories: [],
    categories_nodes: [],
    categories_segments: [],
    categories_sizes: [],
    default_left: byId.map((node) => (node.defaultLeft ? 1 : 0)),
    id,
    left_children: byId.map((node) => (node.left ? ids.get(node.left)! : -1)),
    loss_changes: byId.map(() => 0),
    parents: byId.map(() => 0),
    right_children: byId.map((node) => (node.right ? ids.get(node.right)! : -1)),
    split_conditions: byId.map((node) => (node.left ? node.threshold : node.leaf)),
    split_indices: byId.map((node) => node.feature),
    split_type: byId.map(() => 0),
    sum_hessian: byId.map(() => 1),
    tree_param: { num_deleted: '0', num_feature: String(features), num_nodes: String(n), size_leaf_vector: '0' },
  };
}

/** A model object shaped like XGBoost 1.7's save_model JSON. */
export function randomXgboostJson(seed: number, options: RandomModelOptions): Record<string, unknown> {
  const random = seededRandom(seed);
  const trees = Array.from({ length: options.trees }, (_, t) => treeJson(random, randomTree(random, 0, options), options.features, t));
  return {
    learner: {
      attributes: {},
      feature_names: [],
      feature_types: [],
      gradient_booster: {
        model: {
          gbtree_model_param: { num_parallel_tree: '1', num_trees: String(options.trees), size_leaf_vector: '0' },
          tree_info: trees.map(() => 0),
          trees,
        },
        name: 'gbtree',
      },
      learner_model_param: {
        base_score: options.baseScore.toExponential(),
        boost_from_average: '1',
        num_class: '0',
        num_feature: String(options.features),
        num_target: '1',
      },
      objective: { name: options.objective, reg_loss_param: { scale_pos_weight: '1' } },
    },
    version: [1, 7, 4],
  };
}

/** Row-major float32 rows: about a fifth NaN, a fifth exactly on a threshold of the grid, the rest anywhere. */
export function randomRows(seed: number, rows: number, features: number): Float32Array {
  const random = seededRandom(seed);
  const out = new Float32Array(rows * features);
  for (let i = 0; i < out.length; i++) {
    const pick = random();
    if (pick < 0.2) out[i] = NaN;
    else if (pick < 0.4) out[i] = Math.round((random() * 20 - 5) * 4) / 4 + 0.1;
    else out[i] = random() * 30 - 10;
  }
  return out;
}
