import { mkdir, open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../../config.js';

/**
 * The decision log's files: one open file per serving thread, written a block at a time, one write in flight,
 * through libuv's thread pool. A file is closed past maxFileBytes and the node's oldest files are deleted past
 * maxTotalBytes. Names sort by start time: decisions-<UTC start>-t<thread>.rtalog (see decision_log.proto).
 */
export const DECISION_LOG_MAGIC = new TextEncoder().encode('RTALOG1\n');
export const DECISION_LOG_FILE = /^decisions-(\d{8}T\d{9}Z)-\d{3}-t(\d+)\.rtalog$/;

export class DecisionLogFiles {
  private chain: Promise<void> = Promise.resolve();
  private sequence = 0;

  private constructor(
    private readonly config: Config['decisionLog'],
    private readonly thread: number,
    private handle: FileHandle,
    private fileBytes: number,
    private readonly onWriteError: (error: Error) => void,
  ) {}

  static async open(config: Config['decisionLog'], thread: number, onWriteError: (error: Error) => void): Promise<DecisionLogFiles> {
    await mkdir(config.dir, { recursive: true });
    const files = new DecisionLogFiles(config, thread, await newFile(config.dir, thread, 0), DECISION_LOG_MAGIC.length, onWriteError);
    await files.prune();
    return files;
  }

  /** Appends block[0..length) after the writes already queued; `written` runs once the block may be reused. */
  write(block: Uint8Array, length: number, written: () => void): void {
    this.chain = this.chain
      .then(() => this.append(block, length))
      .catch((error: Error) => this.onWriteError(error))
      .finally(written);
  }

  async close(): Promise<void> {
    await this.chain;
    await this.handle.close();
  }

  private async append(block: Uint8Array, length: number): Promise<void> {
    if (this.fileBytes + length > this.config.maxFileBytes && this.fileBytes > DECISION_LOG_MAGIC.length) {
      await this.handle.close();
      this.handle = await newFile(this.config.dir, this.thread, ++this.sequence);
      this.fileBytes = DECISION_LOG_MAGIC.length;
      await this.prune();
    }
    let offset = 0;
    while (offset < length) offset += (await this.handle.write(block, offset, length - offset)).bytesWritten;
    this.fileBytes += length;
  }

  /** Deletes the oldest files while the node's add up to more than maxTotalBytes; never a thread's newest (open). */
  private async prune(): Promise<void> {
    const names = (await readdir(this.config.dir)).filter((name) => DECISION_LOG_FILE.test(name)).sort();
    const newestByThread = new Map<string, string>();
    for (const name of names) newestByThread.set(DECISION_LOG_FILE.exec(name)![2]!, name);
    const open = new Set(newestByThread.values());
    const sizes = await Promise.all(names.map(async (name) => (await stat(join(this.config.dir, name)).catch(() => ({ size: 0 }))).size));
    let total = sizes.reduce((a, b) => a + b, 0);
    for (const [i, name] of names.entries()) {
      if (total <= this.config.maxTotalBytes) break;
      if (open.has(name)) continue;
      // Another thread may have deleted it first.
      await unlink(join(this.config.dir, name)).catch(() => undefined);
      total -= sizes[i]!;
    }
  }
}

async function newFile(dir: string, thread: number, sequence: number): Promise<FileHandle> {
  const stamp = new Date().toISOString().replace(/[-:.]/g, '');
  const handle = await open(join(dir, `decisions-${stamp}-${String(sequence % 1000).padStart(3, '0')}-t${thread}.rtalog`), 'wx');
  await handle.write(DECISION_LOG_MAGIC);
  return handle;
}
