import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { z } from 'zod';
import { CallbackErrors } from '../engine/callback-errors.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../store/profile-schema.js';
import { readManifest } from './manifest.js';
import { allocateBatch, type ScoringBatch } from './scorer.js';
import type { ScoringWorkerData } from './worker.js';

/**
 * Scoring on worker threads. Jobs submitted in one event-loop turn travel together as one micro-batch in a
 * preallocated buffer that moves to a worker and back; each batch has a single deadline timer. Every job gets
 * exactly one answer: onScored before its deadline, or onDeadline.
 */

export interface ScoringJob {
  /** The store's records, or null for a device the store does not know. */
  readonly records: Uint8Array | null;
  readonly recordOffset: number;
  /** An `Os` number. */
  readonly os: number;
  /** performance.now() milliseconds; past it, the pool gives up on this job. */
  readonly deadline: number;
  /** Scores for this job at scores[offset .. offset + modelCount), manifest order. Valid only during the call. */
  onScored(scores: Float32Array, offset: number): void;
  /** Scores not back in time (or the pool could not take the job): the engine answers with its fallback. */
  onDeadline(): void;
}

const optionsSchema = z
  .object({
    manifestPath: z.string().min(1),
    profileSchemaPath: z.string().min(1).default(DEFAULT_PROFILE_SCHEMA_PATH),
    threads: z.number().int().min(1).max(64),
    /** A batch leaves at once when it holds this many jobs, else at the end of the event-loop turn. */
    maxBatch: z.number().int().min(1).max(4096),
    /** Batches out at a worker at once; when all are out, new jobs are shed (onDeadline at once). Default threads x 4. */
    maxBatchesInFlight: z.number().int().min(1).max(1024).optional(),
  })
  .strict();

export type ScoringPoolOptions = z.input<typeof optionsSchema>;

/** One reusable batch buffer and the jobs riding in it. Its promise and timer callbacks are bound once, not per batch. */
interface BatchSlot {
  batch: ScoringBatch;
  readonly runOptions: { transferList: ArrayBuffer[] };
  readonly jobs: (ScoringJob | null)[];
  count: number;
  /** Jobs of this batch not answered yet. */
  live: number;
  timer: NodeJS.Timeout | null;
  onResult(batch: ScoringBatch): void;
  onFailure(error: unknown): void;
  onTimer(): void;
}

/** The worker module next to this one; from TypeScript sources (tests, tsx) the workers load TypeScript through tsx. */
function workerFile(): { filename: string; execArgv: string[] | undefined } {
  const fromTypeScript = import.meta.url.endsWith('.ts');
  return {
    filename: fileURLToPath(new URL(fromTypeScript ? './worker.ts' : './worker.js', import.meta.url)),
    execArgv: fromTypeScript ? ['--import', 'tsx'] : undefined,
  };
}

export class ScoringPool {
  readonly modelNames: readonly string[];
  readonly modelVersion: string;
  readonly modelCount: number;
  readonly recordBytes: number;
  readonly maxBatch: number;

  /** Jobs submitted and not answered yet (waiting for their batch to leave, or at a worker). */
  queueDepth = 0;
  batchesSent = 0;
  /** Jobs sent in batches; jobsSent / batchesSent is the mean batch size. */
  jobsSent = 0;
  lastBatchSize = 0;
  /** Jobs answered with onDeadline because their scores were not back in time. */
  deadlineMisses = 0;
  /** Jobs answered with onDeadline at once: every batch buffer was out, or the pool was closing. */
  shedJobs = 0;
  /** Batches that failed on a worker, plus worker crashes; their jobs got onDeadline. */
  workerErrors = 0;
  lastWorkerError: Error | null = null;

  private readonly piscina: Piscina;
  private readonly free: BatchSlot[] = [];
  private filling: BatchSlot | null = null;
  private flushScheduled = false;
  private readonly flushBound = () => this.flush();
  private inFlight = 0;
  private closing = false;
  private closed: Promise<void> | null = null;
  private drained: (() => void) | null = null;
  private readonly callbackErrors = new CallbackErrors();

  constructor(options: ScoringPoolOptions) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`scoring pool options: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    const { manifestPath, profileSchemaPath, threads, maxBatch } = parsed.data;
    // A bad manifest fails here with its own message; the model files are parsed by the workers (and checked off
    // this thread first by whoever starts the pool on a serving thread: prepareModelsOffThread).
    const schema = loadProfileSchema(profileSchemaPath);
    const manifest = readManifest(manifestPath, schema);
    this.modelNames = manifest.modelNames;
    this.modelVersion = manifest.modelVersion;
    this.modelCount = manifest.models.length;
    this.recordBytes = schema.recordBytes;
    this.maxBatch = maxBatch;
    const slots = parsed.data.maxBatchesInFlight ?? threads * 4;
    for (let i = 0; i < slots; i++) this.free.push(this.newSlot());

    const { filename, execArgv } = workerFile();
    const workerData: ScoringWorkerData = { manifestPath, profileSchemaPath };
    this.piscina = new Piscina({ filename, execArgv, workerData, minThreads: threads, maxThreads: threads });
    this.piscina.on('error', (error: Error) => {
      this.workerErrors++;
      this.lastWorkerError = error;
    });
  }

  /** Batches out at a worker now. */
  get batchesInFlight(): number {
    return this.inFlight;
  }

  /** Share of time the worker threads were busy, 0..1. */
  get utilization(): number {
    return this.piscina.utilization;
  }

  /**
   * Queues a job into the current turn's batch. Never allocates in steady state. When the pool is closing or every
   * batch buffer is out, the job is answered with onDeadline before submit returns.
   */
  submit(job: ScoringJob): void {
    const records = job.records;
    if (records !== null && (job.recordOffset < 0 || job.recordOffset + this.recordBytes > records.length)) {
      throw new RangeError(`scoring job: record at offset ${job.recordOffset} does not fit in ${records.length} bytes of records`);
    }
    if (Number.isNaN(job.deadline)) throw new RangeError('scoring job: deadline is NaN');
    let slot = this.filling;
    if (slot === null) {
      slot = this.closing ? null : (this.free.pop() ?? null);
      if (slot === null) {
        this.shedJobs++;
        job.onDeadline();
        return;
      }
      this.filling = slot;
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flushBound);
      }
    }
    const i = slot.count++;
    const batch = slot.batch;
    slot.jobs[i] = job;
    slot.live++;
    this.queueDepth++;
    batch.os[i] = job.os;
    if (records === null) {
      batch.known[i] = 0;
    } else {
      batch.known[i] = 1;
      const bytes = this.recordBytes;
      for (let from = job.recordOffset, to = i * bytes, end = from + bytes; from < end; from++, to++) batch.records[to] = records[from]!;
    }
    if (slot.count === this.maxBatch) this.dispatch(slot);
  }

  /** Stops taking jobs, waits for every batch out at a worker to come back, then ends the worker threads. */
  close(): Promise<void> {
    this.closed ??= this.drainAndDestroy();
    return this.closed;
  }

  private async drainAndDestroy(): Promise<void> {
    this.closing = true;
    this.flush();
    if (this.inFlight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    await this.piscina.destroy();
  }

  private newSlot(): BatchSlot {
    const batch = allocateBatch(this.maxBatch, this.recordBytes, this.modelCount);
    const slot: BatchSlot = {
      batch,
      runOptions: { transferList: [batch.records.buffer as ArrayBuffer] },
      jobs: new Array<ScoringJob | null>(this.maxBatch).fill(null),
      count: 0,
      live: 0,
      timer: null,
      onResult: (scored) => this.completed(slot, scored),
      onFailure: (error) => this.failed(slot, error),
      onTimer: () => this.timedOut(slot),
    };
    return slot;
  }

  /** The batch buffer came back from a worker: its views are new objects over the returned memory. */
  private adopt(slot: BatchSlot, batch: ScoringBatch): void {
    slot.batch = batch;
    slot.runOptions.transferList[0] = batch.records.buffer as ArrayBuffer;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.filling !== null) this.dispatch(this.filling);
  }

  private dispatch(slot: BatchSlot): void {
    this.filling = null;
    const now = performance.now();
    const earliest = this.expire(slot, now);
    if (slot.live === 0) {
      this.recycle(slot);
      this.callbackErrors.rethrow();
      return;
    }
    slot.batch.count = slot.count;
    this.inFlight++;
    this.batchesSent++;
    this.jobsSent += slot.count;
    this.lastBatchSize = slot.count;
    this.piscina.run(slot.batch, slot.runOptions).then(slot.onResult, slot.onFailure);
    this.armTimer(slot, earliest, now);
    this.callbackErrors.rethrow();
  }

  /** One timer per batch, at its earliest pending deadline (a job may have no deadline at all: Infinity). */
  private armTimer(slot: BatchSlot, earliest: number, now: number): void {
    slot.timer = earliest === Infinity ? null : setTimeout(slot.onTimer, Math.max(1, Math.ceil(earliest - now)));
  }

  /** Answers the slot's jobs that are past their deadline; returns the earliest deadline of those still waiting. */
  private expire(slot: BatchSlot, now: number): number {
    let earliest = Infinity;
    for (let i = 0; i < slot.count; i++) {
      const job = slot.jobs[i];
      if (job === null) continue;
      if (job.deadline <= now) {
        this.answered(slot, i);
        this.deadlineMisses++;
        this.notify(job, null, 0);
      } else if (job.deadline < earliest) {
        earliest = job.deadline;
      }
    }
    return earliest;
  }

  private answered(slot: BatchSlot, i: number): void {
    slot.jobs[i] = null;
    slot.live--;
    this.queueDepth--;
  }

  private timedOut(slot: BatchSlot): void {
    const now = performance.now();
    this.armTimer(slot, this.expire(slot, now), now);
    this.callbackErrors.rethrow();
  }

  /** The worker handed the batch back, scored. Jobs already answered are skipped; late ones get onDeadline. */
  private completed(slot: BatchSlot, batch: ScoringBatch): void {
    this.adopt(slot, batch);
    const now = performance.now();
    for (let i = 0; i < slot.count; i++) {
      const job = slot.jobs[i];
      if (job === null) continue;
      this.answered(slot, i);
      const late = job.deadline <= now;
      if (late) this.deadlineMisses++;
      this.notify(job, late ? null : batch.scores, i * this.modelCount);
    }
    this.settle(slot);
    this.callbackErrors.rethrow();
  }

  /** The batch failed on its worker: its jobs get the fallback, the pool carries on. */
  private failed(slot: BatchSlot, error: unknown): void {
    this.workerErrors++;
    this.lastWorkerError = error instanceof Error ? error : new Error(String(error));
    // A batch lost with its worker keeps nothing of its buffer; give the slot a new one.
    if (slot.batch.records.buffer.byteLength === 0) this.adopt(slot, allocateBatch(this.maxBatch, this.recordBytes, this.modelCount));
    for (let i = 0; i < slot.count; i++) {
      const job = slot.jobs[i];
      if (job === null) continue;
      this.answered(slot, i);
      this.notify(job, null, 0);
    }
    this.settle(slot);
    this.callbackErrors.rethrow();
  }

  /** One answer to one job: scores, or the fallback when `scores` is null. */
  private notify(job: ScoringJob, scores: Float32Array | null, offset: number): void {
    try {
      if (scores === null) job.onDeadline();
      else job.onScored(scores, offset);
    } catch (error) {
      this.callbackErrors.keep(error);
    }
  }

  private settle(slot: BatchSlot): void {
    if (slot.timer !== null) clearTimeout(slot.timer);
    slot.timer = null;
    this.inFlight--;
    this.recycle(slot);
    if (this.inFlight === 0 && this.drained !== null) this.drained();
  }

  private recycle(slot: BatchSlot): void {
    slot.count = 0;
    slot.live = 0;
    this.free.push(slot);
  }
}
