import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DEVICE_ID_KIND_NAMES, type DeviceIdKind } from '../../src/engine/types.js';
import { DEVICE_KEY_BYTES, hashRawDeviceId, parseDeviceKeyHex } from '../../src/store/device-key.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, readField } from '../../src/store/profile-schema.js';
import { loadSnapshot } from '../../src/store/snapshot.js';
import { buildSnapshot } from '../../src/tools/build-snapshot.js';
import { generateDemoData, type PersonaDevice } from '../../src/tools/demo-data.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const dir = mkdtempSync(join(tmpdir(), 'demo-data-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const KIND_BY_NAME = new Map(Object.entries(DEVICE_ID_KIND_NAMES).map(([kind, name]) => [name, Number(kind) as DeviceIdKind]));
const DEVICES = 5000;

function generate(name: string, seed: number, devices = DEVICES, jsonl?: string) {
  return generateDemoData({ devices, seed, outputDir: join(dir, name), jsonl, schema });
}

describe('demo data generator', () => {
  test('the same seed gives the same bytes; another seed does not', () => {
    const first = generate('a', 7);
    const second = generate('b', 7);
    const other = generate('c', 8);
    expect(first.devices).toBe(DEVICES);
    expect(readFileSync(first.snapshotPath).equals(readFileSync(second.snapshotPath))).toBe(true);
    expect(readFileSync(first.personasPath, 'utf8')).toBe(readFileSync(second.personasPath, 'utf8'));
    expect(readFileSync(first.snapshotPath).equals(readFileSync(other.snapshotPath))).toBe(false);
  });

  test('personas: raw ids hash (by the media rules) to keys of devices with the persona profile; unknown ids miss', () => {
    const report = generate('personas', 11);
    expect(report.missingPersonas).toEqual([]);
    const { store } = loadSnapshot(report.snapshotPath, schema);
    const { personas } = JSON.parse(readFileSync(report.personasPath, 'utf8')) as {
      personas: Record<string, { devices: PersonaDevice[] }>;
    };
    expect(Object.keys(personas).sort()).toEqual(
      ['active_borrower', 'blacklisted', 'dormant_approved', 'high_risk', 'prime_prospect', 'unknown'].sort(),
    );
    const flag = (offset: number, name: string) => (readField(store.records, offset, schema.field('flags')) >> schema.flag(name).bit) & 1;
    const key = new Uint8Array(DEVICE_KEY_BYTES);
    for (const [name, { devices }] of Object.entries(personas)) {
      expect(devices.length, name).toBeGreaterThan(0);
      for (const device of devices) {
        const offsets = device.ids.map(({ kind, raw, md5 }) => {
          expect(hashRawDeviceId(KIND_BY_NAME.get(kind)!, raw)).toBe(md5);
          parseDeviceKeyHex(md5, key);
          return store.find(key, 0);
        });
        if (name === 'unknown') {
          expect(offsets.every((offset) => offset === -1)).toBe(true);
          continue;
        }
        expect(new Set(offsets).size, `${name}: all ids of one device lead to one record`).toBe(1);
        const offset = offsets[0]!;
        expect(offset).toBeGreaterThanOrEqual(0);
        expect(device.ids.map(({ kind }) => kind)).toContain(device.os === 'android' ? 'oaid_md5' : 'idfa_md5');
        const read = (field: string) => readField(store.records, offset, schema.field(field));
        if (name === 'prime_prospect') {
          expect(read('flags')).toBe(0);
          expect(read('credit_band')).toBeLessThanOrEqual(2);
          expect(read('multi_lender_count')).toBe(0);
          expect(read('income_score')).toBeGreaterThanOrEqual(0.7 - 1e-6);
        }
        if (name === 'dormant_approved') expect([flag(offset, 'approved'), flag(offset, 'dormant'), flag(offset, 'active_borrower')]).toEqual([1, 1, 0]);
        if (name === 'active_borrower') expect(flag(offset, 'active_borrower')).toBe(1);
        if (name === 'blacklisted') expect(flag(offset, 'blacklisted')).toBe(1);
        if (name === 'high_risk') {
          expect(flag(offset, 'overdue_recent')).toBe(1);
          expect(read('multi_lender_count')).toBeGreaterThanOrEqual(8);
        }
      }
    }
  });

  test('the population follows the spec shares', () => {
    const devices = 20_000;
    const report = generate('shares', 3, devices);
    const { store } = loadSnapshot(report.snapshotPath, schema);
    const count = { active: 0, dormant: 0, blacklisted: 0, overdue: 0, noFlags: 0, noCreditBand: 0 };
    const bit = (name: string) => 1 << schema.flag(name).bit;
    for (let offset = 0; offset < devices * schema.recordBytes; offset += schema.recordBytes) {
      const flags = readField(store.records, offset, schema.field('flags'));
      if (flags & bit('active_borrower')) count.active++;
      if (flags & bit('dormant')) count.dormant++;
      if (flags & bit('blacklisted')) count.blacklisted++;
      if (flags & bit('overdue_recent')) count.overdue++;
      if (flags === 0) {
        count.noFlags++;
        if (Number.isNaN(readField(store.records, offset, schema.field('credit_band')))) count.noCreditBand++;
      }
    }
    const expectShare = (n: number, expected: number) => expect(Math.abs(n / devices - expected)).toBeLessThan(0.01);
    expectShare(count.active, 0.08);
    expectShare(count.dormant, 0.1);
    expectShare(count.blacklisted, 0.02);
    expectShare(count.overdue, 0.05);
    expectShare(count.noFlags, 0.63);
    expect(Math.abs(count.noCreditBand / count.noFlags - 0.4)).toBeLessThan(0.02);
    // Android 75 % x (OAID + 60 % IMEI) + iOS 25 % x (IDFA + 50 % CAID) = 1.575 keys per device.
    expect(Math.abs(report.keys / devices - 1.575)).toBeLessThan(0.02);
  });

  test('--if-missing is a no-op only when the files match the requested parameters', () => {
    const outputDir = join(dir, 'if-missing');
    const first = generateDemoData({ devices: 1000, seed: 5, outputDir, schema, ifMissing: true });
    expect(first.generated).toBe(true);
    const written = statSync(first.snapshotPath).mtimeMs;
    const again = generateDemoData({ devices: 1000, seed: 5, outputDir, schema, ifMissing: true });
    expect(again.generated).toBe(false);
    expect(statSync(first.snapshotPath).mtimeMs).toBe(written);
    expect(generateDemoData({ devices: 1200, seed: 5, outputDir, schema, ifMissing: true }).generated).toBe(true);
    expect(generateDemoData({ devices: 1200, seed: 6, outputDir, schema, ifMissing: true }).generated).toBe(true);
    expect(generateDemoData({ devices: 1200, seed: 6, outputDir, schema, ifMissing: true, jsonl: join(outputDir, 'rows.jsonl') }).generated).toBe(true);
    expect(generateDemoData({ devices: 1200, seed: 6, outputDir, schema, ifMissing: true, jsonl: join(outputDir, 'rows.jsonl') }).generated).toBe(false);
  });

  test('--jsonl rows rebuild the same store through build-snapshot', async () => {
    const jsonl = join(dir, 'rows.jsonl');
    const report = generate('jsonl', 9, 3000, jsonl);
    const rebuilt = join(dir, 'rebuilt.snapshot');
    const build = await buildSnapshot({ input: jsonl, output: rebuilt, schema });
    expect(build.badRowCount).toBe(0);
    const demo = loadSnapshot(report.snapshotPath, schema).store;
    const fromRows = loadSnapshot(rebuilt, schema).store;
    expect(fromRows.deviceCount).toBe(demo.deviceCount);
    expect(fromRows.keyCount).toBe(demo.keyCount);
    expect(Buffer.from(fromRows.records).equals(Buffer.from(demo.records))).toBe(true);
    const key = new Uint8Array(DEVICE_KEY_BYTES);
    for (const line of readFileSync(jsonl, 'utf8').trimEnd().split('\n').slice(0, 500)) {
      const row = JSON.parse(line) as Record<string, unknown>;
      for (const name of Object.values(DEVICE_ID_KIND_NAMES)) {
        if (typeof row[name] !== 'string') continue;
        parseDeviceKeyHex(row[name] as string, key);
        expect(fromRows.find(key, 0)).toBe(demo.find(key, 0));
        expect(demo.find(key, 0)).toBeGreaterThanOrEqual(0);
      }
    }
  });
});
