import { log } from '../observe/log.js';
import { StaleBook, type BookVersions } from '../strategy/versions.js';

/**
 * What every controller shares: off until a person switches it on, a look on a schedule (or when a person asks),
 * and each change a new book version with the controller as author and its reasons as the message, so it is
 * listed, diffed and rolled back like a person's.
 */

/** What one look concluded for one strategy. */
export interface ControllerStep {
  strategy: string;
  /** Whether this look changed the strategy in the book. */
  changed: boolean;
  reason: string;
}

export interface ControllerState<Step extends ControllerStep = ControllerStep> {
  name: string;
  enabled: boolean;
  intervalMinutes: number;
  lastLook: string | null;
  /** The last look's conclusions, per strategy it acts on. */
  steps: Step[];
  /** The book versions it made, newest first (at most 50). */
  actions: { time: string; book: string; message: string }[];
}

export interface ScheduleConfig {
  enabled: boolean;
  intervalMinutes: number;
}

/**
 * Runs `look` every intervalMinutes while `enabled()` says so; a failed look is logged as `<what>_failed`, and the
 * next one comes on time. Returns what stops it.
 */
export function onSchedule(what: string, intervalMinutes: number, enabled: () => boolean, look: () => Promise<unknown>): () => void {
  const timer = setInterval(() => {
    if (enabled()) look().catch((err: Error) => log('error', `${what}_failed`, { message: err.message }));
  }, intervalMinutes * 60_000).unref();
  return () => clearInterval(timer);
}

export type LiveBook = { strategies: ({ id: string; kind: string } & Record<string, unknown>)[] } & Record<string, unknown>;

export abstract class BookController<Step extends ControllerStep> {
  private enabled: boolean;
  private stopSchedule: (() => void) | null = null;
  private lastLook: string | null = null;
  private steps: Step[] = [];
  private readonly actions: ControllerState['actions'] = [];

  constructor(
    /** As in its admin route, /controllers/<name>. */
    readonly name: string,
    /** The author of its book versions, `controller:<name>`. */
    readonly author: string,
    private readonly schedule: ScheduleConfig,
    protected readonly books: BookVersions,
  ) {
    this.enabled = schedule.enabled;
  }

  start(): void {
    this.stopSchedule = onSchedule(this.name, this.schedule.intervalMinutes, () => this.enabled, () => this.look());
  }

  stop(): void {
    this.stopSchedule?.();
  }

  /** A person switches it on or off; off, the schedule makes no change (a person may still ask for a look). */
  setEnabled(enabled: boolean): ControllerState<Step> {
    this.enabled = enabled;
    return this.state();
  }

  state(): ControllerState<Step> & Record<string, unknown> {
    return { name: this.name, enabled: this.enabled, intervalMinutes: this.schedule.intervalMinutes, ...this.settings(), lastLook: this.lastLook, steps: this.steps, actions: this.actions };
  }

  /** One look now (the schedule's, or a person's): the live book, copied, for `decide` to change. */
  async look(): Promise<ControllerState<Step>> {
    const listing = this.books.list();
    if (listing.live === null) return this.state();
    const book = structuredClone(this.books.show(listing.live).book) as LiveBook;
    const nowMs = Date.now();
    const steps = await this.decide(book, listing, nowMs);
    this.lastLook = new Date(nowMs).toISOString();
    this.steps = steps;
    const changes = steps.filter((s) => s.changed);
    if (changes.length === 0) return this.state();
    const message = changes.map((s) => `${s.strategy}: ${s.reason}`).join('; ');
    let applied: Record<string, unknown>;
    try {
      applied = await this.books.propose(book, { author: this.author, message }, listing.live);
    } catch (err) {
      if (!(err instanceof StaleBook)) throw err;
      // A person changed the book while this look ran: theirs stands; the next look starts from it.
      log('warn', 'controller_skipped', { controller: this.name, reason: err.message });
      return this.state();
    }
    this.actions.unshift({ time: this.lastLook, book: String(applied.book), message });
    this.actions.splice(50);
    log('info', 'controller_applied', { controller: this.name, book: applied.book, message });
    return this.state();
  }

  /** Changes `book` in place for this look and says why, per strategy. */
  protected abstract decide(book: LiveBook, listing: ReturnType<BookVersions['list']>, nowMs: number): Promise<Step[]>;

  /** Its own settings, shown in its state. */
  protected settings(): Record<string, unknown> {
    return {};
  }
}
