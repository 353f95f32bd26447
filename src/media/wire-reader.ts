import protobuf from 'protobufjs';

/**
 * Reads fields out of protobuf bytes that already passed checkWire (so every tag, length and wire type is known to
 * be sound and nothing is bounds-checked again), with protobufjs's decoding of each value: uint32 keeps the low 32
 * bits of a longer varint, int32 and enums are those bits signed, bool is any bit set, strings decode invalid
 * UTF-8 to U+FFFD. What an adapter needs from a message, read in one pass, without building the message.
 */
export class WireReader {
  pos: number;
  /** The words of the last uint64 read by `uint64`. */
  low = 0;
  high = 0;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
  ) {
    this.pos = start;
  }

  uint32(): number {
    const b = this.buf;
    let pos = this.pos;
    let byte = b[pos++]!;
    let value = byte & 127;
    if (byte >= 128) {
      byte = b[pos++]!;
      value |= (byte & 127) << 7;
      if (byte >= 128) {
        byte = b[pos++]!;
        value |= (byte & 127) << 14;
        if (byte >= 128) {
          byte = b[pos++]!;
          value |= (byte & 127) << 21;
          if (byte >= 128) {
            byte = b[pos++]!;
            value |= (byte & 15) << 28;
            // Up to five more bytes of a 64-bit varint, whose bits a uint32 drops.
            if (byte >= 128) while (b[pos++]! >= 128);
          }
        }
      }
    }
    this.pos = pos;
    return value >>> 0;
  }

  /** True when any bit of the varint is set, not only of its low 32 bits. */
  bool(): boolean {
    const b = this.buf;
    let value = false;
    let byte: number;
    do {
      byte = b[this.pos++]!;
      if ((byte & 127) !== 0) value = true;
    } while (byte >= 128);
    return value;
  }

  /** A uint64 into `low` and `high`, both unsigned 32-bit words. */
  uint64(): void {
    const b = this.buf;
    let low = 0;
    let high = 0;
    let i = 0;
    let byte: number;
    do {
      byte = b[this.pos++]!;
      if (i < 4) low |= (byte & 127) << (i * 7);
      else if (i === 4) {
        low |= (byte & 127) << 28;
        high |= (byte & 127) >> 4;
      } else high |= (byte & 127) << (i * 7 - 32);
      i++;
    } while (byte >= 128);
    this.low = low >>> 0;
    this.high = high >>> 0;
  }

  /** Reads a length prefix: the end of the value it delimits, which starts at `pos`. */
  delimited(): number {
    const length = this.uint32();
    return this.pos + length;
  }

  /** A length-delimited string. */
  string(): string {
    const end = this.delimited();
    const start = this.pos;
    this.pos = end;
    return protobufString(this.buf, start, end);
  }

  /** Skips a value of the wire type (0, 1, 2 or 5: checkWire refused the others). */
  skip(wireType: number): void {
    if (wireType === 0) this.uint32();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 5) this.pos += 4;
    else this.pos = this.delimited();
  }
}

/** The string protobufjs decodes from buf[start, end): ASCII as it is, anything else through its UTF-8 reader. */
export function protobufString(buf: Uint8Array, start: number, end: number): string {
  for (let i = start; i < end; i++) {
    if (buf[i]! >= 0x80) return protobuf.util.utf8.read(buf, start, end);
  }
  return LATIN1_SLICE.call(buf, start, end);
}

/** Node's own ASCII/Latin-1 decoding, which takes any Uint8Array. */
const LATIN1_SLICE = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;
