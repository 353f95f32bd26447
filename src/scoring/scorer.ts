import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../store/profile-schema.js';
import { compileModels, loadManifestModels, readManifest, type LoadedModel, type ModelManifest, type PreparedModels } from './manifest.js';

/**
 * A micro-batch as it travels to a worker and back: `count` devices, their records copied from the store, whether
 * each is known, its os, and room for the scores (count x modelCount, manifest order). All four views share one
 * ArrayBuffer, so a batch crosses threads as a single transfer.
 */
export interface ScoringBatch {
  count: number;
  records: Uint8Array;
  known: Uint8Array;
  os: Uint8Array;
  scores: Float32Array;
}

export function allocateBatch(capacity: number, recordBytes: number, modelCount: number): ScoringBatch {
  const recordsBytes = capacity * recordBytes;
  const scoresAt = Math.ceil((recordsBytes + 2 * capacity) / 4) * 4;
  const buffer = new ArrayBuffer(scoresAt + capacity * modelCount * 4);
  return {
    count: 0,
    records: new Uint8Array(buffer, 0, recordsBytes),
    known: new Uint8Array(buffer, recordsBytes, capacity),
    os: new Uint8Array(buffer, recordsBytes + capacity, capacity),
    scores: new Float32Array(buffer, scoresAt, capacity * modelCount),
  };
}

const NO_RECORDS = new Uint8Array(0);

/** Scores whole batches with every model of a manifest. One per worker thread; also usable inline. */
export class BatchScorer {
  readonly modelNames: readonly string[];
  readonly modelVersion: string;
  readonly modelCount: number;
  readonly recordBytes: number;
  private readonly models: LoadedModel[];
  /** One feature matrix per model, grown only when a batch is bigger than any before. */
  private readonly featureRows: Float32Array[];

  /** Loads the manifest's models at once: for worker threads and tools, which serve nothing meanwhile. */
  constructor(manifestPath: string, profileSchemaPath?: string);
  constructor(compiled: { manifest: ModelManifest; models: LoadedModel[] }, profileSchemaPath?: string);
  constructor(source: string | { manifest: ModelManifest; models: LoadedModel[] }, profileSchemaPath = DEFAULT_PROFILE_SCHEMA_PATH) {
    const schema = loadProfileSchema(profileSchemaPath);
    const manifest = typeof source === 'string' ? readManifest(source, schema) : source.manifest;
    this.models = typeof source === 'string' ? loadManifestModels(manifest, schema) : source.models;
    this.modelNames = manifest.modelNames;
    this.modelVersion = manifest.modelVersion;
    this.modelCount = this.models.length;
    this.recordBytes = schema.recordBytes;
    this.featureRows = this.models.map((m) => new Float32Array(64 * m.extractor.featureCount));
  }

  /**
   * For a thread that serves: models prepared on a thread of their own (prepareModelsOffThread) are compiled here
   * one step per macrotask, so requests keep being answered between the steps.
   */
  static async compile(prepared: PreparedModels, profileSchemaPath: string): Promise<BatchScorer> {
    const steps = compileModels(prepared, loadProfileSchema(profileSchemaPath));
    for (let step = steps.next(); ; step = steps.next()) {
      if (step.done) return new BatchScorer({ manifest: prepared.manifest, models: step.value }, profileSchemaPath);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Scores one device straight from where its record lies (the store), into scores[0 .. modelCount): what an
   * inline scorer does per request, without copying the record into a batch first.
   */
  scoreRecord(records: Uint8Array | null, recordOffset: number, os: number, scores: Float32Array): void {
    const known = records !== null;
    const from = records ?? NO_RECORDS;
    for (let m = 0; m < this.modelCount; m++) {
      const { extractor, model } = this.models[m]!;
      const row = this.featureRows[m]!;
      extractor.fill(from, recordOffset, known, os, row, 0);
      model.scoreRows(row, 1, scores, m, this.modelCount);
    }
  }

  /** Fills batch.scores; throws when the batch's arrays are too small for its count. */
  scoreBatch(batch: ScoringBatch): void {
    const { count, records, known, os, scores } = batch;
    const { recordBytes, modelCount } = this;
    if (!Number.isInteger(count) || count < 0) throw new Error(`scoring batch: count ${count} is not a whole number`);
    if (records.length < count * recordBytes || known.length < count || os.length < count || scores.length < count * modelCount) {
      throw new Error(
        `scoring batch of ${count}: arrays too small (records ${records.length} bytes for ${recordBytes}-byte records, ` +
          `known ${known.length}, os ${os.length}, scores ${scores.length} for ${modelCount} models)`,
      );
    }
    for (let m = 0; m < modelCount; m++) {
      const { extractor, model } = this.models[m]!;
      const width = extractor.featureCount;
      if (this.featureRows[m]!.length < count * width) this.featureRows[m] = new Float32Array(count * width);
      const rows = this.featureRows[m]!;
      for (let i = 0; i < count; i++) extractor.fill(records, i * recordBytes, known[i] === 1, os[i]!, rows, i * width);
      model.scoreRows(rows, count, scores, m, modelCount);
    }
  }
}
