import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DEFAULT_MANIFEST_PATH, loadManifestModels, readManifest } from '../../src/scoring/manifest.js';
import { allocateBatch, BatchScorer } from '../../src/scoring/scorer.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../../src/store/profile-schema.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const demoDir = new URL('../../data/models/', import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), 'rta-manifest-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let cases = 0;
/** A copy of the demo models in its own folder, with the manifest (and optionally a model file) edited. */
function editedCopy(editManifest: (manifest: any) => void, editFile?: { name: string; edit: (json: any) => void }): string {
  const dir = join(scratch, String(cases++));
  cpSync(demoDir, dir, { recursive: true });
  const path = join(dir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8'));
  editManifest(manifest);
  writeFileSync(path, JSON.stringify(manifest));
  if (editFile) {
    const file = join(dir, editFile.name);
    const json = JSON.parse(readFileSync(file, 'utf8'));
    editFile.edit(json);
    writeFileSync(file, JSON.stringify(json));
  }
  return path;
}
const load = (path: string) => () => loadManifestModels(readManifest(path, schema), schema);

test('the demo manifest names the four models the strategies need, in order, with their versions', () => {
  const manifest = readManifest(DEFAULT_MANIFEST_PATH, schema);
  expect(manifest.modelNames).toEqual(['apply', 'approve', 'risk', 'ltv']);
  expect(manifest.modelVersion).toMatch(/^apply@[\w.-]+,approve@[\w.-]+,risk@[\w.-]+,ltv@[\w.-]+$/);
  const models = loadManifestModels(manifest, schema);
  expect(models.map((m) => [m.entry.format, m.model.featureCount])).toEqual([
    ['xgboost-json', 15],
    ['logistic-json', 9],
    ['xgboost-json', 9],
    ['xgboost-json', 9],
  ]);
});

describe('refusals name the manifest, the model and the problem', () => {
  test('an unknown feature', () => {
    const path = editedCopy((m) => (m.models[2].features[1] = 'flag:bankrupt'));
    expect(load(path)).toThrow(new RegExp(`${path}: models\\[2\\] \\("risk"\\): features\\[1\\]: unknown feature "flag:bankrupt" \\(known: `));
  });
  test('a missing model file', () => {
    const path = editedCopy((m) => (m.models[3].file = 'gone.json'));
    expect(load(path)).toThrow(/models\[3\] \("ltv"\): model file .*\/gone\.json does not exist/);
  });
  test('a duplicate model name', () => {
    const path = editedCopy((m) => (m.models[1].name = 'apply'));
    expect(load(path)).toThrow(/models\[1\] \("apply"\): duplicate model name/);
  });
  test('a feature listed twice', () => {
    const path = editedCopy((m) => (m.models[0].features[3] = m.models[0].features[0]));
    expect(load(path)).toThrow(/models\[0\] \("apply"\): features\[3\]: "finance_app_count" is listed twice/);
  });
  test('a version that would break the "name@version,..." string', () => {
    const path = editedCopy((m) => (m.models[0].version = '1,2'));
    expect(load(path)).toThrow(/models\[0\]\.version: versions use letters, digits/);
  });
  test('models trained on another profile layout', () => {
    const path = editedCopy((m) => (m.profileSchemaVersion = 2));
    expect(load(path)).toThrow(/trained on profile schema version 2, but the store uses version 1/);
  });
  test('an XGBoost model whose feature names differ from the manifest', () => {
    const path = editedCopy((m) => ([m.models[2].features[0], m.models[2].features[2]] = [m.models[2].features[2], m.models[2].features[0]]));
    expect(load(path)).toThrow(/risk\.json \(model "risk"\): feature 0 is "multi_lender_count" in the model but "repay_score" in the manifest/);
  });
  test('an XGBoost model with a different feature count', () => {
    const path = editedCopy((m) => m.models[3].features.pop());
    expect(load(path)).toThrow(/ltv\.json \(model "ltv"\): the model has 9 features, the manifest lists 8/);
  });
  test('a regression model declared as a probability', () => {
    const path = editedCopy((m) => (m.models[3].output = 'probability'));
    expect(load(path)).toThrow(/objective "reg:squarederror" does not produce the manifest's output "probability"/);
  });
  test('a logistic model whose name or version differs from its entry', () => {
    const path = editedCopy((m) => (m.models[1].version = '2027.01.01-1'));
    expect(load(path)).toThrow(/the file is approve@2026\.11\.25-1, the manifest says approve@2027\.01\.01-1/);
  });
  test('a manifest feature the logistic model does not read', () => {
    const path = editedCopy((m) => m.models[1].features.push('finance_app_count'));
    expect(load(path)).toThrow(/approve\.json \(model "approve"\): the manifest lists feature "finance_app_count", which the model does not read/);
  });
  test('a logistic model reading a feature the manifest does not list', () => {
    const path = editedCopy((m) => (m.models[1].features = m.models[1].features.filter((f: string) => f !== 'credit_band')));
    expect(load(path)).toThrow(/model "approve" reads feature "credit_band", which is not in its feature list/);
  });
  test('a hashed float feature', () => {
    const path = editedCopy(
      (m) => m.models[1].features.push('engagement_score'),
      { name: 'approve.json', edit: (json) => json.hashed.features.push('engagement_score') },
    );
    expect(load(path)).toThrow(/hashed feature "engagement_score" is a float field/);
  });
  test('a manifest that is not JSON', () => {
    const path = join(scratch, 'broken.json');
    writeFileSync(path, '{"models": [');
    expect(load(path)).toThrow(new RegExp(`${path}: not readable JSON`));
  });
});

describe('end to end: records -> features -> all four models, against the training script', () => {
  interface Devices {
    models: string[];
    devices: { record: string; os: number; known: boolean; scores: number[] }[];
  }
  const fixture = JSON.parse(readFileSync(new URL('../fixtures/scoring/devices-scores.json', import.meta.url), 'utf8')) as Devices;

  test('BatchScorer reproduces XGBoost and NumPy within float32 precision', () => {
    const scorer = new BatchScorer(DEFAULT_MANIFEST_PATH);
    expect(scorer.modelNames).toEqual(fixture.models);
    const count = fixture.devices.length;
    const batch = allocateBatch(count, scorer.recordBytes, scorer.modelCount);
    batch.count = count;
    fixture.devices.forEach((device, i) => {
      batch.records.set(Buffer.from(device.record, 'hex'), i * scorer.recordBytes);
      batch.known[i] = device.known ? 1 : 0;
      batch.os[i] = device.os;
    });
    expect(fixture.devices.some((d) => !d.known)).toBe(true);
    scorer.scoreBatch(batch);
    fixture.devices.forEach((device, i) => {
      device.scores.forEach((expected, m) => {
        const tolerance = fixture.models[m] === 'ltv' ? 1e-6 * Math.max(1, Math.abs(expected)) : 1e-6;
        expect(Math.abs(batch.scores[i * scorer.modelCount + m]! - expected), `${fixture.models[m]} of device ${i}`).toBeLessThanOrEqual(tolerance);
      });
    });
  });

  test('a batch whose arrays are too small for its count is refused', () => {
    const scorer = new BatchScorer(DEFAULT_MANIFEST_PATH);
    const batch = allocateBatch(4, scorer.recordBytes, scorer.modelCount);
    batch.count = 5;
    expect(() => scorer.scoreBatch(batch)).toThrow(/scoring batch of 5: arrays too small \(records 128 bytes for 32-byte records/);
  });
});
