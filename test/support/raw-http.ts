import { connect, type Socket } from 'node:net';

/**
 * HTTP/1.1 over a bare TCP socket, for the cases an HTTP client hides: exact headers, pipelining, half-sent bodies,
 * and whether the server closed the connection. Replies are parsed by Content-Length, which uWebSockets.js always
 * sends.
 */

export interface RawReply {
  status: number;
  /** Header names lower-cased. */
  headers: Map<string, string>;
  body: Buffer;
}

export class RawConnection {
  private buffer = Buffer.alloc(0);
  private ended = false;
  private wake: (() => void) | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.wake?.();
    });
    socket.on('end', () => this.markEnded());
    socket.on('close', () => this.markEnded());
    // A reset after the server closed on us is the behaviour under test, not a failure of the test.
    socket.on('error', () => this.markEnded());
  }

  /** Connects to the host and port of `url` (an http:// base URL). */
  static open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    return new Promise((resolve, reject) => {
      const socket = connect(Number(port), hostname, () => {
        socket.off('error', reject);
        resolve(new RawConnection(socket));
      });
      socket.once('error', reject);
    });
  }

  write(bytes: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Waits for one complete reply; throws when the connection closes first or nothing arrives in time. */
  async readReply(timeoutMs = 3000): Promise<RawReply> {
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.takeReply();
      if (reply) return reply;
      if (this.ended) throw new Error(`connection closed before a complete reply (have ${this.buffer.length} bytes)`);
      if (!(await this.waitForBytes(giveUpAt - Date.now()))) throw new Error(`no complete reply in ${timeoutMs} ms (have: ${JSON.stringify(this.buffer.toString('latin1'))})`);
    }
  }

  /** True when the server closes the connection within `timeoutMs`. */
  async closedByServer(timeoutMs = 2000): Promise<boolean> {
    const giveUpAt = Date.now() + timeoutMs;
    while (!this.ended) if (!(await this.waitForBytes(giveUpAt - Date.now()))) return this.ended;
    return true;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private markEnded(): void {
    this.ended = true;
    this.wake?.();
  }

  /** Resolves true on new bytes or end of stream, false when `ms` passed without either. */
  private waitForBytes(ms: number): Promise<boolean> {
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve(true);
      };
    });
  }

  private takeReply(): RawReply | null {
    const headEnd = this.buffer.indexOf('\r\n\r\n');
    if (headEnd < 0) return null;
    const [statusLine, ...headerLines] = this.buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(statusLine!);
    if (!status) throw new Error(`not an HTTP/1.1 status line: ${JSON.stringify(statusLine)}`);
    const headers = new Map<string, string>();
    for (const line of headerLines) {
      const colon = line.indexOf(':');
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get('content-length') ?? 'NaN');
    if (!Number.isInteger(length)) throw new Error(`reply without a usable Content-Length: ${JSON.stringify(statusLine)}`);
    const bodyStart = headEnd + 4;
    if (this.buffer.length < bodyStart + length) return null;
    const body = Buffer.from(this.buffer.subarray(bodyStart, bodyStart + length));
    this.buffer = this.buffer.subarray(bodyStart + length);
    return { status: Number(status[1]), headers, body };
  }
}

/** The bytes of a POST with an exact Content-Length (or none, when `contentLength` is null). */
export function rawPost(path: string, body: Uint8Array | string, options: { contentLength?: number | null; headers?: Record<string, string> } = {}): Buffer {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'latin1') : Buffer.from(body);
  const length = options.contentLength === undefined ? bytes.length : options.contentLength;
  let head = `POST ${path} HTTP/1.1\r\nHost: rta.test\r\n`;
  if (length !== null) head += `Content-Length: ${length}\r\n`;
  for (const [name, value] of Object.entries(options.headers ?? {})) head += `${name}: ${value}\r\n`;
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), bytes]);
}

/** A body in HTTP/1.1 chunked transfer coding, `pieceBytes` per chunk. */
export function chunkedBody(body: Uint8Array, pieceBytes: number): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < body.length; at += pieceBytes) {
    const piece = body.subarray(at, Math.min(body.length, at + pieceBytes));
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`, 'latin1'), Buffer.from(piece), Buffer.from('\r\n', 'latin1'));
  }
  parts.push(Buffer.from('0\r\n\r\n', 'latin1'));
  return Buffer.concat(parts);
}
