import type { XgboostTree } from './xgboost.js';

/**
 * Feature rows that, between them, take every reachable node of a set of trees. Compiled tree code is warmed up on
 * them: V8 optimises a comparison only for the value types it has seen there, and one it has never run turns into a
 * deoptimisation the first time a live request reaches it, throwing the whole chunk of trees back to the interpreter.
 */

/**
 * What a walk has committed a feature to so far: NaN if `nanAllowed`, or any value in [lo, hi). Each split narrows
 * one of the two; the walk may only go where one of them is still possible.
 */
interface FeatureRange {
  nanAllowed: boolean;
  lo: number;
  hi: number;
}

const anyValue = (): FeatureRange => ({ nanAllowed: true, lo: -Infinity, hi: Infinity });

/** The range after taking `node`'s left or right branch, or null when no value (nor NaN) goes that way. */
function narrow(tree: XgboostTree, node: number, goLeft: boolean, range: FeatureRange): FeatureRange | null {
  const threshold = Math.fround(tree.split_conditions[node]!);
  const lo = goLeft ? range.lo : Math.max(range.lo, threshold);
  const hi = goLeft ? Math.min(range.hi, threshold) : range.hi;
  const nanAllowed = range.nanAllowed && Boolean(tree.default_left[node]) === goLeft;
  return nanAllowed || lo < hi ? { nanAllowed, lo, hi } : null;
}

/** Marks the nodes some input can reach; a split contradicting an earlier one on the same path leaves a subtree dead. */
function reachableNodes(tree: XgboostTree): Uint8Array {
  const reachable = new Uint8Array(tree.tree_param.num_nodes);
  const visit = (node: number, ranges: Map<number, FeatureRange>) => {
    reachable[node] = 1;
    const left = tree.left_children[node]!;
    if (left === -1) return;
    const feature = tree.split_indices[node]!;
    const range = ranges.get(feature) ?? anyValue();
    for (const [child, goLeft] of [[left, true], [tree.right_children[node]!, false]] as const) {
      const next = narrow(tree, node, goLeft, range);
      if (next) visit(child, new Map(ranges).set(feature, next));
    }
  };
  visit(0, new Map());
  return reachable;
}

/** A value in the range, not a whole number where it can help it, so that V8 sees doubles rather than small integers. */
function pickValue({ lo, hi }: FeatureRange): number {
  // An empty value range means every split on the path took the feature's missing branch.
  if (!(lo < hi)) return NaN;
  for (const candidate of [Math.fround(lo + 0.5), Math.fround((lo + hi) / 2)]) {
    if (candidate >= lo && candidate < hi && !Number.isInteger(candidate)) return candidate;
  }
  return lo;
}

class TreeCoverage {
  /** Reachable nodes no row has taken yet. */
  private readonly pending: Uint8Array;
  /** Pending nodes per subtree, so a free walk can head where most are left. */
  private readonly pendingBelow: Int32Array;
  private readonly parent: Int32Array;

  constructor(private readonly tree: XgboostTree) {
    this.pending = reachableNodes(tree);
    this.pendingBelow = new Int32Array(this.pending.length);
    this.parent = new Int32Array(this.pending.length).fill(-1);
    const count = (node: number): number => {
      const left = tree.left_children[node]!;
      const right = tree.right_children[node]!;
      let below = this.pending[node]!;
      if (left !== -1) {
        this.parent[left] = node;
        this.parent[right] = node;
        below += count(left) + count(right);
      }
      this.pendingBelow[node] = below;
      return below;
    };
    count(0);
  }

  get done(): boolean {
    return this.pendingBelow[0] === 0;
  }

  /**
   * Walks from the root to a leaf within `ranges`, narrowing them, towards whichever allowed branch has more nodes
   * pending. From unnarrowed ranges it always takes a pending node if there is one: a branch with pending nodes
   * below is reachable, and the ranges along the walk are exactly what reaching it requires.
   */
  walk(ranges: FeatureRange[]): void {
    const { tree } = this;
    let node = 0;
    this.take(node);
    while (tree.left_children[node] !== -1) {
      const feature = tree.split_indices[node]!;
      const left = tree.left_children[node]!;
      const right = tree.right_children[node]!;
      const viaLeft = narrow(tree, node, true, ranges[feature]!);
      const viaRight = narrow(tree, node, false, ranges[feature]!);
      const goLeft = viaLeft !== null && (viaRight === null || this.pendingBelow[left]! >= this.pendingBelow[right]!);
      ranges[feature] = (goLeft ? viaLeft : viaRight)!;
      node = goLeft ? left : right;
      this.take(node);
    }
  }

  private take(node: number): void {
    if (this.pending[node] === 0) return;
    this.pending[node] = 0;
    for (let at = node; at !== -1; at = this.parent[at]!) this.pendingBelow[at]!--;
  }
}

/**
 * Row-major float32 rows of `featureCount` features. Each row first walks a tree with nodes still pending, every
 * feature free, so it takes at least one new node; then every other tree within what the row has committed to.
 */
export function coveringRows(trees: readonly XgboostTree[], featureCount: number): Float32Array {
  const coverage = trees.map((tree) => new TreeCoverage(tree));
  const rows: number[] = [];
  for (let first = coverage.findIndex((c) => !c.done); first >= 0; first = coverage.findIndex((c) => !c.done)) {
    const ranges = Array.from({ length: featureCount }, anyValue);
    coverage[first]!.walk(ranges);
    coverage.forEach((c, t) => t !== first && c.walk(ranges));
    rows.push(...ranges.map(pickValue));
  }
  return Float32Array.from(rows);
}
