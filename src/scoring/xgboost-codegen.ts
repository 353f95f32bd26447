import type { CompiledModel } from './model.js';
import type { XgboostTree } from './xgboost.js';
import { coveringRows } from './xgboost-coverage.js';

/**
 * Compiles XGBoost trees into JavaScript functions: each tree becomes nested conditionals on the row's features held
 * in locals, so V8 runs the splits as compare-and-branch on constants instead of walking node arrays. The arithmetic
 * is XGBoost's: float32 features, `value < threshold` against the float32 threshold, NaN follows the node's default
 * branch, and the margin accumulates tree by tree in float32 (Math.fround after every leaf) from the base margin.
 * Each generated function is run on rows that take every reachable node before it serves (xgboost-coverage.ts).
 *
 * The generated source is built only from numbers the parser has already validated (feature indices, thresholds,
 * leaf values), each printed through `literal`, which accepts nothing but a number; nothing from the model file's
 * strings reaches it, so a model file cannot inject code.
 */

/**
 * Trees are cut into chunks, one generated function each, because V8 optimises a function only below a bytecode
 * size and its optimising compile time grows faster than the function. On the 300-tree demo model, chunks of 300 to
 * 3000 nodes ran equally fast once optimised; at 3000 a single chunk took 200 ms to optimise, at 1500 about 70 ms.
 * A serving thread that reloads parses one chunk at a time without yielding: at 1500 nodes that took 2-3 ms (750
 * would halve it, at 2,800 more instructions per scored request: more chunks reload the same features).
 */
const MAX_NODES_PER_CHUNK = 1500;

/**
 * How often a new chunk runs its covering rows before serving: V8 starts recording what a function sees only after
 * it has run for a while, so the first pass may teach it nothing.
 */
const WARM_UP_PASSES = 3;

/** Adds its trees' leaves to margins[0..count-1], row i reading features[i * featureCount ..]. */
type ChunkFunction = (features: Float32Array, count: number, featureCount: number, margins: Float32Array) => void;

/** A number as JavaScript source that evaluates to exactly that double (-0 and the infinities included). */
function literal(value: number): string {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new Error(`xgboost codegen: ${String(value)} is not a number`);
  return Object.is(value, -0) ? '-0' : String(value);
}

/** The conditional expression that evaluates `tree` to its leaf value; adds the features it reads to `used`. */
function treeExpression(tree: XgboostTree, used: Set<number>): string {
  const visit = (node: number): string => {
    const left = tree.left_children[node]!;
    const value = literal(Math.fround(tree.split_conditions[node]!));
    if (left === -1) return value;
    const feature = literal(tree.split_indices[node]!);
    used.add(tree.split_indices[node]!);
    const goLeft = visit(left);
    const goRight = visit(tree.right_children[node]!);
    // Every comparison with NaN is false, so each test is written so that false picks the default branch.
    return tree.default_left[node] ? `(x${feature} >= ${value} ? ${goRight} : ${goLeft})` : `(x${feature} < ${value} ? ${goLeft} : ${goRight})`;
  };
  return visit(0);
}

/**
 * A chunk's generated source and the rows that take every reachable node: plain data, so a chunk can be generated
 * on one thread and compiled on another (see `prepareTrees`).
 */
export interface ForestChunk {
  source: string;
  rows: Float32Array;
}

/** Trees generated into source, not yet compiled. */
export interface PreparedForest {
  featureCount: number;
  baseMargin: number;
  logistic: boolean;
  chunks: ForestChunk[];
}

function chunkSource(trees: readonly XgboostTree[], featureCount: number): ForestChunk {
  const used = new Set<number>();
  const sums = trees.map((tree) => `m = Math.fround(m + ${treeExpression(tree, used)});`);
  const loads = [...used].sort((a, b) => a - b).map((feature) => `const x${literal(feature)} = features[at + ${literal(feature)}];`);
  // Named, so that profiles and V8's optimisation traces show where the time goes.
  const source = [
    `return function xgboostTrees(features, count, featureCount, margins) {`,
    `for (let row = 0, at = 0; row < count; row++, at += featureCount) {`,
    ...loads,
    `let m = margins[row];`,
    ...sums,
    `margins[row] = m;`,
    `}`,
    `};`,
  ].join('\n');
  return { source, rows: coveringRows(trees, featureCount) };
}

/** Compiles one chunk, then runs its warm-up passes, yielding after each: a thread that serves waits one pass at most. */
function* compileChunk({ source, rows }: ForestChunk, featureCount: number): Generator<void, ChunkFunction> {
  const chunk = new Function(source)() as ChunkFunction;
  const count = rows.length / featureCount;
  for (let pass = 0; pass < WARM_UP_PASSES; pass++) {
    yield;
    chunk(rows, count, featureCount, new Float32Array(count));
  }
  return chunk;
}

/** Consecutive trees, in model order, cut so that no chunk has more than MAX_NODES_PER_CHUNK nodes (or one tree). */
function chunkTrees(trees: readonly XgboostTree[]): XgboostTree[][] {
  const chunks: XgboostTree[][] = [];
  let nodes = 0;
  for (const tree of trees) {
    const size = tree.tree_param.num_nodes;
    const last = chunks[chunks.length - 1];
    if (last && nodes + size <= MAX_NODES_PER_CHUNK) {
      last.push(tree);
      nodes += size;
    } else {
      chunks.push([tree]);
      nodes = size;
    }
  }
  return chunks;
}

class GeneratedForest implements CompiledModel {
  readonly featureCount: number;
  private readonly logistic: boolean;
  private readonly baseMargin: number;
  private readonly chunks: ChunkFunction[];
  /** Per-row float32 accumulators, kept between calls; grown only when a batch is bigger than any before. */
  private margins = new Float32Array(64);

  constructor(prepared: PreparedForest, chunks: ChunkFunction[]) {
    this.featureCount = prepared.featureCount;
    this.logistic = prepared.logistic;
    this.baseMargin = prepared.baseMargin;
    this.chunks = chunks;
  }

  scoreRows(features: Float32Array, count: number, out: Float32Array, outOffset: number, outStride: number): void {
    if (this.margins.length < count) this.margins = new Float32Array(count);
    const { margins, chunks, featureCount } = this;
    // A loop, not fill(): TypedArray.prototype.fill is a call into the runtime, dearer than the one store it does per request.
    for (let i = 0; i < count; i++) margins[i] = this.baseMargin;
    for (let c = 0; c < chunks.length; c++) chunks[c]!(features, count, featureCount, margins);
    for (let row = 0; row < count; row++) {
      const margin = margins[row]!;
      out[outOffset + row * outStride] = this.logistic ? 1 / (1 + Math.exp(-margin)) : margin;
    }
  }
}

/**
 * Trees must come from parseXgboostModel (children, feature indices, node counts and depth checked). `baseMargin` is
 * the float32 margin every row starts from, `logistic` whether the output is the sigmoid of the margin. This is the
 * expensive half of loading a forest, and needs no particular thread.
 */
export function prepareTrees(trees: readonly XgboostTree[], featureCount: number, baseMargin: number, logistic: boolean): PreparedForest {
  return { featureCount, baseMargin, logistic, chunks: chunkTrees(trees).map((chunk) => chunkSource(chunk, featureCount)) };
}

/** Compiles and warms up a chunk at a time, in steps, so a thread that serves can yield between them. */
export function* compileForest(prepared: PreparedForest): Generator<void, CompiledModel> {
  const chunks: ChunkFunction[] = [];
  for (const chunk of prepared.chunks) {
    chunks.push(yield* compileChunk(chunk, prepared.featureCount));
    yield;
  }
  return new GeneratedForest(prepared, chunks);
}
