import { describe, expect, test } from 'vitest';
import { Os } from '../../src/engine/types.js';
import { allocateBatch, BatchScorer } from '../../src/scoring/scorer.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../../src/store/profile-schema.js';
import { seededRandom } from '../support/seeded-random.js';

describe('BatchScorer.scoreRecord', () => {
  const scorer = new BatchScorer('data/models/manifest.json');
  const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);

  test('scores a record where it lies exactly as a batch holding a copy of it does, known or not', () => {
    const random = seededRandom(5);
    const records = new Uint8Array(schema.recordBytes * 200);
    for (let i = 0; i < records.length; i++) records[i] = random() < 0.1 ? 255 : Math.floor(random() * 256);
    const batch = allocateBatch(1, schema.recordBytes, scorer.modelCount);
    batch.count = 1;
    const scores = new Float32Array(scorer.modelCount);
    for (let i = 0; i < 200; i++) {
      const offset = i * schema.recordBytes;
      const known = i % 5 !== 0;
      const os = [Os.ANDROID, Os.IOS, Os.UNKNOWN][i % 3]!;
      batch.records.set(records.subarray(offset, offset + schema.recordBytes));
      batch.known[0] = known ? 1 : 0;
      batch.os[0] = os;
      scorer.scoreBatch(batch);
      scorer.scoreRecord(known ? records : null, offset, os, scores);
      expect(Array.from(scores), `record ${i}`).toEqual(Array.from(batch.scores));
      expect(scores.every(Number.isFinite)).toBe(true);
    }
  });
});
