import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { bookVersion } from '../../src/strategy/versions.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { loadPersonas, metricSum, native, requestFor, send } from '../support/rta-client.js';

/**
 * The strategy book's versions on the real engine (both serving threads): a book applied through the admin port is
 * what native replies and metrics name at once; a refused one is kept with its errors while the old one serves;
 * the CLI rolls back with one command; a hand-edited file reloaded is recorded too.
 */

const TOKEN = 'book-versions-test-token-0123';
let dir: string;
let strategiesPath: string;
let engine: EngineProcess;
const personas = loadPersonas();
const original = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8'));

function changed(edit: (book: any) => void): any {
  const book = structuredClone(original);
  edit(book);
  return book;
}
const primeTarget = (value: number) => changed((book) => (book.strategies.find((s: any) => s.id === 'acq_prime_new').bid.targetValueFen = value));

async function admin(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const response = await fetch(`${engine.adminUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}` },
    body: body === undefined ? null : JSON.stringify(body),
  });
  return { status: response.status, text: await response.text() };
}

async function adminJson(method: 'GET' | 'POST', path: string, body?: unknown): Promise<any> {
  const reply = await admin(method, path, body);
  expect(reply.status, reply.text).toBe(200);
  return JSON.parse(reply.text);
}

/** The book version a native reply names, for a prime prospect (taken) and a blacklisted device (rejected early). */
async function servedVersions(): Promise<string[]> {
  const replies = await Promise.all(
    [personas.prime_prospect[0]!, personas.blacklisted[0]!].map((device) => send(engine, native, requestFor(device))),
  );
  return replies.map(({ decoded }) => decoded.book_version as string);
}

async function bookInfo(version: string): Promise<number> {
  return metricSum((await admin('GET', '/metrics')).text, 'rta_book_info', { version });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rta-book-versions-'));
  strategiesPath = join(dir, 'strategies.json');
  copyFileSync(join(REPO_ROOT, 'data/strategies.json'), strategiesPath);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ strategies: strategiesPath, scoring: { watchManifest: false } }));
  engine = await startEngine({
    RTA_CONFIG: join(dir, 'config.json'),
    RTA_STRATEGY_HISTORY: join(dir, 'history'),
    RTA_ADMIN_TOKEN: TOKEN,
    RTA_ADMIN_AUTH: 'always',
    RTA_APP_THREADS: '2',
    ...DECISIONS_ENV,
  });
});

afterAll(async () => {
  await engine?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('strategy book versions', () => {
  const v1 = bookVersion(original);
  const v2 = bookVersion(primeTarget(19000));

  test('the book history needs the admin token like every admin route', async () => {
    expect((await fetch(`${engine.adminUrl}/books`)).status).toBe(401);
  });

  test('the first start records the file as the initial version, which replies and metrics name', async () => {
    const listing = await adminJson('GET', '/books');
    expect(listing).toEqual({ live: v1, events: [expect.objectContaining({ id: v1, author: 'file', message: 'initial', result: 'applied', live: true })] });
    expect(await servedVersions()).toEqual([v1, v1]);
    expect(await bookInfo(v1)).toBe(1);
  });

  test('a new book is applied on every thread, written to the file, and named by replies and metrics at once', async () => {
    const applied = await adminJson('POST', '/books', { book: primeTarget(19000), author: 'ana', message: 'double the prime target' });
    expect(applied).toMatchObject({ book: v2, result: 'applied', bidding: expect.arrayContaining(['acq_prime_new']) });
    expect(await servedVersions()).toEqual([v2, v2]);
    expect([await bookInfo(v2), await bookInfo(v1)]).toEqual([1, 0]);
    expect(bookVersion(JSON.parse(readFileSync(strategiesPath, 'utf8')))).toBe(v2);

    const diff = await adminJson('GET', `/books/${v1}/diff/${v2}`);
    expect(diff.strategies.changed).toEqual([{ id: 'acq_prime_new', changes: [{ field: 'bid.targetValueFen', from: 9500, to: 19000 }] }]);
  });

  test('a refused book is answered 422 with its errors and kept as refused; the old book keeps serving', async () => {
    const bad = changed((book) => (book.strategies.find((s: any) => s.id === 'react_dormant').when.flagsAll = ['aproved', 'dormant']));
    const reply = await admin('POST', '/books', { book: bad, author: 'ana', message: 'typo' });
    expect(reply.status).toBe(422);
    expect(reply.text).toMatch(new RegExp(`^book_refused: book ${bookVersion(bad)} refused: .*aproved`));
    expect(await servedVersions()).toEqual([v2, v2]);
    expect(bookVersion(JSON.parse(readFileSync(strategiesPath, 'utf8')))).toBe(v2);

    const shown = await adminJson('GET', `/books/${bookVersion(bad)}`);
    expect(shown).toMatchObject({ id: bookVersion(bad), live: false, book: bad, events: [{ result: 'refused', author: 'ana' }] });
    expect(shown.events[0].errors.join(' ')).toMatch(/aproved/);
  });

  test('bad calls get one-line refusals', async () => {
    expect(await admin('POST', '/books', { book: original, author: 'ana' })).toEqual({ status: 400, text: 'invalid_request: message: Invalid input: expected string, received undefined\n' });
    expect((await admin('POST', '/books', 'not a book')).text).toMatch(/^invalid_request: /);
    expect(await admin('GET', '/books/0123456789ab')).toEqual({ status: 404, text: 'not_found: no stored book version "0123456789ab"\n' });
  });

  test('the CLI rolls back with one command', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      join(REPO_ROOT, 'dist/tools/rta.js'),
      'book',
      'rollback',
      v1,
      '--admin',
      engine.adminUrl,
      '--token',
      TOKEN,
      '--author',
      'ben',
      '--message',
      'the higher target overspends',
    ]);
    expect(stdout).toMatch(new RegExp(`^rolled back to ${v1} on every serving thread`));
    expect(await servedVersions()).toEqual([v1, v1]);
    expect([await bookInfo(v1), await bookInfo(v2)]).toEqual([1, 0]);
    const listing = await adminJson('GET', '/books');
    expect(listing.live).toBe(v1);
    expect(listing.events[0]).toMatchObject({ id: v1, author: 'ben', result: 'rolled_back', live: true });
  });

  test('a hand-edited file reloaded with POST /reload/strategies is recorded; reformatting alone is no new version', async () => {
    writeFileSync(strategiesPath, JSON.stringify(original, null, 4));
    expect((await admin('POST', '/reload/strategies')).status).toBe(200);
    expect((await adminJson('GET', '/books')).events).toHaveLength(4);

    const edited = changed((book) => (book.cacheTtlSeconds.take = 7200));
    writeFileSync(strategiesPath, JSON.stringify(edited, null, 4));
    expect(await adminJson('POST', '/reload/strategies')).toMatchObject({ book: bookVersion(edited) });
    expect((await adminJson('GET', '/books')).events[0]).toMatchObject({ id: bookVersion(edited), author: 'file', result: 'applied', live: true });
    expect(await servedVersions()).toEqual([bookVersion(edited), bookVersion(edited)]);
  });

  test('a book served with warnings answers them and keeps them in its history event', async () => {
    const flat = changed((book) => {
      const bid = book.strategies.find((s: any) => s.id === 'acq_prime_new').bid;
      bid.minCoefficient = bid.maxCoefficient = 1.5;
    });
    const warning = 'strategies[3](acq_prime_new).bid: minCoefficient = maxCoefficient = 1.5, so every device taken gets that coefficient';
    expect(await adminJson('POST', '/books', { book: flat, author: 'ana', message: 'flat prime' })).toMatchObject({ book: bookVersion(flat), result: 'applied', warnings: [warning] });
    expect((await adminJson('GET', `/books/${bookVersion(flat)}`)).events).toEqual([expect.objectContaining({ result: 'applied', warnings: [warning] })]);
    expect(await adminJson('POST', '/books', { book: original, author: 'ana', message: 'back' })).not.toHaveProperty('warnings');

    const file = join(dir, 'flat.json');
    writeFileSync(file, JSON.stringify(flat));
    const cli = ['book', 'apply', file, '--admin', engine.adminUrl, '--token', TOKEN, '--author', 'ben', '--message', 'flat again'];
    const { stdout } = await promisify(execFile)(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), ...cli]);
    expect(stdout).toContain(`\n  warning: ${warning}\n`);
  });
});
