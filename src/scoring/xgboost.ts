import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatPath, type CompiledModel } from './model.js';

/**
 * Gradient-boosted trees as XGBoost 1.7's `save_model("model.json")` writes them, compiled into flat typed arrays.
 * Prediction follows XGBoost's own arithmetic: float32 features, `value < threshold` in float32, NaN takes the
 * node's default branch, the margin accumulates tree by tree in float32 starting from the base margin.
 */

export const XGBOOST_OBJECTIVES = ['binary:logistic', 'reg:logistic', 'reg:squarederror'] as const;
export type XgboostObjective = (typeof XGBOOST_OBJECTIVES)[number];

/** XGBoost writes its scalar parameters as text ("5E-1"). */
const numberText = z
  .string()
  .refine((text) => text.trim() !== '' && Number.isFinite(Number(text)), { error: 'expected a finite number written as text' })
  .transform(Number);
const countText = numberText.refine((n) => Number.isInteger(n) && n >= 0, { error: 'expected a whole number' });

const treeSchema = z.object({
  left_children: z.array(z.number().int()),
  right_children: z.array(z.number().int()),
  split_indices: z.array(z.number().int().nonnegative()),
  split_conditions: z.array(z.number()),
  default_left: z.array(z.union([z.literal(0), z.literal(1), z.boolean()])),
  split_type: z.array(z.number().int()).optional(),
  tree_param: z.object({ num_nodes: countText, size_leaf_vector: countText.optional() }),
});
export type XgboostTree = z.infer<typeof treeSchema>;

const modelFileSchema = z.object({
  learner: z.object({
    feature_names: z.array(z.string()).optional(),
    learner_model_param: z.object({
      base_score: numberText,
      num_feature: countText,
      num_class: countText.optional(),
      num_target: countText.optional(),
    }),
    objective: z.object({ name: z.string() }),
    gradient_booster: z.object({
      name: z.literal('gbtree', { error: 'only the "gbtree" booster is supported (not gblinear or dart)' }),
      model: z.object({ trees: z.array(treeSchema).min(1), tree_info: z.array(z.number().int()).optional() }),
    }),
  }),
});

export interface XgboostModel {
  objective: XgboostObjective;
  /** As XGBoost stores it: a probability for the logistic objectives, a plain value for reg:squarederror. */
  baseScore: number;
  featureCount: number;
  /** Feature names saved with the model, or null when it was trained without them. */
  featureNames: string[] | null;
  trees: XgboostTree[];
}

/** Where a problem is, in the words of the file: "tree 17: left_children[3]" rather than a long JSON path. */
function describePath(path: readonly PropertyKey[]): string {
  const trees = ['learner', 'gradient_booster', 'model', 'trees'];
  if (path.length > trees.length && trees.every((key, i) => path[i] === key)) {
    const rest = path.slice(trees.length + 1);
    return `tree ${String(path[trees.length])}${rest.length ? `: ${formatPath(rest)}` : ''}`;
  }
  return formatPath(path);
}

/** Validates an XGBoost JSON model; `source` (usually the file path) starts every error message. */
export function parseXgboostModel(json: unknown, source: string): XgboostModel {
  const parsed = modelFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: ${describePath(issue.path)}: ${issue.message}`);
  }
  const { learner } = parsed.data;
  const fail = (message: string): never => {
    throw new Error(`${source}: ${message}`);
  };
  const objective = learner.objective.name;
  if (!(XGBOOST_OBJECTIVES as readonly string[]).includes(objective)) {
    fail(`objective "${objective}" is not supported (supported: ${XGBOOST_OBJECTIVES.join(', ')})`);
  }
  const { base_score: baseScore, num_feature: featureCount, num_class: classes = 0, num_target: targets = 1 } = learner.learner_model_param;
  if (classes > 1 || targets > 1) fail(`multi-class or multi-target models are not supported (num_class ${classes}, num_target ${targets})`);
  if (objective !== 'reg:squarederror' && !(baseScore > 0 && baseScore < 1)) {
    fail(`base_score ${baseScore} is not a probability, as objective "${objective}" needs`);
  }
  const featureNames = learner.feature_names?.length ? learner.feature_names : null;
  if (featureNames && featureNames.length !== featureCount) {
    fail(`feature_names has ${featureNames.length} names but num_feature is ${featureCount}`);
  }
  const { trees, tree_info: treeInfo } = learner.gradient_booster.model;
  if (treeInfo?.some((group) => group !== 0)) fail('tree_info names an output group other than 0 (multi-output model)');
  trees.forEach((tree, t) => checkTree(tree, featureCount, (message) => fail(`tree ${t}: ${message}`)));
  return { objective: objective as XgboostObjective, baseScore, featureCount, featureNames, trees };
}

/**
 * Every array as long as num_nodes; a node has two children or none; children in range; each node reached at most
 * once from the root, so traversal always ends at a leaf.
 */
function checkTree(tree: XgboostTree, featureCount: number, fail: (message: string) => never): void {
  const nodes = tree.tree_param.num_nodes;
  if (nodes < 1) fail('num_nodes is 0');
  if ((tree.tree_param.size_leaf_vector ?? 0) > 1) fail('vector leaves (multi-target trees) are not supported');
  const arrays = ['left_children', 'right_children', 'split_indices', 'split_conditions', 'default_left', 'split_type'] as const;
  for (const name of arrays) {
    const length = tree[name]?.length;
    if (length !== undefined && length !== nodes) fail(`${name} has ${length} entries but num_nodes is ${nodes}`);
  }
  const reached = new Uint8Array(nodes);
  const stack = [0];
  reached[0] = 1;
  while (stack.length > 0) {
    const node = stack.pop()!;
    const left = tree.left_children[node]!;
    const right = tree.right_children[node]!;
    if (left === -1 && right === -1) continue;
    if (left === -1 || right === -1) fail(`node ${node}: left child ${left} and right child ${right} (a node has two children or none)`);
    for (const child of [left, right]) {
      if (child < 1 || child >= nodes) fail(`node ${node}: child ${child} out of range (the tree has ${nodes} nodes, 0 is the root)`);
      if (reached[child]) fail(`node ${child} is reached twice from the root (cycle or shared child)`);
      reached[child] = 1;
      stack.push(child);
    }
    const feature = tree.split_indices[node]!;
    if (feature >= featureCount) fail(`node ${node}: split on feature ${feature} but the model has ${featureCount} features`);
    if ((tree.split_type?.[node] ?? 0) !== 0) fail(`node ${node}: categorical split; only numerical splits are supported`);
  }
}

export function loadXgboostModel(path: string): XgboostModel {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: not readable JSON: ${(error as Error).message}`);
  }
  return parseXgboostModel(json, path);
}

/** The margin every prediction starts from: base_score, moved to logit space for the logistic objectives. */
export function baseMargin(model: XgboostModel): number {
  const score = Math.fround(model.baseScore);
  return model.objective === 'reg:squarederror' ? score : Math.fround(-Math.log(1 / score - 1));
}

/** From margin to output, in float32 as XGBoost does it. */
export function transformMargin(model: XgboostModel, margin: number): number {
  return model.objective === 'reg:squarederror' ? margin : Math.fround(1 / (1 + Math.exp(-margin)));
}

/**
 * All trees in one set of arrays, nodes numbered globally. A leaf has feature -1 and its value in `threshold`.
 * `missing` is the child a NaN goes to, so the loop needs no default-left test of its own.
 */
class CompiledForest implements CompiledModel {
  readonly featureCount: number;
  private readonly logistic: boolean;
  private readonly baseMargin: number;
  private readonly roots: Int32Array;
  private readonly feature: Int32Array;
  private readonly threshold: Float32Array;
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly missing: Int32Array;
  /** Per-row float32 accumulators, kept between calls; grown only when a batch is bigger than any before. */
  private margins = new Float32Array(64);

  constructor(model: XgboostModel) {
    this.featureCount = model.featureCount;
    this.logistic = model.objective !== 'reg:squarederror';
    this.baseMargin = baseMargin(model);
    const total = model.trees.reduce((sum, tree) => sum + tree.tree_param.num_nodes, 0);
    this.roots = new Int32Array(model.trees.length);
    this.feature = new Int32Array(total);
    this.threshold = new Float32Array(total);
    this.left = new Int32Array(total);
    this.right = new Int32Array(total);
    this.missing = new Int32Array(total);
    let base = 0;
    model.trees.forEach((tree, t) => {
      this.roots[t] = base;
      for (let node = 0; node < tree.tree_param.num_nodes; node++) {
        const at = base + node;
        const isLeaf = tree.left_children[node] === -1;
        this.feature[at] = isLeaf ? -1 : tree.split_indices[node]!;
        this.threshold[at] = tree.split_conditions[node]!;
        this.left[at] = base + tree.left_children[node]!;
        this.right[at] = base + tree.right_children[node]!;
        this.missing[at] = tree.default_left[node] ? this.left[at]! : this.right[at]!;
      }
      base += tree.tree_param.num_nodes;
    });
  }

  scoreRows(features: Float32Array, count: number, out: Float32Array, outOffset: number, outStride: number): void {
    if (this.margins.length < count) this.margins = new Float32Array(count);
    const { margins, roots, feature, threshold, left, right, missing, featureCount } = this;
    margins.fill(this.baseMargin, 0, count);
    // Tree by tree over the whole batch: one tree's nodes stay in cache while every row walks it.
    for (let t = 0; t < roots.length; t++) {
      const root = roots[t]!;
      for (let row = 0, rowStart = 0; row < count; row++, rowStart += featureCount) {
        let node = root;
        let split = feature[node]!;
        while (split >= 0) {
          const value = features[rowStart + split]!;
          const cut = threshold[node]!;
          node = value < cut ? left[node]! : value >= cut ? right[node]! : missing[node]!;
          split = feature[node]!;
        }
        margins[row] += threshold[node]!;
      }
    }
    for (let row = 0; row < count; row++) {
      const margin = margins[row]!;
      out[outOffset + row * outStride] = this.logistic ? 1 / (1 + Math.exp(-margin)) : margin;
    }
  }
}

export function compileXgboost(model: XgboostModel): CompiledModel {
  return new CompiledForest(model);
}
