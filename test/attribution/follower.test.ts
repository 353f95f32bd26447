import { appendFileSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { DecisionLogFollower } from '../../src/attribution/follower.js';
import { DECISION_LOG_MAGIC } from '../../src/observe/decision-log/files.js';

/**
 * The follower shares its thread's core with a serving thread: at the serving priority a backlog is taken in short
 * runs with sleeps between them, so timers (and, in the engine, the kernel's other threads) get their turn in the
 * middle of it. (Below it, as the engine's lowered main thread, it does not sleep: not what this test runs as.)
 */
test.skipIf(process.platform === 'linux' && getPriority(0) > 0)('a long backlog is taken in short runs: timers due meanwhile fire between them; the backlog is shown, then 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rta-follower-'));
  const file = join(dir, 'decisions-20261201T000000000Z-000-t0.rtalog');
  writeFileSync(file, DECISION_LOG_MAGIC);
  const RECORDS = 20_000;
  const records: Buffer[] = [];
  for (let i = 0; i < RECORDS; i++) {
    const body = Buffer.from(`record ${i} `.padEnd(120, '.'));
    records.push(Buffer.concat([Buffer.from([body.length]), body]));
  }
  appendFileSync(file, Buffer.concat(records));

  let ticks = 0;
  const ticker = setInterval(() => ticks++, 1);
  const tickOfRecord: number[] = [];
  const taken: number[] = [];
  const follower = new DecisionLogFollower(
    dir,
    (bytes, start, end) => {
      tickOfRecord.push(ticks);
      taken.push(Number(bytes.toString('latin1', start, end).split(' ')[1]));
    },
    (error) => {
      throw error;
    },
  );
  await follower.read();
  clearInterval(ticker);

  expect(taken).toEqual(records.map((_, i) => i));
  // All in one run (one event-loop turn) would see a single tick count.
  expect(new Set(tickOfRecord).size).toBeGreaterThan(1);
  expect(follower.backlogBytes).toBe(statSync(file).size);
  await follower.read();
  expect(follower.backlogBytes).toBe(0);
});
