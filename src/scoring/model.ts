/**
 * A model compiled for the hot path. It reads rows of float32 features in the order its manifest entry lists them
 * (NaN = missing) and writes one float32 score per row.
 */
export interface CompiledModel {
  readonly featureCount: number;
  /** Scores rows 0..count-1 of `features` (row-major, featureCount values each); row i goes to out[outOffset + i * outStride]. */
  scoreRows(features: Float32Array, count: number, out: Float32Array, outOffset: number, outStride: number): void;
}

/** Turns a validation path such as ["hashed", "weights", 3] into "hashed.weights[3]". */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const key of path) text += typeof key === 'number' ? `[${key}]` : `${text ? '.' : ''}${String(key)}`;
  return text || '(root)';
}

/** Runs a stepwise computation (a generator that yields between steps) to its end, without yielding the thread. */
export function runSteps<T>(steps: Generator<void, T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}
