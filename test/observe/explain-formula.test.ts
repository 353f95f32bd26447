import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { BidContext, Decision } from '../../src/engine/types.js';
import { explainDecision, explanationText } from '../../src/observe/explain.js';
import { loadProfileSchema } from '../../src/store/profile-schema.js';
import { offlineEngine } from '../../src/tools/dry-run.js';
import { REPO_ROOT } from '../support/engine-process.js';
import { primeProspectContext } from '../support/offline.js';

test('explain shows a strategy formula with the value of every input it read, through the serving engine', () => {
  const book = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8'));
  const prime = book.strategies.find((s: { id: string }) => s.id === 'acq_prime_new');
  prime.value = 'score.apply * field.income_score * 100000 - bid.minValueFen';
  const file = join(mkdtempSync(join(tmpdir(), 'rta-formula-')), 'book.json');
  writeFileSync(file, JSON.stringify(book));
  const config = loadConfig({ env: {} });
  const { engine } = offlineEngine(config, file);
  const context = primeProspectContext('formula-1', true);
  let text = '';
  let valueFen = NaN;
  const profile = loadProfileSchema(config.store.profileSchema);
  // Facts are valid only while a decision is delivered, so it is explained right there, as the admin route does.
  const deliver = (c: BidContext, decision: Decision) => {
    const explanation = explainDecision(c, decision, {}, profile);
    valueFen = explanation.strategies.find((s) => s.id === 'acq_prime_new')!.value!.fen;
    text = explanationText(explanation);
  };
  engine.handle(context, { deliver }, performance.now());
  const line = text.split('\n').find((l) => l.includes('value = score.apply'))!;
  const match = /value = score\.apply \* field\.income_score \* 100000 - bid\.minValueFen with score\.apply = ([\d.]+), field\.income_score = ([\d.]+), bid\.minValueFen = (\d+) = ([\d.]+) fen/.exec(line);
  expect(match, text).not.toBeNull();
  const [apply, income, floor] = [Number(match![1]), Number(match![2]), Number(match![3])];
  expect(Number(match![4])).toBeGreaterThan(0);
  expect(valueFen).toBeCloseTo(apply * income * 100000 - floor, -1);
  expect(text).toMatch(/acq_prime_new: taken/);
});
