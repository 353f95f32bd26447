import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { EmbeddedDeviceStore } from '../../src/store/embedded.js';
import { ProfileRecordWriter } from '../../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, parseProfileSchema, readField } from '../../src/store/profile-schema.js';
import { loadSnapshot, readSnapshotHeader, SNAPSHOT_HEADER_BYTES, SnapshotError, writeSnapshot } from '../../src/store/snapshot.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const dir = mkdtempSync(join(tmpdir(), 'snapshot-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const key = (raw: string): Buffer => createHash('md5').update(raw).digest();
const DEVICES = 300;

/** A store of DEVICES devices: device i has keys o<i> and (every other device) i<i>, income_score i/1000, region i%5+1. */
function buildStore(): EmbeddedDeviceStore {
  const store = EmbeddedDeviceStore.create(schema);
  const writer = new ProfileRecordWriter(schema);
  for (let i = 0; i < DEVICES; i++) {
    writer.clear();
    writer.write(schema.field('income_score'), i / 1000);
    writer.write(schema.field('region_tier'), (i % 5) + 1);
    writer.writeFlags(schema.field('flags'), i % 2 ? ['registered'] : []);
    store.addDevice(writer.record, i % 2 ? Buffer.concat([key(`o${i}`), key(`i${i}`)]) : key(`o${i}`));
  }
  return store;
}

function writeFixture(name: string): { path: string; bytes: Buffer } {
  const path = join(dir, name);
  writeSnapshot(buildStore(), path);
  return { path, bytes: readFileSync(path) };
}

function refusal(path: string, against = schema): string {
  try {
    loadSnapshot(path, against);
  } catch (error) {
    expect(error).toBeInstanceOf(SnapshotError);
    return (error as Error).message;
  }
  throw new Error('snapshot was accepted');
}

/** Rewrites the checksum so a deliberate edit passes it and reaches the later checks. */
function resealed(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  const hash = createHash('sha256').update(copy.subarray(0, 56)).update(copy.subarray(SNAPSHOT_HEADER_BYTES)).digest();
  hash.copy(copy, 56);
  return copy;
}

describe('device snapshot', () => {
  test('round trip: same counts, same lookups, same records', () => {
    const original = buildStore();
    const path = join(dir, 'round-trip.snapshot');
    const written = writeSnapshot(original, path);
    const { store, header, millis } = loadSnapshot(path, schema);

    expect(header).toEqual(written.header);
    expect(header.deviceCount).toBe(DEVICES);
    expect(header.keyCount).toBe(DEVICES + DEVICES / 2);
    expect(header.fileBytes).toBe(SNAPSHOT_HEADER_BYTES + original.tableCapacity * 20 + DEVICES * schema.recordBytes);
    expect(millis).toBeGreaterThan(0);
    expect(store.deviceCount).toBe(DEVICES);
    expect(store.keyCount).toBe(original.keyCount);
    expect(store.memoryBytes).toBe(header.fileBytes - SNAPSHOT_HEADER_BYTES);
    for (const i of [0, 1, 150, 299]) {
      const offset = store.find(key(`o${i}`), 0);
      expect(offset).toBe(i * schema.recordBytes);
      if (i % 2) expect(store.find(key(`i${i}`), 0)).toBe(offset);
      expect(readField(store.records, offset, schema.field('income_score'))).toBeCloseTo(i / 1000, 6);
      expect(readField(store.records, offset, schema.field('region_tier'))).toBe((i % 5) + 1);
    }
    expect(store.find(key('i0'), 0)).toBe(-1);
    expect(Buffer.compare(Buffer.from(store.records), Buffer.from(original.records.subarray(0, DEVICES * schema.recordBytes)))).toBe(0);
    expect(readSnapshotHeader(path)).toEqual(header);
  });

  test('refuses a truncated file, saying how short it is', () => {
    const { path, bytes } = writeFixture('truncated.snapshot');
    truncateSync(path, bytes.length - 10);
    expect(refusal(path)).toMatch(new RegExp(`truncated: ${bytes.length - 10} bytes, the header promises ${bytes.length}`));
    truncateSync(path, 40);
    expect(refusal(path)).toMatch(/truncated: 40 bytes, shorter than the 88-byte header/);
  });

  test('refuses trailing bytes', () => {
    const { path } = writeFixture('trailing.snapshot');
    appendFileSync(path, 'xyz');
    expect(refusal(path)).toMatch(/3 unexpected bytes after the/);
  });

  test('refuses a file that is not a snapshot', () => {
    const { path, bytes } = writeFixture('magic.snapshot');
    bytes.write('JUNKJUNK', 0, 'latin1');
    writeFileSync(path, bytes);
    expect(refusal(path)).toMatch(/not a device snapshot \(starts with "JUNKJUNK"/);
    expect(() => readSnapshotHeader(join(dir, 'absent.snapshot'))).toThrow(/cannot open: ENOENT/);
  });

  test('refuses another format version', () => {
    const { path, bytes } = writeFixture('format.snapshot');
    bytes.writeUInt32LE(7, 8);
    writeFileSync(path, bytes);
    expect(refusal(path)).toMatch(/snapshot format version 7; this engine reads version 1/);
  });

  test('refuses a snapshot built for another profile schema, naming both', () => {
    const { path } = writeFixture('schema.snapshot');
    const raw = JSON.parse(readFileSync(DEFAULT_PROFILE_SCHEMA_PATH, 'utf8'));
    const wider = parseProfileSchema({ ...raw, version: raw.version + 1, recordBytes: 40 });
    expect(refusal(path, wider)).toMatch(
      `built for profile schema version ${raw.version} (32-byte records), but the engine's schema is version ${raw.version + 1} (40-byte records); rebuild the snapshot`,
    );
    const edited = parseProfileSchema({ ...raw, fields: raw.fields.map((f: { name: string }) => (f.name === 'credit_band' ? { ...f, missing: 9 } : f)) });
    expect(refusal(path, edited)).toMatch(/another field layout of profile schema version 1 .* edited without bumping its version/);
  });

  test('refuses a corrupt byte through the checksum', () => {
    const { path, bytes } = writeFixture('corrupt.snapshot');
    bytes[bytes.length - 5]! ^= 0x40;
    writeFileSync(path, bytes);
    expect(refusal(path)).toMatch(/checksum mismatch, the file is corrupt/);
  });

  test('refuses a header whose counts disagree with its length', () => {
    const { path, bytes } = writeFixture('counts.snapshot');
    bytes.writeUInt32LE(DEVICES + 1, 44);
    writeFileSync(path, bytes);
    expect(refusal(path)).toMatch(/header says the file is \d+ bytes, but its counts add up to \d+/);
  });

  test('refuses a table pointing past the records even when the checksum was recomputed', () => {
    const { path, bytes } = writeFixture('defect.snapshot');
    const table = bytes.subarray(SNAPSHOT_HEADER_BYTES, bytes.length - DEVICES * schema.recordBytes);
    let slot = 0;
    while (table.readUInt32LE(slot * 20 + 16) === 0) slot++;
    table.writeUInt32LE(DEVICES + 7, slot * 20 + 16);
    writeFileSync(path, resealed(bytes));
    expect(refusal(path)).toMatch(new RegExp(`key table slot ${slot} points at record ${DEVICES + 6}, but there are only ${DEVICES} devices`));
  });
});
