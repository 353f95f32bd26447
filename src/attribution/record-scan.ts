/**
 * Reads the few fields of a DecisionRecord (proto/log/decision_log.proto) that attribution needs, straight from
 * its bytes, into one reused object: attribution reads every record the engine writes, and decoding whole records
 * into fresh objects (reader.ts, made for people and tools) cost about as much as deciding them. Unknown fields
 * are skipped by wire type, as protobuf readers do.
 */
export interface ScannedRecord {
  timeMs: number;
  media: string;
  /** As reader.ts shows it: the text, or `hex:` and the bytes when they are not UTF-8. */
  traceId: string;
  test: boolean;
  /** Where the 16-byte device key starts in the record's bytes; -1 when the record has none. */
  deviceKeyAt: number;
  known: boolean;
  os: number;
  bookVersion: string;
  modelVersion: string;
  /** Where the packed float scores start in the record's bytes, and how many there are. */
  scoresAt: number;
  scoreCount: number;
  strategyCount: number;
  /** The first strategyCount entries are this record's; the arrays are reused by the next record. */
  strategyIds: string[];
  verdicts: number[];
  creativeIds: number[];
  armNames: string[];
}

export function scannedRecord(): ScannedRecord {
  return { timeMs: 0, media: '', traceId: '', test: false, deviceKeyAt: -1, known: false, os: 0, bookVersion: '', modelVersion: '', scoresAt: 0, scoreCount: 0, strategyCount: 0, strategyIds: [], verdicts: [], creativeIds: [], armNames: [] };
}

/** Fills `out` from the record in bytes[start..end); throws on bytes that are no record. */
export function scanDecisionRecord(bytes: Buffer, start: number, end: number, out: ScannedRecord): void {
  const r = new WireReader(bytes, start, end);
  out.timeMs = 0;
  out.media = out.traceId = out.bookVersion = out.modelVersion = '';
  out.test = out.known = false;
  out.deviceKeyAt = -1;
  out.os = 0;
  out.scoresAt = out.scoreCount = out.strategyCount = 0;
  while (r.at < end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 0) out.timeMs = r.varint();
    else if (field === 2 && wire === 2) out.media = r.text();
    else if (field === 3 && wire === 2) out.traceId = r.traceId();
    else if (field === 4 && wire === 2) {
      const length = r.varint();
      if (length === 16) out.deviceKeyAt = r.at;
      r.skipBytes(length);
    } else if (field === 6 && wire === 0) out.os = r.varint();
    else if (field === 8 && wire === 0) out.known = r.varint() !== 0;
    else if (field === 9 && wire === 0) out.test = r.varint() !== 0;
    else if (field === 16 && wire === 2) out.bookVersion = r.text();
    else if (field === 17 && wire === 2) out.modelVersion = r.text();
    else if (field === 21 && wire === 2) scanVerdict(r, out);
    else if (field === 23 && wire === 2) {
      const length = r.varint();
      out.scoresAt = r.at;
      out.scoreCount = length >>> 2;
      r.skipBytes(length);
    } else r.skip(wire);
  }
}

function scanVerdict(r: WireReader, out: ScannedRecord): void {
  const length = r.varint();
  const end = r.at + length;
  const i = out.strategyCount++;
  out.strategyIds[i] = out.armNames[i] = '';
  out.verdicts[i] = out.creativeIds[i] = 0;
  while (r.at < end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 2) out.strategyIds[i] = r.text();
    else if (field === 2 && wire === 0) out.verdicts[i] = r.varint();
    else if (field === 6 && wire === 0) out.creativeIds[i] = r.varint();
    else if (field === 9 && wire === 2) out.armNames[i] = r.text();
    else r.skip(wire);
  }
}

/** The float at `index` of a record's packed scores (little-endian, as protobuf writes them). */
export function scoreAt(bytes: Buffer, record: ScannedRecord, index: number): number {
  return index >= 0 && index < record.scoreCount ? bytes.readFloatLE(record.scoresAt + index * 4) : NaN;
}

/**
 * Texts by their bytes: a hit returns the same string object each time, which also lets Map lookups keyed by it
 * reuse its cached hash. Bounded: emptied when full, for a book that names more texts than it holds.
 */
class TextCache {
  private readonly entries = new Map<number, { bytes: Uint8Array; text: string }>();

  constructor(private readonly capacity: number) {}

  text(bytes: Buffer, start: number, end: number): string {
    // FNV-1a over the bytes.
    let hash = 0x811c9dc5;
    for (let i = start; i < end; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
    hash = (hash ^ (end - start)) >>> 0;
    const found = this.entries.get(hash);
    if (found && found.bytes.length === end - start && sameBytes(found.bytes, bytes, start)) return found.text;
    const text = bytes.toString('utf8', start, end);
    if (this.entries.size >= this.capacity) this.entries.clear();
    this.entries.set(hash, { bytes: Uint8Array.prototype.slice.call(bytes, start, end), text });
    return text;
  }
}

function sameBytes(kept: Uint8Array, bytes: Buffer, start: number): boolean {
  for (let i = 0; i < kept.length; i++) if (kept[i] !== bytes[start + i]) return false;
  return true;
}

const TEXTS = new TextCache(4096);

class WireReader {
  constructor(
    private readonly bytes: Buffer,
    public at: number,
    private readonly end: number,
  ) {}

  /** Up to 2^53: times in ms and creative ids fit. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (this.at >= this.end) throw new Error('decision record: a varint runs past the record');
      const byte = this.bytes[this.at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
      if (scale > 2 ** 63) throw new Error('decision record: a varint longer than 10 bytes');
    }
  }

  /** Media, versions, strategy ids and arms: the same few texts in every record, so decoded once each. */
  text(): string {
    const length = this.varint();
    this.skipBytes(length);
    return TEXTS.text(this.bytes, this.at - length, this.at);
  }

  traceId(): string {
    const length = this.varint();
    this.skipBytes(length);
    const text = this.bytes.toString('utf8', this.at - length, this.at);
    return text.includes('\uFFFD') ? `hex:${this.bytes.toString('hex', this.at - length, this.at)}` : text;
  }

  skipBytes(length: number): void {
    if (this.at + length > this.end) throw new Error('decision record: a field runs past the record');
    this.at += length;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.skipBytes(8);
    else if (wire === 2) this.skipBytes(this.varint());
    else if (wire === 5) this.skipBytes(4);
    else throw new Error(`decision record: wire type ${wire} is not one the log writes`);
  }
}
