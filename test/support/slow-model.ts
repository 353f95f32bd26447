import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { REPO_ROOT } from './engine-process.js';

/**
 * A model directory like data/models, except that one model is replaced by a deliberately slow XGBoost forest, so
 * that scoring misses a short deadline on any machine: the deadline path becomes deterministic instead of a race.
 * The forest is slow only for the rows its gate admits, so the engine's boot warm-up (which scores thousands of
 * ordinary rows) stays fast.
 */

export interface SlowForestShape {
  trees: number;
  /** Split nodes per tree walked one after the other by every admitted row. */
  chainLength: number;
  /** A row walks the chains only when each of these features is below its bound (missing counts as not below). */
  gate: Array<{ feature: string; below: number }>;
}

/** Above any real feature value and still a finite float32, so `value < cut` holds for every present feature. */
const ALWAYS_LEFT = 3e38;

/**
 * An XGBoost 1.7 JSON model whose trees are a gate followed by a chain. Gate node g sends a row on when its feature
 * is below the bound, else to a leaf. Chain node i sends every row (and, by default_left, every missing value) on to
 * chain node i + 1, its right child being a leaf. An admitted row visits trees x (gate + chainLength) nodes, and the
 * file holds only about twice that many. All leaves are 0, so the prediction stays at base_score.
 */
export function slowForestJson(featureNames: readonly string[], shape: SlowForestShape): string {
  const gate = shape.gate.map(({ feature, below }) => {
    const index = featureNames.indexOf(feature);
    if (index < 0) throw new Error(`gate feature "${feature}" is not one of the model's features`);
    return { index, below };
  });
  const splits = gate.length + shape.chainLength;
  const nodes = 2 * splits + 1;
  const left: number[] = [];
  const right: number[] = [];
  const splitIndices: number[] = [];
  const conditions: number[] = [];
  const defaultLeft: number[] = [];
  // Split node i is node i; its leaf is node splits + 1 + i; the last split's left child is leaf node `splits`.
  for (let i = 0; i < splits; i++) {
    left.push(i + 1 < splits ? i + 1 : splits);
    right.push(splits + 1 + i);
    const gated = gate[i];
    splitIndices.push(gated ? gated.index : i % featureNames.length);
    conditions.push(gated ? gated.below : ALWAYS_LEFT);
    defaultLeft.push(gated ? 0 : 1);
  }
  for (let leaf = splits; leaf < nodes; leaf++) {
    left.push(-1);
    right.push(-1);
    splitIndices.push(0);
    conditions.push(0);
    defaultLeft.push(0);
  }
  const tree = JSON.stringify({
    left_children: left,
    right_children: right,
    split_indices: splitIndices,
    split_conditions: conditions,
    default_left: defaultLeft,
    split_type: new Array<number>(nodes).fill(0),
    tree_param: { num_nodes: String(nodes), size_leaf_vector: '0' },
  });
  const model = {
    learner: {
      feature_names: featureNames,
      learner_model_param: { base_score: '5E-1', num_feature: String(featureNames.length), num_class: '0', num_target: '1' },
      objective: { name: 'binary:logistic' },
      gradient_booster: {
        name: 'gbtree',
        model: { trees: ['@TREE@'], tree_info: new Array<number>(shape.trees).fill(0) },
      },
    },
  };
  // Every tree is the same: write it once and repeat the text rather than stringify thousands of equal objects.
  return JSON.stringify(model).replace('"@TREE@"', new Array<string>(shape.trees).fill(tree).join(','));
}

interface ManifestJson {
  models: Array<{ name: string; file: string; format: string; features: string[] }>;
}

/**
 * Copies the demo manifest and its model files into a new temporary directory, replacing the model `slowModel`
 * (which must be an xgboost-json probability model) by a slow forest over the same features. Returns the manifest path.
 */
export function writeSlowManifest(slowModel: string, shape: SlowForestShape): string {
  const source = resolve(REPO_ROOT, 'data/models/manifest.json');
  const manifest = JSON.parse(readFileSync(source, 'utf8')) as ManifestJson;
  const dir = mkdtempSync(join(tmpdir(), 'rta-slow-model-'));
  let replaced = false;
  for (const model of manifest.models) {
    const target = join(dir, model.file);
    if (model.name === slowModel) {
      if (model.format !== 'xgboost-json') throw new Error(`model "${slowModel}" is ${model.format}, not xgboost-json`);
      writeFileSync(target, slowForestJson(model.features, shape));
      replaced = true;
    } else {
      copyFileSync(resolve(dirname(source), model.file), target);
    }
  }
  if (!replaced) throw new Error(`no model "${slowModel}" in ${source}`);
  const path = join(dir, 'manifest.json');
  writeFileSync(path, JSON.stringify(manifest, null, 2));
  return path;
}
