import { createReadStream } from 'node:fs';
import { appendFile, mkdir, readdir, unlink } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { EVENT_KINDS, type OutcomeEvent } from './events.js';

/**
 * Every joined event, kept on disk in the form POST /events takes (JSON Lines), so that a restart rebuilds the
 * results and recognises duplicates again: the engine replays these files after reading the decision log. One
 * file per UTC day of arrival; files older than the window (and a day) are deleted.
 */
const FILE = /^events-(\d{8})\.jsonl$/;
const DAY_MS = 86_400_000;

export class OutcomeLog {
  private chain: Promise<void> = Promise.resolve();
  private today = '';

  constructor(
    private readonly dir: string,
    private readonly windowMs: number,
  ) {}

  /** Resolves once the events are on disk (after any earlier append). */
  append(events: readonly { event: OutcomeEvent; strategyId: string }[], nowMs: number): Promise<void> {
    if (events.length === 0) return this.chain;
    const text = events.map(({ event, strategyId }) => `${JSON.stringify(lineOf(event, strategyId))}\n`).join('');
    const write = this.chain.then(async () => {
      if (day(nowMs) !== this.today) {
        await mkdir(this.dir, { recursive: true });
        await this.prune(nowMs);
        this.today = day(nowMs);
      }
      await appendFile(join(this.dir, `events-${this.today}.jsonl`), text);
    });
    // A failed write fails its own batch, not the ones after it.
    this.chain = write.catch(() => undefined);
    return write;
  }

  /** The kept files' lines, oldest first, a slice at a time: a day's file may be larger than one string can be. */
  async *past(nowMs: number): AsyncGenerator<Buffer> {
    for (const name of await this.prune(nowMs)) {
      let slice: string[] = [];
      for await (const line of createInterface({ input: createReadStream(join(this.dir, name)), crlfDelay: Infinity })) {
        slice.push(line);
        if (slice.length === 10_000) {
          yield Buffer.from(slice.join('\n'));
          slice = [];
        }
      }
      if (slice.length > 0) yield Buffer.from(slice.join('\n'));
    }
  }

  /** Deletes the files past the window; returns the others' names, oldest first. */
  private async prune(nowMs: number): Promise<string[]> {
    const oldest = `events-${day(nowMs - this.windowMs - DAY_MS)}.jsonl`;
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => FILE.test(n)).sort();
    for (const name of names.filter((n) => n < oldest)) await unlink(join(this.dir, name)).catch(() => undefined);
    return names.filter((n) => n >= oldest);
  }
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, '');

function lineOf(event: OutcomeEvent, strategyId: string): Record<string, unknown> {
  return {
    trace_id: event.traceId,
    media: event.media,
    strategy_id: strategyId,
    event: EVENT_KINDS[event.kind],
    ...(event.costFen !== 0 ? { cost_fen: event.costFen } : {}),
    ...(event.valueFen !== 0 ? { value_fen: event.valueFen } : {}),
    event_time: event.timeMs,
  };
}
