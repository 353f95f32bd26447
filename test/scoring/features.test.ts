import { describe, expect, test } from 'vitest';
import { Os } from '../../src/engine/types.js';
import { CONTEXT_FEATURES, FeatureExtractor } from '../../src/scoring/features.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, readField } from '../../src/store/profile-schema.js';
import { seededRandom } from '../support/seeded-random.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);

/** Two records side by side, written field by field through DataView (little-endian), the second one at byte 32. */
function handMadeRecords(): Uint8Array {
  const bytes = new Uint8Array(64);
  const view = new DataView(bytes.buffer);
  const second = 32;
  // flags: registered, approved, overdue_recent
  view.setUint16(second + 0, (1 << 0) | (1 << 2) | (1 << 6), true);
  view.setUint8(second + 2, 255); // multi_lender_count: missing
  view.setUint8(second + 3, 2); // credit_band
  view.setUint16(second + 4, 400, true); // days_since_last_active
  view.setUint8(second + 6, 0); // finance_app_count: 0 is a real value
  view.setUint8(second + 7, 0); // region_tier: 0 is missing
  view.setFloat32(second + 8, 0.625, true); // income_score
  view.setFloat32(second + 12, NaN, true); // engagement_score: missing
  view.setFloat32(second + 16, 0.1, true); // repay_score
  view.setUint16(second + 20, 65535, true); // credit_limit_hundred_yuan: missing
  view.setUint32(second + 28, 20418, true); // updated_day
  return bytes;
}

const NAMES = [
  'flag:approved',
  'flag:active_borrower',
  'multi_lender_count',
  'credit_band',
  'days_since_last_active',
  'finance_app_count',
  'region_tier',
  'income_score',
  'engagement_score',
  'repay_score',
  'credit_limit_hundred_yuan',
  'updated_day',
  'flags',
  'ctx:os_android',
  'ctx:os_ios',
  'ctx:known_device',
];

describe('feature extraction from hand-made records', () => {
  const extractor = new FeatureExtractor(schema, NAMES);

  test('a known device: values, flags, missing sentinels as NaN, context', () => {
    const out = new Float32Array(NAMES.length + 2).fill(-7);
    extractor.fill(handMadeRecords(), 32, true, Os.ANDROID, out, 1);
    expect(Array.from(out)).toEqual([
      -7,
      1,
      0,
      NaN,
      2,
      400,
      0,
      NaN,
      0.625,
      NaN,
      Math.fround(0.1),
      NaN,
      20418,
      (1 << 0) | (1 << 2) | (1 << 6),
      1,
      0,
      1,
      -7,
    ]);
  });

  test('an unknown device: every profile feature NaN, context still set', () => {
    const out = new Float32Array(NAMES.length);
    extractor.fill(new Uint8Array(0), 0, false, Os.IOS, out, 0);
    expect(Array.from(out.subarray(0, NAMES.length - 3)).every(Number.isNaN)).toBe(true);
    expect(Array.from(out.subarray(NAMES.length - 3))).toEqual([0, 1, 0]);
  });

  test('an unknown os sets neither os feature', () => {
    const out = new Float32Array(NAMES.length);
    extractor.fill(handMadeRecords(), 0, true, Os.UNKNOWN, out, 0);
    expect(Array.from(out.subarray(NAMES.length - 3))).toEqual([0, 0, 1]);
  });
});

test('every profile feature agrees with readField on random records', () => {
  const random = seededRandom(11);
  const names = schema.featureNames();
  const extractor = new FeatureExtractor(schema, names);
  const records = new Uint8Array(schema.recordBytes * 300);
  for (let i = 0; i < records.length; i++) records[i] = random() < 0.2 ? 255 : random() < 0.2 ? 0 : Math.floor(random() * 256);
  const out = new Float32Array(names.length);
  for (let offset = 0; offset < records.length; offset += schema.recordBytes) {
    extractor.fill(records, offset, true, Os.ANDROID, out, 0);
    names.forEach((name, j) => {
      const expected = name.startsWith('flag:')
        ? (readField(records, offset, schema.flag(name.slice(5)).field) >>> schema.flag(name.slice(5)).bit) & 1
        : Math.fround(readField(records, offset, schema.field(name)));
      expect(out[j], `${name} at ${offset}`).toBe(expected);
    });
  }
});

test('an unknown feature name is refused, naming the valid ones', () => {
  expect(() => new FeatureExtractor(schema, ['credit_band', 'ctx:os_windows'])).toThrow(
    new RegExp(`unknown feature "ctx:os_windows" \\(known: .*flag:blacklisted.*${CONTEXT_FEATURES.join(', ')}\\)`),
  );
});
