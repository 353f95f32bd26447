import { endianness } from 'node:os';
import { DEVICE_KEY_BYTES } from './device-key.js';
import { profileLayoutFingerprint } from './layout-fingerprint.js';
import type { ProfileSchema } from './profile-schema.js';

/**
 * The embedded device store: every profile record resident in memory, keyed by 16-byte MD5 device keys.
 *
 * Two SharedArrayBuffers hold everything, so worker threads read profiles through the very same memory:
 * - the key table: open addressing with linear probing, one 20-byte slot per entry = the 16 key bytes followed by
 *   a u32 (record index + 1). 0 marks an empty slot, so a freshly allocated (zeroed) buffer is an empty table.
 *   MD5 is already uniform, so the key's first four bytes (little-endian) masked to the power-of-two capacity are
 *   the home slot; no further hashing.
 * - the records: fixed-width profile records (data/profile-schema.json) one after another, in insertion order.
 * Several keys may point at one record (a device known by its OAID and its IMEI).
 */

/** 16 key bytes + u32 record reference. Key and reference share a cache line, so a probe costs one memory access. */
export const SLOT_BYTES = 20;
const SLOT_WORDS = SLOT_BYTES / 4;
const REF_WORD = 4;

/** Below this load linear probing stays a couple of slots long even for misses; the capacity doubles past it. */
export const MAX_LOAD_FACTOR = 0.7;
const MIN_TABLE_CAPACITY = 16;
/** Node caps one buffer at 4 GiB: 2^27 slots x 20 bytes is the largest power-of-two table that fits. */
const MAX_TABLE_CAPACITY = 2 ** 27;
const MAX_BUFFER_BYTES = 2 ** 32;
const MIN_RECORD_CAPACITY = 64;

// Keys are compared as four little-endian int32 words read through an Int32Array view of the table.
if (endianness() !== 'LE') throw new Error('EmbeddedDeviceStore assumes a little-endian CPU (x64, arm64)');

/** Everything a worker thread needs to reopen the store over the same memory; structured-clone safe. */
export interface SharedDeviceStoreBuffers {
  /** Which device data this is, for the decision log and explain: the snapshot's checksum prefix, or "built". */
  version: string;
  schemaVersion: number;
  recordBytes: number;
  layoutFingerprint: string;
  deviceCount: number;
  keyCount: number;
  tableCapacity: number;
  table: SharedArrayBuffer;
  records: SharedArrayBuffer;
}

export class DuplicateDeviceKeyError extends Error {
  constructor(
    /** Which of the keys passed to addDevice (0-based). */
    readonly keyIndex: number,
    /** Record index of the device that already owns the key, or -1 when the same key was passed twice. */
    readonly existingRecordIndex: number,
  ) {
    super(
      existingRecordIndex < 0
        ? `device key #${keyIndex} repeats an earlier key of the same device`
        : `device key #${keyIndex} already belongs to record ${existingRecordIndex}`,
    );
    this.name = 'DuplicateDeviceKeyError';
  }
}

export class EmbeddedDeviceStore {
  readonly schema: ProfileSchema;
  readonly recordBytes: number;
  readonly layoutFingerprint: string;
  readonly version: string;
  private table: SharedArrayBuffer;
  private slots: Int32Array;
  private mask: number;
  private recordBuffer: SharedArrayBuffer;
  private recordArray: Uint8Array;
  private devices: number;
  private keys: number;
  /** Set once the buffers are handed out (or the store was reopened over them): growing would leave readers behind. */
  private frozenBecause: string | undefined;

  private constructor(schema: ProfileSchema, buffers: SharedDeviceStoreBuffers, frozenBecause: string | undefined) {
    this.schema = schema;
    this.recordBytes = schema.recordBytes;
    this.layoutFingerprint = buffers.layoutFingerprint;
    this.version = buffers.version;
    this.table = buffers.table;
    this.slots = new Int32Array(buffers.table);
    this.mask = buffers.tableCapacity - 1;
    this.recordBuffer = buffers.records;
    this.recordArray = new Uint8Array(buffers.records);
    this.devices = buffers.deviceCount;
    this.keys = buffers.keyCount;
    this.frozenBecause = frozenBecause;
  }

  /** An empty, writable store. `expected` sizes the buffers up front so a build of known size never regrows. */
  static create(schema: ProfileSchema, expected: { devices: number; keys: number } = { devices: 0, keys: 0 }): EmbeddedDeviceStore {
    const tableCapacity = tableCapacityFor(expected.keys);
    const recordCapacity = Math.max(MIN_RECORD_CAPACITY, expected.devices);
    return new EmbeddedDeviceStore(
      schema,
      {
        version: 'built',
        schemaVersion: schema.version,
        recordBytes: schema.recordBytes,
        layoutFingerprint: profileLayoutFingerprint(schema),
        deviceCount: 0,
        keyCount: 0,
        tableCapacity,
        table: new SharedArrayBuffer(tableCapacity * SLOT_BYTES),
        records: new SharedArrayBuffer(recordBytesFor(recordCapacity, schema.recordBytes)),
      },
      undefined,
    );
  }

  /**
   * Reopens a store over buffers from `shareBuffers()` (another thread) or a snapshot. Read-only. Refuses buffers
   * built for another profile layout, and sizes that do not add up.
   */
  static open(buffers: SharedDeviceStoreBuffers, schema: ProfileSchema): EmbeddedDeviceStore {
    const problem = layoutMismatch(buffers, schema) ?? sizeProblem(buffers);
    if (problem) throw new Error(`cannot open device store: ${problem}`);
    return new EmbeddedDeviceStore(schema, buffers, 'it was opened over existing buffers, which are read-only');
  }

  get deviceCount(): number {
    return this.devices;
  }

  get keyCount(): number {
    return this.keys;
  }

  get schemaVersion(): number {
    return this.schema.version;
  }

  get tableCapacity(): number {
    return this.mask + 1;
  }

  /** Profile records; `find` returns byte offsets into this. Replaced when a writable store grows. */
  get records(): Uint8Array {
    return this.recordArray;
  }

  /** The key table bytes (for the snapshot writer). */
  get tableBytes(): Uint8Array {
    return new Uint8Array(this.table);
  }

  /** Bytes held by the two shared buffers (spare capacity included). */
  get memoryBytes(): number {
    return this.table.byteLength + this.recordBuffer.byteLength;
  }

  /**
   * Byte offset in `records` of the device owning the 16-byte key at key[keyOffset], or -1. Allocation-free.
   * The caller guarantees 16 bytes at keyOffset (adapters validate keys at the edge).
   */
  find(key: Uint8Array, keyOffset: number): number {
    const k0 = key[keyOffset]! | (key[keyOffset + 1]! << 8) | (key[keyOffset + 2]! << 16) | (key[keyOffset + 3]! << 24);
    const k1 = key[keyOffset + 4]! | (key[keyOffset + 5]! << 8) | (key[keyOffset + 6]! << 16) | (key[keyOffset + 7]! << 24);
    const k2 = key[keyOffset + 8]! | (key[keyOffset + 9]! << 8) | (key[keyOffset + 10]! << 16) | (key[keyOffset + 11]! << 24);
    const k3 = key[keyOffset + 12]! | (key[keyOffset + 13]! << 8) | (key[keyOffset + 14]! << 16) | (key[keyOffset + 15]! << 24);
    const slots = this.slots;
    const mask = this.mask;
    let slot = k0 & mask;
    for (;;) {
      const at = slot * SLOT_WORDS;
      const ref = slots[at + REF_WORD]!;
      if (ref === 0) return -1;
      if (slots[at] === k0 && slots[at + 1] === k1 && slots[at + 2] === k2 && slots[at + 3] === k3) {
        return (ref - 1) * this.recordBytes;
      }
      slot = (slot + 1) & mask;
    }
  }

  /**
   * Appends one device: its record (exactly recordBytes) and its keys (16 bytes each, back to back, at least one).
   * Returns the record index. Throws DuplicateDeviceKeyError, before changing anything, when a key is taken.
   */
  addDevice(record: Uint8Array, keys: Uint8Array): number {
    if (this.frozenBecause) throw new Error(`cannot add devices to this store: ${this.frozenBecause}`);
    if (record.length !== this.recordBytes)
      throw new Error(`a profile record is ${this.recordBytes} bytes (schema version ${this.schema.version}), got ${record.length}`);
    if (keys.length === 0 || keys.length % DEVICE_KEY_BYTES !== 0)
      throw new Error(`device keys must be one or more 16-byte keys back to back, got ${keys.length} bytes`);
    const keyTotal = keys.length / DEVICE_KEY_BYTES;
    for (let i = 0; i < keyTotal; i++) {
      const offset = this.find(keys, i * DEVICE_KEY_BYTES);
      if (offset >= 0) throw new DuplicateDeviceKeyError(i, offset / this.recordBytes);
      for (let j = 0; j < i; j++) {
        if (sameKey(keys, i * DEVICE_KEY_BYTES, keys, j * DEVICE_KEY_BYTES)) throw new DuplicateDeviceKeyError(i, -1);
      }
    }
    this.reserveRecord();
    this.reserveKeys(keyTotal);
    const index = this.devices;
    this.recordArray.set(record, index * this.recordBytes);
    for (let i = 0; i < keyTotal; i++) placeKey(this.slots, this.mask, keys, i * DEVICE_KEY_BYTES, index + 1);
    this.devices++;
    this.keys += keyTotal;
    return index;
  }

  /**
   * The buffers and counts a worker thread needs for `EmbeddedDeviceStore.open`. Freezes this store: a later
   * addDevice could regrow into new buffers the workers would never see.
   */
  shareBuffers(): SharedDeviceStoreBuffers {
    this.frozenBecause ??= 'its buffers are shared with other threads; build a new store instead';
    return {
      version: this.version,
      schemaVersion: this.schema.version,
      recordBytes: this.recordBytes,
      layoutFingerprint: this.layoutFingerprint,
      deviceCount: this.devices,
      keyCount: this.keys,
      tableCapacity: this.tableCapacity,
      table: this.table,
      records: this.recordBuffer,
    };
  }

  private reserveRecord(): void {
    const needed = (this.devices + 1) * this.recordBytes;
    if (needed <= this.recordBuffer.byteLength) return;
    const grown = new SharedArrayBuffer(recordBytesFor(Math.max(MIN_RECORD_CAPACITY, this.devices * 2), this.recordBytes));
    const view = new Uint8Array(grown);
    view.set(this.recordArray.subarray(0, this.devices * this.recordBytes));
    this.recordBuffer = grown;
    this.recordArray = view;
  }

  private reserveKeys(adding: number): void {
    const capacity = tableCapacityFor(this.keys + adding);
    if (capacity <= this.tableCapacity) return;
    const table = new SharedArrayBuffer(capacity * SLOT_BYTES);
    const slots = new Int32Array(table);
    const oldBytes = new Uint8Array(this.table);
    const old = this.slots;
    for (let at = 0; at < old.length; at += SLOT_WORDS) {
      if (old[at + REF_WORD] !== 0) placeKey(slots, capacity - 1, oldBytes, at * 4, old[at + REF_WORD]!);
    }
    this.table = table;
    this.slots = slots;
    this.mask = capacity - 1;
  }
}

/** Smallest power-of-two table keeping `keys` within the load factor. */
function tableCapacityFor(keys: number): number {
  let capacity = MIN_TABLE_CAPACITY;
  while (keys > capacity * MAX_LOAD_FACTOR) capacity *= 2;
  if (capacity > MAX_TABLE_CAPACITY)
    throw new Error(`${keys} device keys exceed one embedded store (at most ${Math.floor(MAX_TABLE_CAPACITY * MAX_LOAD_FACTOR)})`);
  return capacity;
}

/**
 * Checks what a file-sourced table must satisfy before lookups can trust it: every slot's reference names an
 * existing record, and the number of filled slots is the key count. Returns the first defect, or undefined.
 */
export function findTableDefect(table: SharedArrayBuffer, deviceCount: number, keyCount: number): string | undefined {
  const refs = new Uint32Array(table);
  let filled = 0;
  for (let at = REF_WORD; at < refs.length; at += SLOT_WORDS) {
    const ref = refs[at]!;
    if (ref === 0) continue;
    if (ref > deviceCount)
      return `key table slot ${(at - REF_WORD) / SLOT_WORDS} points at record ${ref - 1}, but there are only ${deviceCount} devices`;
    filled++;
  }
  return filled === keyCount ? undefined : `key table holds ${filled} keys, but the header says ${keyCount}`;
}

function recordBytesFor(devices: number, recordBytes: number): number {
  const bytes = devices * recordBytes;
  if (bytes > MAX_BUFFER_BYTES)
    throw new Error(`${devices} devices of ${recordBytes} bytes exceed one embedded store (4 GiB of records)`);
  return bytes;
}

function layoutMismatch(buffers: SharedDeviceStoreBuffers, schema: ProfileSchema): string | undefined {
  if (buffers.schemaVersion !== schema.version || buffers.recordBytes !== schema.recordBytes)
    return `built for profile schema version ${buffers.schemaVersion} (${buffers.recordBytes}-byte records), but this schema is version ${schema.version} (${schema.recordBytes}-byte records)`;
  const fingerprint = profileLayoutFingerprint(schema);
  if (buffers.layoutFingerprint !== fingerprint)
    return `built for a different field layout of profile schema version ${schema.version} (layout ${buffers.layoutFingerprint}, this schema ${fingerprint}): the schema was edited without bumping its version`;
  return undefined;
}

function sizeProblem(buffers: SharedDeviceStoreBuffers): string | undefined {
  const { tableCapacity, keyCount, deviceCount, recordBytes } = buffers;
  if (!Number.isInteger(tableCapacity) || tableCapacity < MIN_TABLE_CAPACITY || tableCapacity > MAX_TABLE_CAPACITY || (tableCapacity & (tableCapacity - 1)) !== 0)
    return `table capacity ${tableCapacity} is not a power of two in ${MIN_TABLE_CAPACITY}..${MAX_TABLE_CAPACITY}`;
  if (buffers.table.byteLength !== tableCapacity * SLOT_BYTES)
    return `key table buffer is ${buffers.table.byteLength} bytes, expected ${tableCapacity} slots x ${SLOT_BYTES}`;
  // Also what guarantees an empty slot, hence that a miss terminates.
  if (!Number.isInteger(keyCount) || keyCount < 0 || keyCount > tableCapacity * MAX_LOAD_FACTOR)
    return `${keyCount} keys in a table of ${tableCapacity} slots exceed the load factor ${MAX_LOAD_FACTOR}`;
  if (!Number.isInteger(deviceCount) || deviceCount < 0 || deviceCount * recordBytes > buffers.records.byteLength)
    return `${deviceCount} devices of ${recordBytes} bytes do not fit the ${buffers.records.byteLength}-byte record buffer`;
  if (deviceCount > keyCount) return `${deviceCount} devices but only ${keyCount} keys: every device has at least one key`;
  return undefined;
}

function placeKey(slots: Int32Array, mask: number, key: Uint8Array, keyOffset: number, ref: number): void {
  const k0 = key[keyOffset]! | (key[keyOffset + 1]! << 8) | (key[keyOffset + 2]! << 16) | (key[keyOffset + 3]! << 24);
  let slot = k0 & mask;
  while (slots[slot * SLOT_WORDS + REF_WORD] !== 0) slot = (slot + 1) & mask;
  const at = slot * SLOT_WORDS;
  slots[at] = k0;
  slots[at + 1] = key[keyOffset + 4]! | (key[keyOffset + 5]! << 8) | (key[keyOffset + 6]! << 16) | (key[keyOffset + 7]! << 24);
  slots[at + 2] = key[keyOffset + 8]! | (key[keyOffset + 9]! << 8) | (key[keyOffset + 10]! << 16) | (key[keyOffset + 11]! << 24);
  slots[at + 3] = key[keyOffset + 12]! | (key[keyOffset + 13]! << 8) | (key[keyOffset + 14]! << 16) | (key[keyOffset + 15]! << 24);
  slots[at + REF_WORD] = ref;
}

function sameKey(a: Uint8Array, aOffset: number, b: Uint8Array, bOffset: number): boolean {
  for (let i = 0; i < DEVICE_KEY_BYTES; i++) if (a[aOffset + i] !== b[bOffset + i]) return false;
  return true;
}
