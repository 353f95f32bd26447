import type { ScoringJob } from './pool.js';
import { allocateBatch, BatchScorer, type ScoringBatch } from './scorer.js';

/**
 * Scores on the calling thread, at once. Used when every serving thread runs its own uWebSockets.js app (the
 * `app-per-thread` mode): the thread already is a worker, so a second hop would only add latency.
 */
export class InlineScorer {
  readonly modelNames: readonly string[];
  readonly modelVersion: string;
  readonly modelCount: number;
  readonly maxBatch = 1;
  private readonly scorer: BatchScorer;
  private readonly batch: ScoringBatch;
  private readonly recordBytes: number;

  constructor(scorer: BatchScorer) {
    this.scorer = scorer;
    this.modelNames = this.scorer.modelNames;
    this.modelVersion = this.scorer.modelVersion;
    this.modelCount = this.scorer.modelCount;
    this.recordBytes = this.scorer.recordBytes;
    this.batch = allocateBatch(1, this.recordBytes, this.modelCount);
    this.batch.count = 1;
  }

  /**
   * Same contract as the pool: scores that would arrive after the job's deadline are not used. A job can be late
   * before it starts (the thread was busy) or after (an expensive model).
   */
  submit(job: ScoringJob): void {
    if (performance.now() > job.deadline) {
      job.onDeadline();
      return;
    }
    const { batch, recordBytes } = this;
    if (job.records === null) {
      batch.known[0] = 0;
    } else {
      batch.known[0] = 1;
      batch.records.set(job.records.subarray(job.recordOffset, job.recordOffset + recordBytes));
    }
    batch.os[0] = job.os;
    this.scorer.scoreBatch(batch);
    if (performance.now() > job.deadline) {
      job.onDeadline();
      return;
    }
    job.onScored(batch.scores, 0);
  }

  async close(): Promise<void> {}
}
