import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { EmbeddedDeviceStore, findTableDefect, MAX_LOAD_FACTOR, SLOT_BYTES } from './embedded.js';
import { LAYOUT_FINGERPRINT_BYTES, profileLayoutFingerprint } from './layout-fingerprint.js';
import type { ProfileSchema } from './profile-schema.js';

/**
 * The device snapshot file (layout documented in data/README.md): an 88-byte header, then the key table and the
 * records exactly as the store holds them in memory, so loading is reading straight into the shared buffers.
 * Everything little-endian.
 */
export const SNAPSHOT_MAGIC = 'RTADEVS\0';
export const SNAPSHOT_FORMAT_VERSION = 1;
export const SNAPSHOT_HEADER_BYTES = 88;
/** The checksum covers the header up to itself, then the body. */
const CHECKSUM_OFFSET = 56;
const IO_CHUNK_BYTES = 64 * 1024 * 1024;

export class SnapshotError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`device snapshot ${path}: ${message}`);
    this.name = 'SnapshotError';
  }
}

export interface SnapshotHeader {
  formatVersion: number;
  schemaVersion: number;
  recordBytes: number;
  layoutFingerprint: string;
  tableCapacity: number;
  keyCount: number;
  deviceCount: number;
  fileBytes: number;
  /** SHA-256, hex. */
  checksum: string;
}

export interface SnapshotWritten {
  header: SnapshotHeader;
  millis: number;
}

export interface SnapshotLoaded {
  store: EmbeddedDeviceStore;
  header: SnapshotHeader;
  /** Wall time to read, checksum and check the file. */
  millis: number;
}

/** Writes the store to `path` atomically (a temporary file renamed over it), so a reader never sees half a file. */
export function writeSnapshot(store: EmbeddedDeviceStore, path: string): SnapshotWritten {
  const started = process.hrtime.bigint();
  const table = store.tableBytes;
  const records = store.records.subarray(0, store.deviceCount * store.recordBytes);
  const fileBytes = SNAPSHOT_HEADER_BYTES + table.length + records.length;
  const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  const view = new DataView(header.buffer);
  header.set(Buffer.from(SNAPSHOT_MAGIC, 'latin1'), 0);
  view.setUint32(8, SNAPSHOT_FORMAT_VERSION, true);
  view.setUint32(12, SNAPSHOT_HEADER_BYTES, true);
  view.setUint32(16, store.schemaVersion, true);
  view.setUint32(20, store.recordBytes, true);
  header.set(Buffer.from(store.layoutFingerprint, 'hex'), 24);
  view.setUint32(32, SLOT_BYTES, true);
  view.setUint32(36, store.tableCapacity, true);
  view.setUint32(40, store.keyCount, true);
  view.setUint32(44, store.deviceCount, true);
  view.setBigUint64(48, BigInt(fileBytes), true);
  const checksum = createHash('sha256').update(header.subarray(0, CHECKSUM_OFFSET)).update(table).update(records).digest();
  header.set(checksum, CHECKSUM_OFFSET);

  const temporary = `${path}.${process.pid}.tmp`;
  const fd = openSync(temporary, 'w');
  try {
    for (const section of [header, table, records]) writeFully(fd, section);
  } catch (error) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw error;
  }
  closeSync(fd);
  renameSync(temporary, path);
  return { header: parseHeader(path, header, fileBytes), millis: elapsedMillis(started) };
}

/** Reads and checks the header only: cheap, for "is this snapshot already there" checks. */
export function readSnapshotHeader(path: string): SnapshotHeader {
  const fd = openSnapshot(path);
  try {
    return readHeader(path, fd).header;
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads a snapshot into a fresh read-only store. Refuses, with the reason, a file that is not a snapshot, was built
 * for another profile schema, is truncated or longer than its header says, fails its checksum, or holds a table
 * whose references do not add up.
 */
export function loadSnapshot(path: string, schema: ProfileSchema): SnapshotLoaded {
  const started = process.hrtime.bigint();
  const fd = openSnapshot(path);
  try {
    const { header, raw } = readHeader(path, fd);
    const mismatch = schemaMismatch(header, schema);
    if (mismatch) throw new SnapshotError(path, mismatch);
    const table = new SharedArrayBuffer(header.tableCapacity * SLOT_BYTES);
    const records = new SharedArrayBuffer(header.deviceCount * header.recordBytes);
    const hash = createHash('sha256').update(raw.subarray(0, CHECKSUM_OFFSET));
    readFully(path, fd, new Uint8Array(table), SNAPSHOT_HEADER_BYTES, hash);
    readFully(path, fd, new Uint8Array(records), SNAPSHOT_HEADER_BYTES + table.byteLength, hash);
    const actual = hash.digest('hex');
    if (actual !== header.checksum)
      throw new SnapshotError(path, `checksum mismatch, the file is corrupt (header says ${header.checksum}, content hashes to ${actual})`);
    const defect = findTableDefect(table, header.deviceCount, header.keyCount);
    if (defect) throw new SnapshotError(path, defect);
    const store = EmbeddedDeviceStore.open({ ...header, version: `snapshot-${header.checksum.slice(0, 12)}`, table, records }, schema);
    return { store, header, millis: elapsedMillis(started) };
  } finally {
    closeSync(fd);
  }
}

function schemaMismatch(header: SnapshotHeader, schema: ProfileSchema): string | undefined {
  if (header.schemaVersion !== schema.version || header.recordBytes !== schema.recordBytes)
    return `built for profile schema version ${header.schemaVersion} (${header.recordBytes}-byte records), but the engine's schema is version ${schema.version} (${schema.recordBytes}-byte records); rebuild the snapshot`;
  const fingerprint = profileLayoutFingerprint(schema);
  if (header.layoutFingerprint !== fingerprint)
    return `built for another field layout of profile schema version ${schema.version} (layout ${header.layoutFingerprint}, engine ${fingerprint}): the schema was edited without bumping its version; rebuild the snapshot`;
  return undefined;
}

function openSnapshot(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (error) {
    throw new SnapshotError(path, `cannot open: ${(error as Error).message}`);
  }
}

function readHeader(path: string, fd: number): { header: SnapshotHeader; raw: Uint8Array } {
  const size = fstatSync(fd).size;
  if (size < SNAPSHOT_HEADER_BYTES)
    throw new SnapshotError(path, `truncated: ${size} bytes, shorter than the ${SNAPSHOT_HEADER_BYTES}-byte header`);
  const raw = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  readFully(path, fd, raw, 0);
  return { header: parseHeader(path, raw, size), raw };
}

function parseHeader(path: string, header: Uint8Array, fileSize: number): SnapshotHeader {
  const magic = Buffer.from(header.subarray(0, 8)).toString('latin1');
  if (magic !== SNAPSHOT_MAGIC)
    throw new SnapshotError(path, `not a device snapshot (starts with ${JSON.stringify(magic)}, expected ${JSON.stringify(SNAPSHOT_MAGIC)})`);
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const formatVersion = view.getUint32(8, true);
  if (formatVersion !== SNAPSHOT_FORMAT_VERSION)
    throw new SnapshotError(path, `snapshot format version ${formatVersion}; this engine reads version ${SNAPSHOT_FORMAT_VERSION}`);
  const headerBytes = view.getUint32(12, true);
  const slotBytes = view.getUint32(32, true);
  if (headerBytes !== SNAPSHOT_HEADER_BYTES || slotBytes !== SLOT_BYTES)
    throw new SnapshotError(path, `header declares ${headerBytes}-byte header and ${slotBytes}-byte slots; format ${SNAPSHOT_FORMAT_VERSION} has ${SNAPSHOT_HEADER_BYTES} and ${SLOT_BYTES}`);
  const parsed: SnapshotHeader = {
    formatVersion,
    schemaVersion: view.getUint32(16, true),
    recordBytes: view.getUint32(20, true),
    layoutFingerprint: Buffer.from(header.subarray(24, 24 + LAYOUT_FINGERPRINT_BYTES)).toString('hex'),
    tableCapacity: view.getUint32(36, true),
    keyCount: view.getUint32(40, true),
    deviceCount: view.getUint32(44, true),
    fileBytes: Number(view.getBigUint64(48, true)),
    checksum: Buffer.from(header.subarray(CHECKSUM_OFFSET, CHECKSUM_OFFSET + 32)).toString('hex'),
  };
  const { tableCapacity, keyCount, deviceCount, recordBytes, fileBytes } = parsed;
  if (tableCapacity === 0 || (tableCapacity & (tableCapacity - 1)) !== 0)
    throw new SnapshotError(path, `table capacity ${tableCapacity} is not a power of two`);
  if (keyCount > tableCapacity * MAX_LOAD_FACTOR || deviceCount > keyCount)
    throw new SnapshotError(path, `${deviceCount} devices and ${keyCount} keys do not fit a ${tableCapacity}-slot table`);
  const expected = SNAPSHOT_HEADER_BYTES + tableCapacity * SLOT_BYTES + deviceCount * recordBytes;
  if (fileBytes !== expected)
    throw new SnapshotError(path, `header says the file is ${fileBytes} bytes, but its counts add up to ${expected}`);
  if (fileSize < fileBytes)
    throw new SnapshotError(path, `truncated: ${fileSize} bytes, the header promises ${fileBytes} (${tableCapacity}-slot key table and ${deviceCount} records)`);
  if (fileSize > fileBytes) throw new SnapshotError(path, `${fileSize - fileBytes} unexpected bytes after the ${fileBytes} the header describes`);
  return parsed;
}

function readFully(path: string, fd: number, into: Uint8Array, position: number, hash?: ReturnType<typeof createHash>): void {
  for (let done = 0; done < into.length; ) {
    const chunk = into.subarray(done, Math.min(into.length, done + IO_CHUNK_BYTES));
    const read = readSync(fd, chunk, 0, chunk.length, position + done);
    if (read === 0) throw new SnapshotError(path, `ended early at byte ${position + done} (was it truncated while loading?)`);
    hash?.update(chunk.subarray(0, read));
    done += read;
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) {
    done += writeSync(fd, bytes, done, Math.min(IO_CHUNK_BYTES, bytes.length - done));
  }
}

function elapsedMillis(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}
