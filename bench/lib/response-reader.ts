/**
 * Frames HTTP/1.1 responses on a keep-alive connection for the raw-socket load generator: status line, headers up
 * to the blank line, then exactly Content-Length body bytes. Every server under test sends Content-Length; a
 * response without it cannot be framed and is an error. Works on bytes, allocating nothing per response, so the
 * generator's own garbage collection stays out of the latencies it measures.
 */

const CR = 13;
const LF = 10;
const CONTENT_LENGTH = Buffer.from('content-length:', 'latin1');

export class ResponseFramingError extends Error {
  override name = 'ResponseFramingError';
}

export class ResponseReader {
  private partialHead: Buffer | null = null;
  /** Body bytes still to come, or -1 while reading a head. */
  private bodyLeft = -1;
  private status = 0;

  constructor(private readonly onResponse: (status: number) => void) {}

  /** Consumes one chunk from the socket, calling `onResponse` once per response it completes. */
  feed(chunk: Buffer): void {
    const data = this.partialHead === null ? chunk : Buffer.concat([this.partialHead, chunk]);
    this.partialHead = null;
    let at = 0;
    while (at < data.length) {
      if (this.bodyLeft < 0) {
        const end = headEnd(data, at);
        if (end < 0) {
          this.partialHead = Buffer.from(data.subarray(at));
          return;
        }
        this.status = parseStatus(data, at);
        this.bodyLeft = parseContentLength(data, at, end);
        at = end + 4;
      }
      const taken = Math.min(this.bodyLeft, data.length - at);
      this.bodyLeft -= taken;
      at += taken;
      if (this.bodyLeft > 0) return;
      this.bodyLeft = -1;
      this.onResponse(this.status);
    }
  }
}

/** Index of the CR of the blank line ending the head that starts at `from`, or -1. */
function headEnd(data: Buffer, from: number): number {
  for (let i = from; i + 3 < data.length; i++) {
    if (data[i] === CR && data[i + 1] === LF && data[i + 2] === CR && data[i + 3] === LF) return i;
  }
  return -1;
}

/** "HTTP/1.1 200 ..." -> 200. */
function parseStatus(data: Buffer, at: number): number {
  const valid =
    data[at] === 0x48 && data[at + 1] === 0x54 && data[at + 2] === 0x54 && data[at + 3] === 0x50 && data[at + 4] === 0x2f && data[at + 8] === 0x20;
  const status = digit(data[at + 9]) * 100 + digit(data[at + 10]) * 10 + digit(data[at + 11]);
  if (!valid || !(status >= 100)) throw new ResponseFramingError(`not an HTTP/1.x status line: ${JSON.stringify(data.toString('latin1', at, at + 40))}`);
  return status;
}

function digit(byte: number | undefined): number {
  return byte !== undefined && byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : NaN;
}

function parseContentLength(data: Buffer, start: number, end: number): number {
  for (let line = indexOfLineStart(data, start, end); line >= 0; line = indexOfLineStart(data, line, end)) {
    if (!startsWithIgnoringCase(data, line, end)) continue;
    let i = line + CONTENT_LENGTH.length;
    while (data[i] === 0x20 || data[i] === 0x09) i++;
    let length = 0;
    let digits = 0;
    for (; i < end && data[i]! >= 0x30 && data[i]! <= 0x39; i++, digits++) length = length * 10 + (data[i]! - 0x30);
    if (digits > 0) return length;
  }
  throw new ResponseFramingError(`response without Content-Length cannot be framed: ${JSON.stringify(data.toString('latin1', start, Math.min(end, start + 60)))}`);
}

/** Start of the header line after the one containing `from`, or -1 past the head. */
function indexOfLineStart(data: Buffer, from: number, end: number): number {
  for (let i = from; i < end; i++) if (data[i] === LF) return i + 1;
  return -1;
}

function startsWithIgnoringCase(data: Buffer, at: number, end: number): boolean {
  if (at + CONTENT_LENGTH.length > end) return false;
  for (let j = 0; j < CONTENT_LENGTH.length; j++) if ((data[at + j]! | 0x20) !== CONTENT_LENGTH[j]) return false;
  return true;
}
