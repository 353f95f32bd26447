import type { ScoringJob } from './pool.js';
import type { BatchScorer } from './scorer.js';

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
  private readonly scores: Float32Array;

  constructor(scorer: BatchScorer) {
    this.scorer = scorer;
    this.modelNames = this.scorer.modelNames;
    this.modelVersion = this.scorer.modelVersion;
    this.modelCount = this.scorer.modelCount;
    this.scores = new Float32Array(this.modelCount);
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
    this.scorer.scoreRecord(job.records, job.recordOffset, job.os, this.scores);
    if (performance.now() > job.deadline) {
      job.onDeadline();
      return;
    }
    job.onScored(this.scores, 0);
  }

  async close(): Promise<void> {}
}
