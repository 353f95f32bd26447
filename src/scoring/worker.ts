import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { BatchScorer, type ScoringBatch } from './scorer.js';

/**
 * The piscina worker: loads the manifest once per thread, then scores batches in place and hands their buffers
 * back by transfer. A load failure does not kill the thread; every batch then fails with the load error, which
 * the pool counts and answers with the fallback.
 */

export interface ScoringWorkerData {
  manifestPath: string;
  profileSchemaPath: string;
}

const { manifestPath, profileSchemaPath } = workerData as ScoringWorkerData;
let scorer: BatchScorer | null = null;
let loadError: Error | null = null;
try {
  scorer = new BatchScorer(manifestPath, profileSchemaPath);
} catch (error) {
  loadError = error as Error;
}

export default function scoreBatch(batch: ScoringBatch): unknown {
  if (scorer === null) throw loadError!;
  scorer.scoreBatch(batch);
  const buffers = [...new Set([batch.records.buffer, batch.known.buffer, batch.os.buffer, batch.scores.buffer])];
  return move({ [transferableSymbol]: buffers, [valueSymbol]: batch });
}
