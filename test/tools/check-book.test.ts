import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO_ROOT } from '../support/engine-process.js';

/** `rta check` on the demo store: the guardrails that need the audience's values, not only the file. */
const check = (book: string) => execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'check', '--book', book, '--devices', '4000'], { encoding: 'utf8' });
const row = (text: string, id: string) => text.split('\n').find((l) => l.startsWith(`${id} `))!;

describe('rta check', () => {
  test('the demo book: targets near the audience median, mean coefficients near 1.0, no warning for them', () => {
    const text = check(join(REPO_ROOT, 'data/strategies.json'));
    expect(text).toMatch(/^4000 stored devices decided/);
    for (const id of ['acq_prime_new', 'react_dormant', 'nudge_registered']) {
      const [, valued, , , ratio, taken, mean] = row(text, id).trim().split(/\s+/);
      expect(Number(valued)).toBeGreaterThan(0);
      expect(Number(ratio)).toBeGreaterThan(1 / 3);
      expect(Number(ratio)).toBeLessThan(3);
      expect(Number(taken)).toBeGreaterThan(0);
      expect(Number(mean)).toBeGreaterThan(0.5);
      expect(Number(mean)).toBeLessThan(2);
      expect(text).not.toMatch(new RegExp(`^  ${id}:`, 'm'));
    }
  });

  test('a target 100x the audience value is warned about, with the ratio and the median', () => {
    const book = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8'));
    for (const s of book.strategies) if (s.id === 'acq_prime_new') s.bid.targetValueFen = 1_000_000;
    const file = join(mkdtempSync(join(tmpdir(), 'rta-check-')), 'book.json');
    writeFileSync(file, JSON.stringify(book));
    const text = check(file);
    expect(text).toMatch(/^  acq_prime_new: targetValueFen 1000000 is \d+\.\d\dx the audience's median value \d+\.\d\d: most coefficients will sit at a clamp$/m);
    expect(text).toMatch(/^  acq_prime_new: mean coefficient 0\.\d\d is far from 1\.0/m);
  });
});
