import { Socket } from 'node:net';
import { ResponseReader } from './response-reader.js';

/**
 * One keep-alive connection sending one request at a time, the next only after the previous reply's last byte:
 * every request reaches the server alone, in its own event-loop turn, so the work a request costs does not depend
 * on how requests happened to batch. For counting instructions, not for load.
 */
export class SequentialClient {
  private waiting: { resolve(status: number): void; reject(err: Error): void } | null = null;
  private failure: Error | null = null;

  private constructor(private readonly socket: Socket) {
    const reader = new ResponseReader((status) => {
      const waiting = this.waiting;
      this.waiting = null;
      waiting?.resolve(status);
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => reader.feed(chunk));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('the server closed the connection')));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const waiting = this.waiting;
    this.waiting = null;
    waiting?.reject(this.failure);
  }

  static connect(host: string, port: number): Promise<SequentialClient> {
    return new Promise((resolve, reject) => {
      const socket = new Socket();
      socket.once('error', reject);
      socket.connect(port, host, () => {
        socket.off('error', reject);
        resolve(new SequentialClient(socket));
      });
    });
  }

  /** Sends each message in turn; returns how many replies were not 200. */
  async send(messages: readonly Buffer[]): Promise<number> {
    let notOk = 0;
    for (const message of messages) {
      if (this.failure) throw this.failure;
      const status = await new Promise<number>((resolve, reject) => {
        this.waiting = { resolve, reject };
        this.socket.write(message);
      });
      if (status !== 200) notOk++;
    }
    return notOk;
  }

  close(): void {
    this.socket.destroy();
  }
}
