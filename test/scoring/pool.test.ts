import { once } from 'node:events';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Piscina } from 'piscina';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_MANIFEST_PATH } from '../../src/scoring/manifest.js';
import { ScoringPool, type ScoringJob } from '../../src/scoring/pool.js';
import { allocateBatch, BatchScorer } from '../../src/scoring/scorer.js';

/** The fixture devices laid out as a store would hold them: one records array, unknown devices have no record. */
interface Device {
  record: string;
  os: number;
  known: boolean;
}
const devices = (JSON.parse(readFileSync(new URL('../fixtures/scoring/devices-scores.json', import.meta.url), 'utf8')) as { devices: Device[] })
  .devices;
const RECORD_BYTES = 32;
const store = new Uint8Array(devices.length * RECORD_BYTES);
devices.forEach((device, i) => store.set(Buffer.from(device.record, 'hex'), i * RECORD_BYTES));

/** Scores of every fixture device computed on this thread, the reference the workers must match. */
function inlineScores(): Float32Array[] {
  const scorer = new BatchScorer(DEFAULT_MANIFEST_PATH);
  const batch = allocateBatch(devices.length, RECORD_BYTES, scorer.modelCount);
  batch.count = devices.length;
  batch.records.set(store);
  devices.forEach((device, i) => {
    batch.known[i] = device.known ? 1 : 0;
    batch.os[i] = device.os;
  });
  scorer.scoreBatch(batch);
  return devices.map((_, i) => batch.scores.slice(i * scorer.modelCount, (i + 1) * scorer.modelCount));
}

class RecordingJob implements ScoringJob {
  readonly records: Uint8Array | null;
  readonly recordOffset: number;
  readonly os: number;
  scores: Float32Array | null = null;
  scoredCalls = 0;
  deadlineCalls = 0;
  /** Batches out at a worker when onDeadline ran: 1 means the deadline timer answered, not the late result. */
  inFlightAtDeadline = -1;
  /** performance.now() at the first answer. */
  answeredAt = NaN;
  readonly answered: Promise<void>;
  private answer!: () => void;

  constructor(
    readonly device: number,
    /** Read by the pool when the batch leaves (and by its timer): a test may set it until then. */
    public deadline: number,
    private readonly pool?: ScoringPool,
  ) {
    this.records = devices[device]!.known ? store : null;
    this.recordOffset = device * RECORD_BYTES;
    this.os = devices[device]!.os;
    this.answered = new Promise((resolve) => (this.answer = resolve));
  }

  onScored(scores: Float32Array, offset: number): void {
    this.answeredAt ||= performance.now();
    this.scoredCalls++;
    this.scores = scores.slice(offset, offset + 4);
    this.answer();
  }

  onDeadline(): void {
    this.answeredAt ||= performance.now();
    this.deadlineCalls++;
    this.inFlightAtDeadline = this.pool?.batchesInFlight ?? -1;
    this.answer();
  }
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
const generous = () => performance.now() + 30_000;

describe('scoring on real worker threads', () => {
  const expected = inlineScores();
  let pool: ScoringPool;
  beforeAll(() => {
    pool = new ScoringPool({ manifestPath: DEFAULT_MANIFEST_PATH, threads: 2, maxBatch: 64 });
  });
  afterAll(() => pool.close());

  test('the pool describes its models', () => {
    expect(pool.modelNames).toEqual(['apply', 'approve', 'risk', 'ltv']);
    expect(pool.modelVersion).toBe(new BatchScorer(DEFAULT_MANIFEST_PATH).modelVersion);
    expect(pool.recordBytes).toBe(RECORD_BYTES);
  });

  test('one turn of jobs, split at maxBatch, scores exactly as inline', async () => {
    const jobs = devices.map((_, i) => new RecordingJob(i, generous()));
    for (const job of jobs) pool.submit(job);
    expect(pool.queueDepth).toBe(devices.length);
    await Promise.all(jobs.map((job) => job.answered));
    expect(pool.batchesSent).toBe(4);
    expect(pool.jobsSent).toBe(200);
    expect(pool.lastBatchSize).toBe(200 - 3 * 64);
    expect(pool.queueDepth).toBe(0);
    jobs.forEach((job, i) => {
      expect(job.scoredCalls).toBe(1);
      expect(job.deadlineCalls).toBe(0);
      expect(job.scores).toEqual(expected[i]);
    });
    expect(pool.utilization).toBeGreaterThan(0);
  });

  test('each event-loop turn becomes one batch, and recycled buffers keep scoring right', async () => {
    const sentBefore = pool.batchesSent;
    const jobs: RecordingJob[] = [];
    for (const turnSize of [3, 1, 17, 5]) {
      for (let k = 0; k < turnSize; k++) {
        const job = new RecordingJob((jobs.length * 37) % devices.length, generous());
        jobs.push(job);
        pool.submit(job);
      }
      await nextTurn();
    }
    await Promise.all(jobs.map((job) => job.answered));
    expect(pool.batchesSent - sentBefore).toBe(4);
    for (const job of jobs) expect(job.scores).toEqual(expected[job.device]);
  });

  test('a record that does not fit in the records array is refused', () => {
    const job = new RecordingJob(0, generous());
    expect(() => pool.submit({ ...job, recordOffset: store.length - 8, onScored: () => {}, onDeadline: () => {} })).toThrow(
      /record at offset 6392 does not fit in 6400 bytes/,
    );
  });
});

describe('deadlines', () => {
  const expected = inlineScores();
  let pool: ScoringPool;
  beforeAll(async () => {
    pool = new ScoringPool({ manifestPath: DEFAULT_MANIFEST_PATH, threads: 1, maxBatch: 4096 });
    const warmUp = new RecordingJob(0, generous());
    pool.submit(warmUp);
    await warmUp.answered;
  });
  afterAll(() => pool.close());

  test('jobs still at the worker at their deadline get onDeadline once, and the late result is discarded', async () => {
    // 4000 records through four models are some 60 million instructions, tens of milliseconds on any machine. The
    // deadline is set 5 ms ahead once they are all submitted, and the batch leaves at the end of this turn, well
    // before it: so the batch is at the worker when the deadline passes, whatever the machine's speed.
    const jobs = Array.from({ length: 4000 }, (_, i) => new RecordingJob(i % devices.length, Infinity, pool));
    for (const job of jobs) pool.submit(job);
    const deadline = performance.now() + 5;
    for (const job of jobs) job.deadline = deadline;
    await Promise.all(jobs.map((job) => job.answered));
    expect(pool.deadlineMisses).toBe(4000);
    expect(jobs.every((job) => job.inFlightAtDeadline === 1)).toBe(true);
    await until(() => pool.batchesInFlight === 0);
    for (const job of jobs) {
      expect(job.deadlineCalls).toBe(1);
      expect(job.scoredCalls).toBe(0);
    }
    expect(pool.queueDepth).toBe(0);

    const after = devices.map((_, i) => new RecordingJob(i, generous()));
    for (const job of after) pool.submit(job);
    await Promise.all(after.map((job) => job.answered));
    after.forEach((job, i) => expect(job.scores).toEqual(expected[i]));
  });

  test('a job already past its deadline when its batch leaves never reaches a worker', async () => {
    const sentBefore = pool.batchesSent;
    const job = new RecordingJob(1, performance.now() - 1, pool);
    pool.submit(job);
    expect(job.deadlineCalls).toBe(0);
    await job.answered;
    expect(job.deadlineCalls).toBe(1);
    expect(job.inFlightAtDeadline).toBe(0);
    expect(pool.batchesSent).toBe(sentBefore);
  });
});

describe('failures and shutdown', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'rta-pool-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  test('a worker that cannot load its models fails its batches through onDeadline and is counted', async () => {
    const dir = join(scratch, 'models');
    cpSync(new URL('../../data/models/', import.meta.url).pathname, dir, { recursive: true });
    const pool = new ScoringPool({ manifestPath: join(dir, 'manifest.json'), threads: 1, maxBatch: 8 });
    // The pool has checked the files on this thread; the worker, still booting, will find this one broken.
    writeFileSync(join(dir, 'approve.json'), '{ "format": ');
    const jobs = Array.from({ length: 10 }, (_, i) => new RecordingJob(i, generous()));
    for (const job of jobs) pool.submit(job);
    await Promise.all(jobs.map((job) => job.answered));
    for (const job of jobs) {
      expect(job.deadlineCalls).toBe(1);
      expect(job.scoredCalls).toBe(0);
    }
    expect(pool.workerErrors).toBe(2);
    expect(pool.lastWorkerError?.message).toMatch(/approve\.json: not readable JSON/);
    expect(pool.deadlineMisses).toBe(0);
    await pool.close();
  });

  test('when every batch buffer is out, new jobs are shed at once; close drains, then refuses', async () => {
    const pool = new ScoringPool({ manifestPath: DEFAULT_MANIFEST_PATH, threads: 1, maxBatch: 2, maxBatchesInFlight: 1 });
    const jobs = Array.from({ length: 5 }, (_, i) => new RecordingJob(i, generous()));
    for (const job of jobs) pool.submit(job);
    expect(jobs.map((job) => job.deadlineCalls)).toEqual([0, 0, 1, 1, 1]);
    expect(pool.shedJobs).toBe(3);
    expect(pool.batchesInFlight).toBe(1);
    await pool.close();
    expect(jobs.map((job) => job.scoredCalls)).toEqual([1, 1, 0, 0, 0]);
    const late = new RecordingJob(0, generous());
    pool.submit(late);
    expect(late.deadlineCalls).toBe(1);
    expect(pool.shedJobs).toBe(4);
  });

  test('bad options and a bad manifest fail at construction, before any worker starts', () => {
    expect(() => new ScoringPool({ manifestPath: DEFAULT_MANIFEST_PATH, threads: 0, maxBatch: 8 })).toThrow(/scoring pool options: threads: /);
    const manifest = join(scratch, 'manifest.json');
    writeFileSync(manifest, JSON.stringify({ profileSchemaVersion: 1, models: [] }));
    expect(() => new ScoringPool({ manifestPath: manifest, threads: 1, maxBatch: 8 })).toThrow(/manifest\.json: models: /);
  });
});

describe('a worker killed mid-batch', () => {
  const expected = inlineScores();
  /**
   * The pool keeps its piscina private; it is reached here only to end one of its real threads the way a crash
   * would (a native fault, a thread out of heap), and to hear piscina say that the replacement is ready.
   */
  const piscinaOf = (pool: ScoringPool) => (pool as unknown as { piscina: Piscina }).piscina;

  async function startedPool(maxBatch: number): Promise<ScoringPool> {
    const pool = new ScoringPool({ manifestPath: DEFAULT_MANIFEST_PATH, threads: 1, maxBatch });
    const warmUp = new RecordingJob(0, generous());
    pool.submit(warmUp);
    await warmUp.answered;
    return pool;
  }

  async function expectScoresAgain(pool: ScoringPool): Promise<void> {
    const later = devices.map((_, i) => new RecordingJob(i, generous()));
    for (const job of later) pool.submit(job);
    await Promise.all(later.map((job) => job.answered));
    later.forEach((job, i) => expect(job.scores).toEqual(expected[i]));
  }

  test('its batch gets onDeadline as soon as the worker is gone, long before the deadline; a new worker scores the next', async () => {
    const pool = await startedPool(4096);
    try {
      const piscina = piscinaOf(pool);
      const [worker] = piscina.threads;
      // So far off that the deadline timer cannot be what answers: the lost batch must be.
      const deadline = performance.now() + 30_000;
      // 4000 records keep the only worker busy for tens of milliseconds (see the deadline tests).
      const jobs = Array.from({ length: 4000 }, (_, i) => new RecordingJob(i % devices.length, deadline, pool));
      for (const job of jobs) pool.submit(job);
      await nextTurn();
      expect(pool.batchesInFlight).toBe(1);
      const replaced = once(piscina, 'workerCreate');
      const killedAt = performance.now();
      await worker!.terminate();
      await Promise.all(jobs.map((job) => job.answered));
      const slowestMs = Math.max(...jobs.map((job) => job.answeredAt)) - killedAt;
      console.log(`killed mid-batch: ${jobs.length} jobs answered with onDeadline within ${slowestMs.toFixed(1)} ms of terminate()`);
      expect(slowestMs).toBeLessThan(5_000);
      for (const job of jobs) {
        expect(job.deadlineCalls).toBe(1);
        expect(job.scoredCalls).toBe(0);
      }
      expect(pool).toMatchObject({ workerErrors: 1, deadlineMisses: 0, queueDepth: 0, batchesInFlight: 0 });
      expect(pool.lastWorkerError?.message).toMatch(/^worker exited with code/);

      await replaced;
      expect(piscina.threads).toHaveLength(1);
      expect(piscina.threads[0]).not.toBe(worker);
      await expectScoresAgain(pool);
    } finally {
      await pool.close();
    }
  });

  test('jobs that arrive while the replacement starts are each answered once, by their deadline, and never again', async () => {
    const pool = await startedPool(64);
    try {
      const piscina = piscinaOf(pool);
      const replaced = once(piscina, 'workerCreate');
      await piscina.threads[0]!.terminate();
      // The replacement loads and compiles four models before it takes work; these batches wait for it meanwhile.
      const deadline = performance.now() + 100;
      const waiting = Array.from({ length: 150 }, (_, i) => new RecordingJob(i % devices.length, deadline, pool));
      for (const job of waiting) pool.submit(job);
      await Promise.all(waiting.map((job) => job.answered));
      const latestMs = Math.max(...waiting.map((job) => job.answeredAt)) - deadline;
      console.log(`while the replacement started: ${waiting.filter((job) => job.scoredCalls === 1).length} of ${waiting.length} jobs scored, the last answer ${latestMs.toFixed(1)} ms after the deadline`);
      // A timer's lateness on a busy machine, not a wait for the replacement (hundreds of milliseconds here).
      expect(latestMs).toBeLessThan(250);
      for (const job of waiting) {
        expect(job.deadlineCalls + job.scoredCalls).toBe(1);
        if (job.scoredCalls === 1) expect(job.scores).toEqual(expected[job.device]);
      }

      await replaced;
      await until(() => pool.batchesInFlight === 0);
      for (const job of waiting) expect(job.deadlineCalls + job.scoredCalls).toBe(1);
      expect(pool.queueDepth).toBe(0);
      await expectScoresAgain(pool);
    } finally {
      await pool.close();
    }
  });
});
