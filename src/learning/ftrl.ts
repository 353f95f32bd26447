import { fnv1a32, logisticToken, type LogisticModel } from '../scoring/logistic.js';

/**
 * Online learning for a logistic model of our format: FTRL-proximal (McMahan et al. 2013, "Ad click prediction: a
 * view from the trenches") learns a correction on top of the file's model, on the same terms, so the learned
 * model is again a plain rta-logistic/1 file: the file's weights plus the correction, each clipped to
 * +-maxCorrection. Every example is scored before it is learned from (progressive validation, as Vowpal Wabbit
 * reports it): by the correction being learned and by the one in service, so the two are compared on the same
 * examples, none of which either had seen when it scored them.
 */

export interface FtrlParams {
  alpha: number;
  beta: number;
  l1: number;
  l2: number;
  /** No learned weight moves further than this from the file's (logit units). */
  maxCorrection: number;
  /** Examples kept for the comparison: the most recent ones. */
  holdout: number;
}

export interface Figures {
  logLoss: number;
  auc: number;
}

export interface LearnerFigures {
  /** Examples learned from since the start (or the last change of the file's model). */
  examples: number;
  /** Examples in the comparison window, and positives among them. */
  holdout: number;
  positives: number;
  /** The correction being learned, and the one in service, on the same window. */
  candidate: Figures;
  live: Figures;
}

export class FtrlCorrection {
  private readonly denseIndex: Int32Array;
  private readonly denseIfMissing: Float64Array;
  private readonly hashedIndex: Int32Array;
  private readonly hashedNames: string[];
  private readonly buckets: number;
  /** Coordinates: the bias, then the dense weights, then the buckets. */
  private readonly baseWeights: Float64Array;
  private readonly z: Float64Array;
  private readonly n: Float64Array;
  private live: Float64Array;
  /** The weights of the last candidate handed out. */
  private offered: Float64Array | null = null;
  private readonly plattA: number;
  private readonly plattB: number;
  private examples = 0;
  /** The comparison window, a ring: label, candidate's and live model's probability. */
  private readonly labels: Uint8Array;
  private readonly candidateScores: Float64Array;
  private readonly liveScores: Float64Array;
  private filled = 0;
  private cursor = 0;
  /** One example's terms: coordinate and value, reused. */
  private readonly coordinates: Int32Array;
  private readonly values: Float64Array;
  private readonly termWeights: Float64Array;
  private termCount = 0;

  constructor(
    readonly base: LogisticModel,
    featureNames: readonly string[],
    private readonly params: FtrlParams,
  ) {
    const indexOf = (name: string) => featureNames.indexOf(name);
    this.denseIndex = Int32Array.from(base.dense, (d) => indexOf(d.feature));
    this.denseIfMissing = Float64Array.from(base.dense, (d) => d.ifMissing);
    this.hashedNames = base.hashed?.features ?? [];
    this.hashedIndex = Int32Array.from(this.hashedNames, indexOf);
    this.buckets = base.hashed?.buckets ?? 0;
    const size = 1 + base.dense.length + this.buckets;
    this.baseWeights = Float64Array.from({ length: size }, (_, i) => (i === 0 ? base.bias : i <= base.dense.length ? base.dense[i - 1]!.weight : base.hashed!.weights[i - 1 - base.dense.length]!));
    this.z = new Float64Array(size);
    this.n = new Float64Array(size);
    this.live = new Float64Array(size);
    this.plattA = base.calibration?.a ?? 1;
    this.plattB = base.calibration?.b ?? 0;
    this.labels = new Uint8Array(params.holdout);
    this.candidateScores = new Float64Array(params.holdout);
    this.liveScores = new Float64Array(params.holdout);
    this.coordinates = new Int32Array(1 + base.dense.length + this.hashedNames.length);
    this.values = new Float64Array(this.coordinates.length);
    this.termWeights = new Float64Array(this.coordinates.length);
  }

  /** One labelled example: `row` holds the model's features in manifest order (NaN where missing). */
  learn(row: ArrayLike<number>, label: 0 | 1): void {
    this.terms(row);
    let candidateZ = 0;
    let liveZ = 0;
    for (let t = 0; t < this.termCount; t++) {
      const i = this.coordinates[t]!;
      this.termWeights[t] = this.weightAt(i);
      candidateZ += (this.baseWeights[i]! + this.termWeights[t]!) * this.values[t]!;
      liveZ += (this.baseWeights[i]! + this.live[i]!) * this.values[t]!;
    }
    const p = this.calibrated(candidateZ);
    this.labels[this.cursor] = label;
    this.candidateScores[this.cursor] = p;
    this.liveScores[this.cursor] = this.calibrated(liveZ);
    this.cursor = (this.cursor + 1) % this.params.holdout;
    this.filled = Math.min(this.filled + 1, this.params.holdout);
    this.examples++;
    // d logloss / d z for the calibrated probability sigmoid(a z + b).
    const gradient = (p - label) * this.plattA;
    const { alpha } = this.params;
    for (let t = 0; t < this.termCount; t++) {
      const i = this.coordinates[t]!;
      const g = gradient * this.values[t]!;
      const sigma = (Math.sqrt(this.n[i]! + g * g) - Math.sqrt(this.n[i]!)) / alpha;
      this.z[i] = this.z[i]! + g - sigma * this.termWeights[t]!;
      this.n[i] = this.n[i]! + g * g;
    }
  }

  /** The learned model's probability for a row, as its published file would score it. */
  predict(row: ArrayLike<number>): number {
    this.terms(row);
    let z = 0;
    for (let t = 0; t < this.termCount; t++) z += (this.baseWeights[this.coordinates[t]!]! + this.weightAt(this.coordinates[t]!)) * this.values[t]!;
    return this.calibrated(z);
  }

  figures(): LearnerFigures {
    const labels = this.labels.subarray(0, this.filled);
    let positives = 0;
    for (const label of labels) positives += label;
    return {
      examples: this.examples,
      holdout: this.filled,
      positives,
      candidate: figures(labels, this.candidateScores.subarray(0, this.filled)),
      live: figures(labels, this.liveScores.subarray(0, this.filled)),
    };
  }

  /** The file's model plus the correction learned so far, as a model file under a new version. */
  candidate(version: string, description: string): LogisticModel {
    const w = this.weights();
    this.offered = w;
    const d = this.base.dense.length;
    return {
      ...this.base,
      version,
      description,
      bias: this.baseWeights[0]! + w[0]!,
      dense: this.base.dense.map((entry, j) => ({ ...entry, weight: this.baseWeights[1 + j]! + w[1 + j]! })),
      ...(this.base.hashed ? { hashed: { ...this.base.hashed, weights: this.base.hashed.weights.map((b, k) => b + w[1 + d + k]!) } } : {}),
    };
  }

  /**
   * The last candidate went into service: its weights (not what was learned since) are the ones to beat, on
   * examples from now on.
   */
  adopt(): void {
    if (this.offered) this.live = this.offered;
    this.restartComparison();
  }

  /** The file's model is in service again (a person's rollback): the live correction is none. */
  dropLive(): void {
    this.live = new Float64Array(this.live.length);
    this.restartComparison();
  }

  /** The window compares the learned model with the one in service now, not with earlier ones. */
  private restartComparison(): void {
    this.filled = 0;
    this.cursor = 0;
  }

  private weights(): Float64Array {
    return Float64Array.from(this.z, (_, i) => this.weightAt(i));
  }

  /** FTRL-proximal's closed form, clipped. */
  private weightAt(i: number): number {
    const { alpha, beta, l1, l2, maxCorrection } = this.params;
    const z = this.z[i]!;
    if (Math.abs(z) <= l1) return 0;
    const value = -(z - Math.sign(z) * l1) / ((beta + Math.sqrt(this.n[i]!)) / alpha + l2);
    return Math.max(-maxCorrection, Math.min(maxCorrection, value));
  }

  private terms(row: ArrayLike<number>): void {
    let t = 0;
    this.coordinates[t] = 0;
    this.values[t++] = 1;
    for (let j = 0; j < this.denseIndex.length; j++) {
      const value = row[this.denseIndex[j]!]!;
      this.coordinates[t] = 1 + j;
      this.values[t++] = Number.isNaN(value) ? this.denseIfMissing[j]! : value;
    }
    const first = 1 + this.denseIndex.length;
    for (let j = 0; j < this.hashedIndex.length; j++) {
      // The format's own token hash, so a learned bucket is the bucket the scorer reads.
      this.coordinates[t] = first + (fnv1a32(logisticToken(this.hashedNames[j]!, row[this.hashedIndex[j]!]!)) % this.buckets);
      this.values[t++] = 1;
    }
    this.termCount = t;
  }

  private calibrated(z: number): number {
    return 1 / (1 + Math.exp(-(this.plattA * z + this.plattB)));
  }
}

/** Mean log loss (probabilities kept off 0 and 1) and the area under the ROC curve, ties counted half. */
export function figures(labels: ArrayLike<number>, scores: ArrayLike<number>): Figures {
  const count = labels.length;
  if (count === 0) return { logLoss: NaN, auc: NaN };
  let loss = 0;
  for (let i = 0; i < count; i++) {
    const p = Math.min(1 - 1e-12, Math.max(1e-12, scores[i]!));
    loss -= labels[i] ? Math.log(p) : Math.log(1 - p);
  }
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let positives = 0;
  let rankSum = 0;
  for (let start = 0; start < count; ) {
    let end = start;
    while (end + 1 < count && scores[order[end + 1]!] === scores[order[start]!]) end++;
    const rank = (start + end) / 2 + 1;
    for (let k = start; k <= end; k++) {
      if (labels[order[k]!]) {
        positives++;
        rankSum += rank;
      }
    }
    start = end + 1;
  }
  const negatives = count - positives;
  const auc = positives === 0 || negatives === 0 ? NaN : (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
  return { logLoss: loss / count, auc };
}
