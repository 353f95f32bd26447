import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * Versions of the strategy book. Every book the engine is asked to serve is stored once under its content hash
 * (its version id), and an append-only history says who applied, rolled back to or tried (refused) which version,
 * when and why. Any stored version goes back into service with one call, through the same check and reload as a
 * new book.
 *
 * On disk, in the `strategyHistory` directory: `<id>.json` per version and `history.jsonl`, one event per line.
 * Both only grow (a file per distinct book, a line per apply or refusal); README "Versions and rollback" says how
 * an operator prunes them.
 */

/** sha256 cut to 12 hex digits: short enough to read aloud, and a collision among a book's versions is not a risk. */
const ID_LENGTH = 12;
const VERSION_ID = /^[0-9a-f]{12}$/;
const HISTORY_FILE = 'history.jsonl';

/** JSON with every object's keys sorted, so a reformatted or reordered file is the same book. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sortKeys(value[key])]));
}

/** A book's version id: the content hash of its canonical JSON. */
export function bookVersion(book: unknown): string {
  return createHash('sha256').update(canonicalJson(book)).digest('hex').slice(0, ID_LENGTH);
}

const bookEventSchema = z.strictObject({
  id: z.string().regex(VERSION_ID),
  author: z.string(),
  time: z.string(),
  message: z.string(),
  /** `rolled_back`: a stored version put back in service (backwards or forwards). */
  result: z.enum(['applied', 'refused', 'rolled_back']),
  /** Why the engine would not serve it (refused only). */
  errors: z.array(z.string()).optional(),
  /** What the engine serves but is probably a slip (StrategyBook.warnings), when there was any. */
  warnings: z.array(z.string()).optional(),
});
export type BookEvent = z.infer<typeof bookEventSchema>;

/** Who changes the book and why: given with every admin call and CLI command that does. */
export interface Signature {
  author: string;
  message: string;
}

/** A change made from a version that is no longer live: refused, so it cannot undo the change that replaced it. */
export class StaleBook extends Error {
  override name = 'StaleBook';
  constructor(read: string, live: string | null) {
    super(`the change was made from version ${read}, but ${live ?? 'none'} is live now`);
  }
}

/** No version with this id is stored (never was, or its book file was pruned). */
export class UnknownVersion extends Error {
  override name = 'UnknownVersion';
  constructor(readonly version: string) {
    super(`no stored book version "${version}"`);
  }
}

/** The engine would not serve this book; the version is kept, as refused, with these errors. */
export class BookRefused extends Error {
  override name = 'BookRefused';
  constructor(
    readonly version: string,
    readonly errors: string[],
  ) {
    super(`book ${version} refused: ${errors.join(' ')}`);
  }
}

export class BookHistory {
  private constructor(
    private readonly dir: string,
    /** Oldest first, as in the file. */
    private readonly events: BookEvent[],
  ) {}

  /** Creates the directory if needed; a history file that does not parse stops here, with its line number. */
  static open(dir: string): BookHistory {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, HISTORY_FILE);
    const events: BookEvent[] = [];
    const lines = existsSync(path) ? readFileSync(path, 'utf8').split('\n') : [];
    for (const [i, line] of lines.entries()) {
      if (line.trim() === '') continue;
      let parsed: ReturnType<typeof bookEventSchema.safeParse>;
      try {
        parsed = bookEventSchema.safeParse(JSON.parse(line));
      } catch (err) {
        throw new Error(`book history ${path}:${i + 1}: ${(err as Error).message}`);
      }
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new Error(`book history ${path}:${i + 1}: ${issue.path.join('.') || '(line)'}: ${issue.message}`);
      }
      events.push(parsed.data);
    }
    return new BookHistory(dir, events);
  }

  /** The version in service: the last one applied or rolled back to; null before the first. */
  get live(): string | null {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]!.result !== 'refused') return this.events[i]!.id;
    return null;
  }

  /** Newest first. */
  list(): BookEvent[] {
    return this.events.slice().reverse();
  }

  /** The stored text of a version (as it was given, formatting included), or null when none is stored. */
  text(id: string): string | null {
    if (!VERSION_ID.test(id)) return null;
    try {
      return readFileSync(join(this.dir, `${id}.json`), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  book(id: string): unknown {
    const text = this.text(id);
    if (text === null) throw new UnknownVersion(id);
    return JSON.parse(text);
  }

  /** Stores the version unless it is stored already, then appends the event. */
  record(id: string, text: string, event: Signature & { result: BookEvent['result']; errors?: string[]; warnings?: readonly string[] }): BookEvent {
    if (this.text(id) === null) writeAtomically(join(this.dir, `${id}.json`), text);
    const entry: BookEvent = { id, author: event.author, time: new Date().toISOString(), message: event.message, result: event.result };
    if (event.errors) entry.errors = event.errors;
    if (event.warnings && event.warnings.length > 0) entry.warnings = [...event.warnings];
    appendFileSync(join(this.dir, HISTORY_FILE), `${JSON.stringify(entry)}\n`);
    this.events.push(entry);
    return entry;
  }
}

/** One field that differs; `from` or `to` is absent where the field is not set on that side. */
export interface FieldChange {
  field: string;
  from?: unknown;
  to?: unknown;
}

/** Strategies or experiments, matched by id. */
export interface ItemChanges {
  added: string[];
  removed: string[];
  changed: { id: string; changes: FieldChange[] }[];
  /** The ids on both sides, when their order differs (exclusions and creatives: the first match wins). */
  order?: { from: string[]; to: string[] };
}

export interface BookDiff {
  /** Everything outside strategies and experiments: cache times, value models, the description. */
  book: FieldChange[];
  strategies: ItemChanges;
  experiments: ItemChanges;
}

/** What changed from one book to another, per strategy and experiment, field by field. */
export function diffBooks(before: unknown, after: unknown): BookDiff {
  const { strategies: strategiesBefore, experiments: experimentsBefore, ...restBefore } = isObject(before) ? before : {};
  const { strategies: strategiesAfter, experiments: experimentsAfter, ...restAfter } = isObject(after) ? after : {};
  return {
    book: fieldChanges(restBefore, restAfter),
    strategies: itemChanges(strategiesBefore, strategiesAfter),
    experiments: itemChanges(experimentsBefore, experimentsAfter),
  };
}

function itemChanges(before: unknown, after: unknown): ItemChanges {
  const old = byId(before);
  const now = byId(after);
  const kept = (from: Map<string, unknown>, other: Map<string, unknown>) => [...from.keys()].filter((id) => other.has(id));
  const changes: ItemChanges = {
    added: [...now.keys()].filter((id) => !old.has(id)),
    removed: [...old.keys()].filter((id) => !now.has(id)),
    changed: kept(now, old)
      .map((id) => ({ id, changes: fieldChanges(old.get(id), now.get(id)) }))
      .filter((item) => item.changes.length > 0),
  };
  const [orderBefore, orderAfter] = [kept(old, now), kept(now, old)];
  if (orderBefore.join('\n') !== orderAfter.join('\n')) changes.order = { from: orderBefore, to: orderAfter };
  return changes;
}

/** Items by their `id`; one without a string id (only in a refused book) goes by its position. */
function byId(items: unknown): Map<string, unknown> {
  const list = Array.isArray(items) ? items : [];
  return new Map(list.map((item, i) => [isObject(item) && typeof item.id === 'string' ? item.id : `#${i}`, item]));
}

function fieldChanges(before: unknown, after: unknown): FieldChange[] {
  const old = new Map<string, unknown>();
  const now = new Map<string, unknown>();
  flatten(before, '', old);
  flatten(after, '', now);
  const changes: FieldChange[] = [];
  for (const field of new Set([...old.keys(), ...now.keys()])) {
    if (old.has(field) && now.has(field) && canonicalJson(old.get(field)) === canonicalJson(now.get(field))) continue;
    const change: FieldChange = { field };
    if (old.has(field)) change.from = old.get(field);
    if (now.has(field)) change.to = now.get(field);
    changes.push(change);
  }
  return changes;
}

/** Leaves by path (`bid.targetValueFen`, `creatives[1].id`); a list of plain values is one leaf (`flagsAny`). */
function flatten(value: unknown, path: string, out: Map<string, unknown>): void {
  if (isObject(value) && Object.keys(value).length > 0) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, path === '' ? key : `${path}.${key}`, out);
  } else if (Array.isArray(value) && value.some((inner) => typeof inner === 'object' && inner !== null)) {
    value.forEach((inner, i) => flatten(inner, `${path}[${i}]`, out));
  } else {
    out.set(path, value);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What putting a book in service needs from the running engine. */
export interface BookServing {
  /**
   * Throws, with precise messages, when the engine would refuse the book (compiled against the models' names);
   * otherwise returns its warnings.
   */
  check(book: unknown, source: string): readonly string[];
  /** Reloads the strategies file on every serving thread; rejects when one refuses it. */
  reload(): Promise<Record<string, unknown>>;
}

export interface Listing {
  live: string | null;
  /** Newest first; the event that put the live version in service says `live: true`. */
  events: (BookEvent & { live?: true })[];
}

/**
 * The book's versions as the admin port offers them: list, show, diff, and the changes (a new book, a stored one
 * again, a hand-edited file), each checked like a reload, then written to the strategies file, reloaded on every
 * serving thread and recorded.
 */
export class BookVersions {
  constructor(
    private readonly history: BookHistory,
    private readonly strategiesPath: string,
    private readonly serving: BookServing,
    /** Runs changes one at a time, with the engine's other reloads: two changes never race on the file. */
    private readonly exclusive: <T>(task: () => Promise<T>) => Promise<T>,
  ) {}

  list(): Listing {
    const live = this.history.live;
    const events: Listing['events'] = this.history.list();
    const putLive = events.findIndex((e) => e.result !== 'refused');
    if (putLive >= 0) events[putLive] = { ...events[putLive]!, live: true };
    return { live, events };
  }

  show(id: string): { id: string; live: boolean; events: BookEvent[]; book: unknown } {
    const book = this.history.book(id);
    return { id, live: id === this.history.live, events: this.history.list().filter((e) => e.id === id), book };
  }

  diff(id: string, other: string): BookDiff & { from: string; to: string } {
    return { from: id, to: other, ...diffBooks(this.history.book(id), this.history.book(other)) };
  }

  /**
   * A new book from the growth team (or one already stored, which is then just applied again). With `over`, only
   * if that version is still the live one when the change's turn comes: a controller's change, made from the book
   * it read, never overwrites a person's that landed meanwhile.
   */
  propose(book: unknown, signature: Signature, over?: string): Promise<Record<string, unknown>> {
    return this.putInService(book, null, signature, 'applied', over);
  }

  /** Puts a stored version back in service: a rollback, or forward again. */
  apply(id: string, signature: Signature): Promise<Record<string, unknown>> {
    const text = this.history.text(id);
    if (text === null) return Promise.reject(new UnknownVersion(id));
    return this.putInService(JSON.parse(text), text, signature, 'rolled_back');
  }

  /**
   * A reload that reads the strategies file as it is (edited by hand; or loaded again with new models): the book
   * it held is recorded, applied or refused with the reload's errors, unless it is the live version already.
   */
  fromFile<R>(signature: Signature, reload: () => Promise<R>): Promise<R> {
    return this.exclusive(async () => {
      const file = this.readFile();
      const changed = file !== null && file.id !== this.history.live;
      let result: R;
      try {
        result = await reload();
      } catch (err) {
        if (changed) this.history.record(file.id, file.text, { ...signature, result: 'refused', errors: errorLines(err) });
        throw err;
      }
      if (changed) this.history.record(file.id, file.text, { ...signature, result: 'applied' });
      return result;
    });
  }

  /** At start: the file the engine loaded is recorded unless it is the live version (first start, a hand edit while stopped). */
  recordStart(): void {
    const file = this.readFile();
    if (file === null || file.id === this.history.live) return;
    const message = this.history.live === null ? 'initial' : 'found at start: the file changed while the engine was stopped';
    this.history.record(file.id, file.text, { author: 'file', message, result: 'applied' });
  }

  private putInService(book: unknown, text: string | null, signature: Signature, result: 'applied' | 'rolled_back', over?: string): Promise<Record<string, unknown>> {
    return this.exclusive(async () => {
      if (over !== undefined && this.history.live !== over) throw new StaleBook(over, this.history.live);
      const id = bookVersion(book);
      const stored = text ?? this.history.text(id) ?? `${JSON.stringify(book, null, 2)}\n`;
      let warnings: readonly string[];
      try {
        warnings = this.serving.check(book, 'book');
      } catch (err) {
        throw this.refused(id, stored, signature, err);
      }
      const previous = readFileSync(this.strategiesPath, 'utf8');
      writeAtomically(this.strategiesPath, stored);
      let summary: Record<string, unknown>;
      try {
        summary = await this.serving.reload();
      } catch (err) {
        // The file must hold what is served, or the next start (or a replaced serving thread) would load the refused book.
        writeAtomically(this.strategiesPath, previous);
        throw this.refused(id, stored, signature, err);
      }
      this.history.record(id, stored, { ...signature, result, warnings });
      return { ...summary, book: id, result, ...(warnings.length > 0 ? { warnings } : {}) };
    });
  }

  private refused(id: string, text: string, signature: Signature, err: unknown): BookRefused {
    const errors = errorLines(err);
    this.history.record(id, text, { ...signature, result: 'refused', errors });
    return new BookRefused(id, errors);
  }

  /** The strategies file's book and version; null when it is unreadable or not JSON (then there is no book to keep). */
  private readFile(): { id: string; text: string } | null {
    try {
      const text = readFileSync(this.strategiesPath, 'utf8');
      return { id: bookVersion(JSON.parse(text)), text };
    } catch {
      return null;
    }
  }
}

function errorLines(err: unknown): string[] {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n').map((line) => line.trim()).filter((line) => line !== '');
}

/** Written beside and renamed over: a reader (a reloading serving thread, a restart) sees the old file or the new one, never half. */
function writeAtomically(path: string, text: string): void {
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, path);
}
