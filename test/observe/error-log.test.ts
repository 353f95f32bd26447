import { afterEach, describe, expect, test, vi } from 'vitest';
import { ErrorLog } from '../../src/observe/error-log.js';

/** The JSON lines the log wrote to stderr. */
function capture(): { lines: () => Record<string, unknown>[] } {
  const writes: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => writes.push(String(chunk)) > 0);
  return { lines: () => writes.map((w) => JSON.parse(w) as Record<string, unknown>) };
}

afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('ErrorLog', () => {
  test('logs each distinct error once, then summarises the repeats at most once per period', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const stderr = capture();
    const errors = new ErrorLog(256, 60_000);
    for (let i = 0; i < 1000; i++) errors.report('decide', new Error('condition on a missing field'));
    errors.report('score', new RangeError('tree 17'));
    expect(stderr.lines().map((l) => [l.event, l.stage, l.message])).toEqual([
      ['request_error', 'decide', 'Error: condition on a missing field'],
      ['request_error', 'score', 'RangeError: tree 17'],
    ]);
    vi.setSystemTime(1_000_000 + 60_000);
    errors.report('decide', new Error('condition on a missing field'));
    expect(stderr.lines().slice(2)).toEqual([
      expect.objectContaining({ event: 'request_errors_repeated', repeats: { 'decide Error: condition on a missing field': 1000 }, unlistedDistinct: 0 }),
    ]);
  });

  test('past its bound, new distinct errors are only counted', () => {
    vi.useFakeTimers({ now: 5_000_000 });
    const stderr = capture();
    const errors = new ErrorLog(2, 60_000);
    for (let i = 0; i < 50; i++) errors.report('encode', new Error(`message ${i}`));
    expect(stderr.lines().filter((l) => l.event === 'request_error')).toHaveLength(2);
    vi.setSystemTime(5_000_000 + 60_000);
    errors.report('encode', new Error('message 0'));
    expect(stderr.lines().at(-1)).toMatchObject({ event: 'request_errors_repeated', unlistedDistinct: 48 });
  });
});
