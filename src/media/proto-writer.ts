/**
 * Writes protobuf fields straight into a fixed block: the decision log's records and the media's replies.
 * protobufjs's Writer builds a list of operations and allocates per message; here a message costs stores into
 * memory already there. The caller makes sure the message fits before writing it (an upper bound from its
 * strings' lengths, see DecisionLogRecorder.record): a store past a typed array's end would be dropped, but it
 * also throws V8's optimised code away, which costs more than the check.
 *
 * `uint`, `float32`, `string` and `bytesField` leave a default value out, as proto3 does; the `set` variants write
 * it, as a proto2 encoder does for an optional field that was set.
 */
/** One float's bytes, shared: a writer per reply would otherwise allocate two typed arrays for it. */
const FLOAT = new Float32Array(1);
const FLOAT_BYTES = new Uint8Array(FLOAT.buffer);

export class ProtoWriter {
  pos = 0;

  constructor(readonly bytes: Buffer) {}

  get free(): number {
    return this.bytes.length - this.pos;
  }

  /** Non-negative integers up to 2^53. */
  varint(value: number): void {
    const b = this.bytes;
    let v = value;
    while (v > 127) {
      b[this.pos++] = (v & 127) | 128;
      v = v > 0xffffffff ? Math.floor(v / 128) : v >>> 7;
    }
    b[this.pos++] = v;
  }

  uint(field: number, value: number): void {
    if (value !== 0) this.setUint(field, value);
  }

  setUint(field: number, value: number): void {
    this.tag(field, 0);
    this.varint(value);
  }

  setFloat32(field: number, value: number): void {
    this.tag(field, 5);
    this.rawFloat(value);
  }

  setString(field: number, value: string): void {
    this.tag(field, 2);
    const start = this.begin();
    // One call into Node's UTF-8 writer: a loop over the characters cost ~70 instructions each in the served engine.
    this.pos += this.bytes.write(value, this.pos);
    this.end(start);
  }

  bool(field: number, value: boolean): void {
    if (!value) return;
    this.tag(field, 0);
    this.bytes[this.pos++] = 1;
  }

  /** Skips NaN: a float the record does not have is left out, not written as NaN. */
  float32(field: number, value: number): void {
    if (value === value && value !== 0) this.setFloat32(field, value);
  }

  bytesField(field: number, value: Uint8Array): void {
    if (value.length === 0) return;
    this.setBytes(field, value);
  }

  setBytes(field: number, value: Uint8Array): void {
    this.tag(field, 2);
    this.varint(value.length);
    this.bytes.set(value, this.pos);
    this.pos += value.length;
  }

  /** Bytes that already are whole fields. */
  append(fields: Uint8Array): void {
    this.bytes.set(fields, this.pos);
    this.pos += fields.length;
  }

  /** At most 3 bytes per UTF-16 unit, plus the tag and length. */
  string(field: number, value: string): void {
    if (value.length !== 0) this.setString(field, value);
  }

  packedFloats(field: number, values: Float32Array, from: number, count: number): void {
    if (count === 0) return;
    this.tag(field, 2);
    this.varint(count * 4);
    for (let i = 0; i < count; i++) this.rawFloat(values[from + i]!);
  }

  packedUints(field: number, values: readonly number[]): void {
    if (values.length === 0) return;
    this.tag(field, 2);
    const start = this.begin();
    for (const v of values) this.varint(v);
    this.end(start);
  }

  /** Opens a nested message as field `field`; close it with `end`. */
  beginField(field: number): number {
    this.tag(field, 2);
    return this.begin();
  }

  /** Opens something length-delimited whose length is not known yet (reserves one byte); the tag is the caller's. */
  begin(): number {
    return this.pos++;
  }

  /** Closes what `begin` opened: writes its length, moving the content right in the rare case it needs >1 byte. */
  end(start: number): void {
    const length = this.pos - start - 1;
    if (length < 128) {
      this.bytes[start] = length;
      return;
    }
    let size = 1;
    for (let v = length; v > 127; v = Math.floor(v / 128)) size++;
    this.bytes.copyWithin(start + size, start + 1, this.pos);
    const pos = this.pos + size - 1;
    this.pos = start;
    this.varint(length);
    this.pos = pos;
  }

  private tag(field: number, wireType: number): void {
    const tag = (field << 3) | wireType;
    if (tag < 128) this.bytes[this.pos++] = tag;
    else this.varint(tag);
  }

  private rawFloat(value: number): void {
    FLOAT[0] = value;
    const b = this.bytes;
    const f = FLOAT_BYTES;
    b[this.pos++] = f[0]!;
    b[this.pos++] = f[1]!;
    b[this.pos++] = f[2]!;
    b[this.pos++] = f[3]!;
  }
}

/**
 * UTF-8 of strings that repeat from message to message (strategy ids, names, versions, reasons): encoding one
 * costs more than the rest of its field. Bounded: the set is the book's and the models' names, so only a runaway
 * caller would reach the bound, and then the cache starts over.
 */
export class Utf8Cache {
  private readonly bytes = new Map<string, Uint8Array>();
  private static readonly encoder = new TextEncoder();

  of(text: string): Uint8Array {
    let bytes = this.bytes.get(text);
    if (bytes === undefined) {
      if (this.bytes.size >= 4096) this.bytes.clear();
      bytes = Utf8Cache.encoder.encode(text);
      this.bytes.set(text, bytes);
    }
    return bytes;
  }
}

/**
 * Where replies are written: successive regions of a shared chunk, as Node's Buffer pool hands out small
 * buffers. A reply is a view of its region, written in place (no copy, no allocation but the view), and stays
 * valid as long as it is kept (a test, a reply that waits for the socket to drain): a chunk is never written
 * twice, only dropped for a new one once full, and freed by the GC when its last reply is.
 */
export class ReplyScratch {
  private static readonly CHUNK_BYTES = 64 * 1024;
  private current = new ProtoWriter(Buffer.allocUnsafe(ReplyScratch.CHUNK_BYTES));
  private start = 0;

  /** A writer positioned at a free region of at least `need` bytes. */
  writer(need: number): ProtoWriter {
    const w = this.current;
    if (w.bytes.length - w.pos < need) this.current = new ProtoWriter(Buffer.allocUnsafe(Math.max(ReplyScratch.CHUNK_BYTES, need)));
    this.start = this.current.pos;
    return this.current;
  }

  /** The reply just written by the writer `writer` gave. */
  reply(): Uint8Array {
    const { bytes, pos } = this.current;
    return new Uint8Array(bytes.buffer, bytes.byteOffset + this.start, pos - this.start);
  }
}
