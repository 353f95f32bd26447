import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { DuplicateDeviceKeyError, EmbeddedDeviceStore, MAX_LOAD_FACTOR } from '../../src/store/embedded.js';
import { ProfileRecordWriter } from '../../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, parseProfileSchema, readField } from '../../src/store/profile-schema.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const creditBand = schema.field('credit_band');

function md5Key(text: string): Uint8Array {
  return createHash('md5').update(text).digest();
}

function recordWithCreditBand(band: number): Uint8Array {
  const writer = new ProfileRecordWriter(schema);
  expect(writer.write(creditBand, band)).toBeUndefined();
  return writer.record.slice();
}

function concat(...keys: Uint8Array[]): Uint8Array {
  return Buffer.concat(keys);
}

/** A key whose first four bytes (the home slot) are fixed, the rest varying. */
function keyWithPrefix(prefix: number, tail: number): Uint8Array {
  const key = new Uint8Array(16);
  new DataView(key.buffer).setUint32(0, prefix >>> 0, true);
  new DataView(key.buffer).setUint32(12, tail, true);
  return key;
}

describe('EmbeddedDeviceStore', () => {
  test('finds each device by every one of its keys, and misses unknown keys', () => {
    const store = EmbeddedDeviceStore.create(schema);
    const oaid = md5Key('oaid-1');
    const imei = md5Key('imei-1');
    const idfa = md5Key('idfa-2');
    expect(store.addDevice(recordWithCreditBand(1), concat(oaid, imei))).toBe(0);
    expect(store.addDevice(recordWithCreditBand(4), idfa)).toBe(1);

    expect(store.deviceCount).toBe(2);
    expect(store.keyCount).toBe(3);
    expect(store.recordBytes).toBe(schema.recordBytes);
    expect(store.schemaVersion).toBe(schema.version);
    expect(store.find(oaid, 0)).toBe(0);
    expect(store.find(imei, 0)).toBe(0);
    expect(store.find(idfa, 0)).toBe(schema.recordBytes);
    expect(readField(store.records, store.find(imei, 0), creditBand)).toBe(1);
    expect(readField(store.records, store.find(idfa, 0), creditBand)).toBe(4);
    expect(store.find(md5Key('never-added'), 0)).toBe(-1);
  });

  test('reads the key at an offset inside a larger buffer', () => {
    const store = EmbeddedDeviceStore.create(schema);
    const key = md5Key('x');
    store.addDevice(recordWithCreditBand(2), key);
    const request = new Uint8Array(40);
    request.set(key, 7);
    expect(store.find(request, 7)).toBe(0);
    expect(store.find(request, 6)).toBe(-1);
  });

  test('keys sharing the home slot (same first bytes) probe past each other, also across the table end', () => {
    const store = EmbeddedDeviceStore.create(schema);
    const capacity = store.tableCapacity;
    // Home slot = last slot of the table, so the colliding keys wrap around to slot 0 onwards.
    const colliding = [0, 1, 2, 3].map((tail) => keyWithPrefix(capacity - 1, tail));
    colliding.forEach((key, i) => store.addDevice(recordWithCreditBand(i + 1), key));
    // Same four prefix bytes as an existing key but different tail: a miss, not a false hit.
    expect(store.find(keyWithPrefix(capacity - 1, 99), 0)).toBe(-1);
    colliding.forEach((key, i) => {
      expect(store.find(key, 0)).toBe(i * schema.recordBytes);
      expect(readField(store.records, store.find(key, 0), creditBand)).toBe(i + 1);
    });
    // A key whose home slot is slot 0, now occupied by a wrapped neighbour, still lands and is found.
    const atZero = keyWithPrefix(0, 5);
    store.addDevice(recordWithCreditBand(5), atZero);
    expect(store.find(atZero, 0)).toBe(4 * schema.recordBytes);
  });

  test('grows past its initial size, keeping the load factor bounded and every key findable', () => {
    const store = EmbeddedDeviceStore.create(schema);
    const initialCapacity = store.tableCapacity;
    const record = recordWithCreditBand(3);
    for (let i = 0; i < 5000; i++) store.addDevice(record, concat(md5Key(`a${i}`), md5Key(`b${i}`)));
    expect(store.tableCapacity).toBeGreaterThan(initialCapacity);
    expect(store.keyCount / store.tableCapacity).toBeLessThanOrEqual(MAX_LOAD_FACTOR);
    for (let i = 0; i < 5000; i++) {
      expect(store.find(md5Key(`a${i}`), 0)).toBe(i * schema.recordBytes);
      expect(store.find(md5Key(`b${i}`), 0)).toBe(i * schema.recordBytes);
    }
    expect(store.find(md5Key('a5000'), 0)).toBe(-1);
  });

  test('refuses a key that is taken, before changing anything', () => {
    const store = EmbeddedDeviceStore.create(schema);
    const taken = md5Key('taken');
    store.addDevice(recordWithCreditBand(1), taken);
    const fresh = md5Key('fresh');
    let error: unknown;
    try {
      store.addDevice(recordWithCreditBand(2), concat(fresh, taken));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(DuplicateDeviceKeyError);
    expect((error as DuplicateDeviceKeyError).keyIndex).toBe(1);
    expect((error as DuplicateDeviceKeyError).existingRecordIndex).toBe(0);
    expect(store.find(fresh, 0)).toBe(-1);
    expect(store.deviceCount).toBe(1);
    expect(store.keyCount).toBe(1);
    expect(() => store.addDevice(recordWithCreditBand(2), concat(fresh, fresh))).toThrow(/repeats an earlier key of the same device/);
  });

  test('refuses malformed records and key lists', () => {
    const store = EmbeddedDeviceStore.create(schema);
    expect(() => store.addDevice(new Uint8Array(schema.recordBytes - 1), md5Key('k'))).toThrow(/record is 32 bytes/);
    expect(() => store.addDevice(recordWithCreditBand(1), new Uint8Array(0))).toThrow(/one or more 16-byte keys/);
    expect(() => store.addDevice(recordWithCreditBand(1), new Uint8Array(20))).toThrow(/one or more 16-byte keys/);
  });

  test('sharing freezes the store; reopening checks the profile layout', () => {
    const store = EmbeddedDeviceStore.create(schema);
    store.addDevice(recordWithCreditBand(1), md5Key('k'));
    const buffers = store.shareBuffers();
    expect(() => store.addDevice(recordWithCreditBand(1), md5Key('other'))).toThrow(/shared with other threads/);

    const reopened = EmbeddedDeviceStore.open(buffers, schema);
    expect(reopened.find(md5Key('k'), 0)).toBe(0);
    expect(reopened.memoryBytes).toBe(store.memoryBytes);
    expect(() => reopened.addDevice(recordWithCreditBand(1), md5Key('other'))).toThrow(/read-only/);

    const raw = JSON.parse(JSON.stringify({ ...schema, fields: schema.fields }));
    const nextVersion = parseProfileSchema({ ...raw, version: schema.version + 1 });
    expect(() => EmbeddedDeviceStore.open(buffers, nextVersion)).toThrow(
      `built for profile schema version ${schema.version} (32-byte records), but this schema is version ${schema.version + 1}`,
    );
    const moved = parseProfileSchema({
      ...raw,
      fields: raw.fields.map((f: { name: string }) => (f.name === 'region_tier' ? { ...f, missing: 9 } : f)),
    });
    expect(() => EmbeddedDeviceStore.open(buffers, moved)).toThrow(/edited without bumping its version/);
    expect(() => EmbeddedDeviceStore.open({ ...buffers, keyCount: buffers.tableCapacity }, schema)).toThrow(/exceed the load factor/);
  });
});
