import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { formatPath, runSteps, type CompiledModel } from './model.js';
import { compileForest, prepareTrees, type PreparedForest } from './xgboost-codegen.js';

/**
 * Gradient-boosted trees as XGBoost 1.7's `save_model("model.json")` writes them, compiled to JavaScript source
 * (xgboost-codegen.ts). Prediction follows XGBoost's own arithmetic: float32 features, `value < threshold` in
 * float32, NaN takes the node's default branch, the margin accumulates tree by tree in float32 starting from the
 * base margin.
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
 * The compiled form nests one conditional per level, and the JavaScript parser's stack bounds how deep that can go;
 * depthwise-grown XGBoost trees stay far below this.
 */
export const MAX_TREE_DEPTH = 64;

/**
 * Every array as long as num_nodes; a node has two children or none; children in range; each node reached at most
 * once from the root, so traversal always ends at a leaf; no leaf deeper than MAX_TREE_DEPTH.
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
  const depth = new Int32Array(nodes);
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
      depth[child] = depth[node]! + 1;
      if (depth[child]! > MAX_TREE_DEPTH) fail(`node ${child} is ${depth[child]} levels deep (at most ${MAX_TREE_DEPTH} are supported)`);
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

export function compileXgboost(model: XgboostModel): CompiledModel {
  return runSteps(compileForest(prepareXgboost(model)));
}

export function prepareXgboost(model: XgboostModel): PreparedForest {
  return prepareTrees(model.trees, model.featureCount, baseMargin(model), model.objective !== 'reg:squarederror');
}
