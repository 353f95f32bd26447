import { fnv1a32, logisticToken, type LogisticModel } from './logistic.js';
import { baseMargin, transformMargin, type XgboostModel } from './xgboost.js';

/**
 * Deliberately plain evaluators that walk the parsed model files. They exist so tests and the bench can check the
 * compiled evaluators against something obviously right; nothing on the request path uses them.
 */

/** One row: features[offset + i] is feature i of the model (float32 values, NaN = missing). */
export function referenceXgboost(model: XgboostModel, features: ArrayLike<number>, offset = 0): number {
  let margin = baseMargin(model);
  for (const tree of model.trees) {
    let node = 0;
    while (tree.left_children[node] !== -1) {
      const value = Math.fround(features[offset + tree.split_indices[node]!]!);
      const goLeft = Number.isNaN(value) ? Boolean(tree.default_left[node]) : value < Math.fround(tree.split_conditions[node]!);
      node = goLeft ? tree.left_children[node]! : tree.right_children[node]!;
    }
    margin = Math.fround(margin + Math.fround(tree.split_conditions[node]!));
  }
  return transformMargin(model, margin);
}

/** One row of features named by `featureNames`, hashing tokens as strings. */
export function referenceLogistic(model: LogisticModel, featureNames: readonly string[], features: ArrayLike<number>, offset = 0): number {
  const value = (name: string) => Math.fround(features[offset + featureNames.indexOf(name)]!);
  let z = model.bias;
  for (const { feature, weight, ifMissing } of model.dense) {
    const x = value(feature);
    z += weight * (Number.isNaN(x) ? ifMissing : x);
  }
  for (const feature of model.hashed?.features ?? []) {
    const bucket = fnv1a32(logisticToken(feature, value(feature))) % model.hashed!.buckets;
    z += model.hashed!.weights[bucket]!;
  }
  const { a, b } = model.calibration ?? { a: 1, b: 0 };
  return Math.fround(1 / (1 + Math.exp(-(a * z + b))));
}
