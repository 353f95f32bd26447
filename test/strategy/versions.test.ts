import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { BookHistory, BookRefused, BookVersions, bookVersion, diffBooks, UnknownVersion, type BookServing } from '../../src/strategy/versions.js';

const DEMO_TEXT = readFileSync(new URL('../../data/strategies.json', import.meta.url), 'utf8');
const demo = () => JSON.parse(DEMO_TEXT) as { strategies: Array<Record<string, any>>; experiments: Array<Record<string, any>>; cacheTtlSeconds: Record<string, number> };

/** The demo book with acq_prime_new's target value changed. */
function withPrimeTarget(targetValueFen: number) {
  const book = demo();
  book.strategies.find((s) => s.id === 'acq_prime_new')!.bid.targetValueFen = targetValueFen;
  return book;
}

function reversedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversedKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).reverse().map(([k, v]) => [k, reversedKeys(v)]));
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'rta-versions-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('version ids', () => {
  test('a reformatted or reordered book keeps its id; any change of content makes a new one', () => {
    const id = bookVersion(demo());
    expect(id).toMatch(/^[0-9a-f]{12}$/);
    expect(bookVersion(JSON.parse(JSON.stringify(demo(), null, 4)))).toBe(id);
    expect(bookVersion(JSON.parse(JSON.stringify(demo())))).toBe(id);
    expect(bookVersion(reversedKeys(demo()))).toBe(id);
    expect(bookVersion(withPrimeTarget(9501))).not.toBe(id);
    const reordered = demo();
    reordered.strategies.reverse();
    expect(bookVersion(reordered)).not.toBe(id);
  });
});

describe('diff', () => {
  test('per strategy and experiment, field by field, with cache times, additions, removals and order', () => {
    const before = demo();
    const after = withPrimeTarget(19000);
    after.cacheTtlSeconds.take = 7200;
    after.experiments[0]!.arms[1].overrides.acq_prime_new.exponent = 0.9;
    after.strategies = after.strategies.filter((s) => s.id !== 'nudge_registered');
    after.strategies.push({ id: 'acq_students', kind: 'bid', bid: { targetValueFen: 5000 }, creatives: [{ id: 750500 }] });
    const [blacklist, borrower] = [after.strategies[0]!, after.strategies[1]!];
    after.strategies[0] = borrower;
    after.strategies[1] = blacklist;
    delete after.strategies.find((s) => s.id === 'react_dormant')!.bid.assumeApproved;
    after.strategies.find((s) => s.id === 'acq_platform_lookalike')!.when.platformExperimentsAny = [32768, 32769];

    expect(diffBooks(before, after)).toEqual({
      book: [{ field: 'cacheTtlSeconds.take', from: 3600, to: 7200 }],
      strategies: {
        added: ['acq_students'],
        removed: ['nudge_registered'],
        changed: [
          { id: 'acq_prime_new', changes: [{ field: 'bid.targetValueFen', from: 9500, to: 19000 }] },
          { id: 'react_dormant', changes: [{ field: 'bid.assumeApproved', from: true }] },
          { id: 'acq_platform_lookalike', changes: [{ field: 'when.platformExperimentsAny', from: [32768], to: [32768, 32769] }] },
        ],
        order: {
          from: ['excl_blacklist', 'excl_active_borrower', 'excl_high_risk', 'acq_prime_new', 'react_dormant', 'acq_platform_lookalike'],
          to: ['excl_active_borrower', 'excl_blacklist', 'excl_high_risk', 'acq_prime_new', 'react_dormant', 'acq_platform_lookalike'],
        },
      },
      experiments: {
        added: [],
        removed: [],
        changed: [{ id: 'prime_curve_w48', changes: [{ field: 'arms[1].overrides.acq_prime_new.exponent', from: 0.8, to: 0.9 }] }],
      },
    });
  });

  test('a book and its reformatted copy differ in nothing', () => {
    expect(diffBooks(demo(), reversedKeys(demo()))).toEqual({
      book: [],
      strategies: { added: [], removed: [], changed: [] },
      experiments: { added: [], removed: [], changed: [] },
    });
  });
});

describe('history on disk', () => {
  test('each version is stored once, events are appended and read back, newest first', () => {
    const history = BookHistory.open(join(dir, 'history'));
    const v1 = bookVersion(demo());
    const v2 = bookVersion(withPrimeTarget(19000));
    history.record(v1, DEMO_TEXT, { author: 'file', message: 'initial', result: 'applied' });
    history.record(v2, JSON.stringify(withPrimeTarget(19000)), { author: 'ana', message: 'higher target', result: 'applied' });
    history.record(v1, DEMO_TEXT, { author: 'ben', message: 'back', result: 'rolled_back' });
    expect(readdirSync(join(dir, 'history')).sort()).toEqual([`${v1}.json`, `${v2}.json`, 'history.jsonl'].sort());
    expect(history.text(v1)).toBe(DEMO_TEXT);

    const reopened = BookHistory.open(join(dir, 'history'));
    expect(reopened.live).toBe(v1);
    expect(reopened.list().map((e) => [e.id, e.author, e.result])).toEqual([
      [v1, 'ben', 'rolled_back'],
      [v2, 'ana', 'applied'],
      [v1, 'file', 'applied'],
    ]);
    expect(() => reopened.book('0123456789ab')).toThrow(UnknownVersion);
    expect(reopened.text('../../etc/passwd')).toBeNull();
  });

  test('a history line that does not parse stops the open with its line number', () => {
    const history = BookHistory.open(dir);
    history.record(bookVersion(demo()), DEMO_TEXT, { author: 'file', message: 'initial', result: 'applied' });
    appendFileSync(join(dir, 'history.jsonl'), '{"id": "nope"}\n');
    expect(() => BookHistory.open(dir)).toThrow(/history\.jsonl:2: id: /);
  });
});

describe('applying, refusing and rolling back', () => {
  const REFUSAL = 'book is invalid:\n  strategies[3](acq_prime_new).bid.exponent: Too big: expected number to be <=4';
  let strategiesPath: string;
  let served: string;
  let refuseNextReload: boolean;
  let versions: BookVersions;
  let history: BookHistory;

  beforeEach(() => {
    strategiesPath = join(dir, 'strategies.json');
    writeFileSync(strategiesPath, DEMO_TEXT);
    served = bookVersion(demo());
    refuseNextReload = false;
    const serving: BookServing = {
      check(book) {
        const prime = (book as ReturnType<typeof demo>).strategies.find((s) => s.id === 'acq_prime_new');
        if (prime?.bid.exponent > 4) throw new Error(REFUSAL);
        return [];
      },
      async reload() {
        if (refuseNextReload) throw new Error('serving thread exited during the strategies reload');
        served = bookVersion(JSON.parse(readFileSync(strategiesPath, 'utf8')));
        return { book: served, bidding: ['acq_prime_new'] };
      },
    };
    history = BookHistory.open(join(dir, 'history'));
    versions = new BookVersions(history, strategiesPath, serving, (task) => task());
    versions.recordStart();
  });

  test('the first start records the file as the initial version', () => {
    expect(versions.list()).toEqual({ live: served, events: [expect.objectContaining({ id: served, author: 'file', message: 'initial', result: 'applied', live: true })] });
  });

  test('a new book is written to the strategies file, reloaded and recorded', async () => {
    const v2 = bookVersion(withPrimeTarget(19000));
    const applied = await versions.propose(withPrimeTarget(19000), { author: 'ana', message: 'higher target' });
    expect(applied).toMatchObject({ book: v2, result: 'applied', bidding: ['acq_prime_new'] });
    expect(served).toBe(v2);
    expect(bookVersion(JSON.parse(readFileSync(strategiesPath, 'utf8')))).toBe(v2);
    expect(versions.list().events.map((e) => [e.id, e.result, e.live ?? false])).toEqual([
      [v2, 'applied', true],
      [bookVersion(demo()), 'applied', false],
    ]);
  });

  test('a refused book is kept with its errors; the file and the served book stay as they were', async () => {
    const bad = withPrimeTarget(19000);
    bad.strategies.find((s) => s.id === 'acq_prime_new')!.bid.exponent = 9;
    const before = served;
    const refusal = await versions.propose(bad, { author: 'ana', message: 'steeper' }).catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(BookRefused);
    expect((refusal as BookRefused).errors).toEqual(['book is invalid:', 'strategies[3](acq_prime_new).bid.exponent: Too big: expected number to be <=4']);
    expect(served).toBe(before);
    expect(readFileSync(strategiesPath, 'utf8')).toBe(DEMO_TEXT);
    expect(history.live).toBe(before);
    const [event] = history.list();
    expect(event).toMatchObject({ id: bookVersion(bad), author: 'ana', result: 'refused', errors: (refusal as BookRefused).errors });
    expect(versions.show(bookVersion(bad))).toMatchObject({ live: false, book: bad });
  });

  test('a reload refused after the check restores the file', async () => {
    refuseNextReload = true;
    await expect(versions.propose(withPrimeTarget(19000), { author: 'ana', message: 'higher target' })).rejects.toThrow(BookRefused);
    expect(readFileSync(strategiesPath, 'utf8')).toBe(DEMO_TEXT);
    expect(history.list()[0]).toMatchObject({ result: 'refused', errors: ['serving thread exited during the strategies reload'] });
  });

  test('rolling back puts the stored version, as it was written, back in the file and in service', async () => {
    const v1 = served;
    await versions.propose(withPrimeTarget(19000), { author: 'ana', message: 'higher target' });
    const rolledBack = await versions.apply(v1, { author: 'ben', message: 'the higher target overspends' });
    expect(rolledBack).toMatchObject({ book: v1, result: 'rolled_back' });
    expect(served).toBe(v1);
    expect(readFileSync(strategiesPath, 'utf8')).toBe(DEMO_TEXT);
    expect(versions.list().events[0]).toMatchObject({ id: v1, author: 'ben', result: 'rolled_back', live: true });
    await expect(versions.apply('0123456789ab', { author: 'ben', message: 'typo' })).rejects.toThrow(UnknownVersion);
  });

  test('a hand-edited file is recorded when a reload puts it in service, or refused with the reload errors', async () => {
    const edited = withPrimeTarget(12000);
    writeFileSync(strategiesPath, JSON.stringify(edited, null, 4));
    await versions.fromFile({ author: 'file', message: 'reloaded' }, async () => 'ok');
    expect(history.list()[0]).toMatchObject({ id: bookVersion(edited), author: 'file', result: 'applied' });

    await versions.fromFile({ author: 'file', message: 'reloaded' }, async () => 'ok');
    expect(history.list()).toHaveLength(2);

    writeFileSync(strategiesPath, JSON.stringify(withPrimeTarget(13000)));
    await expect(versions.fromFile({ author: 'file', message: 'reloaded' }, () => Promise.reject(new Error(REFUSAL)))).rejects.toThrow(REFUSAL);
    expect(history.list()[0]).toMatchObject({ id: bookVersion(withPrimeTarget(13000)), result: 'refused', errors: REFUSAL.split('\n').map((l) => l.trim()) });
    expect(history.live).toBe(bookVersion(edited));
  });
});
