import { existsSync } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DECISION_LOG_FILE, DECISION_LOG_MAGIC } from '../observe/decision-log/files.js';

interface FileState {
  /** How far the file has been read. */
  offset: number;
  /** The start of a record the last read cut short. */
  carry: Buffer;
}

/** Read at most this much at a time. */
const READ_BYTES = 4 * 1024 * 1024;

/**
 * The longest run of records taken before the follower sleeps PAUSE_MS. This thread shares a core with a serving
 * thread (in scoring-pool mode it is the serving thread), and once the kernel gives a busy thread the core it may
 * keep it for a millisecond or more: one long run (a second of log is about 20,000 records, 70 ms) held requests
 * past the 1.5 ms scoring deadline. Runs of half a millisecond with real sleeps between them do not, for the
 * price of a ceiling (a third of a core, about 80,000 records a second at the 4 us a record npm run
 * bench:attribution measures on a 2-vCPU AMD EPYC VM; beyond it the backlog, rta_attribution_log_backlog_bytes,
 * grows) and of the wake-ups, which made each record cost about 30 % more.
 * Below the serving threads' priority (server.mainThreadNice) the kernel lets them go first, and sleeping only
 * hurts: each wake-up is a chance to cut in. Pinned to one core at 75 % of the maximum, deadline fallbacks in six
 * windows of 5 s were 15 without sleeps, 34 with half-millisecond runs and 52 with 5 ms runs.
 */
const SLICE_MS = 0.5;
const PAUSE_MS = 1;
/** SLICE_MS at the serving priority, no limit below it; asked at each read, as the thread's priority may change. */
const runLimitMs = () => (process.platform === 'linux' && getPriority(0) > 0 ? Infinity : SLICE_MS);
/** Records taken between two looks at the clock. */
const RECORDS_PER_LOOK = 16;

/**
 * Follows the decision log folder as the serving threads write it: each read takes the bytes added to every file
 * since the last one and hands over each whole record. The serving threads write a block at a time, so a record
 * can be split only at the end of what was read; its start is kept for the next read. Files deleted by the log's
 * pruning are dropped from the list. The first read takes what earlier processes wrote as well, so a restart
 * forgets no decision the log still holds.
 */
export class DecisionLogFollower {
  private readonly files = new Map<string, FileState>();
  private chain: Promise<void> = Promise.resolve();
  /** Bytes the log held beyond what had been read, as the latest read found them file by file. */
  backlogBytes = 0;
  private sliceStart = 0;
  private sliceMs = SLICE_MS;

  constructor(
    private readonly dir: string,
    /** One whole record: bytes[start..end), valid only during the call. */
    private readonly onRecord: (bytes: Buffer, start: number, end: number) => void,
    private readonly onError: (error: Error) => void,
  ) {}

  /** Reads what was added since the last read; reads never overlap, and each one starts after the last has ended. */
  read(): Promise<void> {
    this.chain = this.chain.then(() => this.readNew()).catch((error: Error) => this.onError(error));
    return this.chain;
  }

  private async readNew(): Promise<void> {
    if (!existsSync(this.dir)) return;
    const names = (await readdir(this.dir)).filter((n) => DECISION_LOG_FILE.test(n)).sort();
    const present = new Set(names);
    for (const name of this.files.keys()) if (!present.has(name)) this.files.delete(name);
    this.backlogBytes = 0;
    this.sliceMs = runLimitMs();
    this.sliceStart = performance.now();
    for (const name of names) {
      let file = this.files.get(name);
      if (!file) this.files.set(name, (file = { offset: 0, carry: Buffer.alloc(0) }));
      // One unreadable file must not hide the others.
      await this.readFile(name, file).catch((error: Error) => this.onError(new Error(`${name}: ${error.message}`)));
    }
  }

  private async readFile(name: string, file: FileState): Promise<void> {
    const handle = await open(join(this.dir, name), 'r').catch(() => null);
    // Pruned between the listing and now.
    if (!handle) return;
    try {
      const { size } = await handle.stat();
      this.backlogBytes += Math.max(0, size - file.offset);
      while (file.offset < size) {
        const chunk = Buffer.allocUnsafe(Math.min(READ_BYTES, size - file.offset));
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, file.offset);
        if (bytesRead === 0) break;
        await this.takeRecords(name, file, chunk.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  }

  private async takeRecords(name: string, file: FileState, added: Buffer): Promise<void> {
    const atFileStart = file.offset - file.carry.length === 0;
    file.offset += added.length;
    let bytes: Buffer = file.carry.length > 0 ? Buffer.concat([file.carry, added]) : added;
    if (atFileStart) {
      if (bytes.length < DECISION_LOG_MAGIC.length) return void (file.carry = bytes);
      if (!bytes.subarray(0, DECISION_LOG_MAGIC.length).equals(DECISION_LOG_MAGIC)) throw new Error(`${name}: not a decision log file`);
      bytes = bytes.subarray(DECISION_LOG_MAGIC.length);
    }
    let at = 0;
    for (let taken = 1; ; taken++) {
      const record = nextRecord(bytes, at);
      if (!record) break;
      if (taken % RECORDS_PER_LOOK === 0 && performance.now() - this.sliceStart > this.sliceMs) {
        await sleep(PAUSE_MS);
        this.sliceStart = performance.now();
      }
      try {
        this.onRecord(bytes, record.start, record.end);
      } catch (error) {
        // Its length prefix still says where the next record starts.
        this.onError(new Error(`${name}: a record at ${record.start} is unreadable: ${(error as Error).message}`));
      }
      at = record.end;
    }
    // A copy: the rest of the chunk can go.
    file.carry = Buffer.from(bytes.subarray(at));
  }
}

/** The record whose varint length prefix starts at `at`, or null when the bytes end before it does. */
function nextRecord(bytes: Buffer, at: number): { start: number; end: number } | null {
  let length = 0;
  let shift = 0;
  let i = at;
  for (;;) {
    if (i >= bytes.length) return null;
    const byte = bytes[i++]!;
    length += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) break;
    shift += 7;
    if (shift > 35) throw new Error('decision log: a record length prefix longer than 5 bytes');
  }
  return i + length <= bytes.length ? { start: i, end: i + length } : null;
}
