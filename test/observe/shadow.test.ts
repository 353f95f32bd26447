import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { BidContext, Decision } from '../../src/engine/types.js';
import { DecisionLogRecorder } from '../../src/observe/decision-log/recorder.js';
import { readDecisionLog } from '../../src/observe/decision-log/reader.js';
import { explainDecision, explanationText } from '../../src/observe/explain.js';
import { HotCounter } from '../../src/observe/hot-metrics.js';
import { loadProfileSchema } from '../../src/store/profile-schema.js';
import { offlineEngine } from '../../src/tools/dry-run.js';
import { REPO_ROOT } from '../support/engine-process.js';
import { primeProspectContext } from '../support/offline.js';

test("a shadow strategy: not in the reply; in the decision log and explain with what it would have sent, under the media's rules", async () => {
  const book = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8'));
  book.strategies.find((s: { id: string }) => s.id === 'acq_prime_new').shadow = true;
  const dir = mkdtempSync(join(tmpdir(), 'rta-shadow-'));
  const file = join(dir, 'book.json');
  writeFileSync(file, JSON.stringify(book));
  const config = loadConfig({ env: {} });
  // Narrower rules than the book's: what the shadow "would have sent" is what Tencent would have got.
  config.media.tencent = { ...config.media.tencent!, coefficient: { min: 0.2, max: 1.5, decimals: 1 } };
  const { engine } = offlineEngine(config, file);
  const recorder = await DecisionLogRecorder.open({ ...config.decisionLog, dir: join(dir, 'log') }, 0, new HotCounter('t_records_total', 'test', ['result'] as const, new Registry()), (error) => {
    throw error;
  });
  const context = primeProspectContext('shadow-1', false);
  const profile = loadProfileSchema(config.store.profileSchema);
  let sent: string[] = [];
  let text = '';
  // Facts are valid only while a decision is delivered: recorded and explained right there, as the server does.
  const deliver = (c: BidContext, decision: Decision) => {
    sent = decision.strategies.map((s) => s.strategyId);
    recorder.record(c, decision, Date.now(), null);
    text = explanationText(explainDecision(c, decision, {}, profile));
  };
  engine.handle(context, { deliver }, performance.now());
  await recorder.close();

  expect(sent).not.toContain('acq_prime_new');
  const [entry] = [...readDecisionLog([join(dir, 'log')])];
  const logged = entry!.strategies.find((s) => s.strategyId === 'acq_prime_new')!;
  expect(logged).toMatchObject({ verdict: 'shadow', creativeId: expect.any(Number) });
  expect(logged.coefficient).toBeGreaterThan(0);
  expect(logged.coefficient).toBeLessThanOrEqual(1.5);
  expect(Math.abs(logged.coefficient! * 10 - Math.round(logged.coefficient! * 10))).toBeLessThan(1e-6);
  expect(logged.creativeId).toBeGreaterThan(0);
  expect(text).toMatch(new RegExp(`^  acq_prime_new: shadow`, 'm'));
  expect(text).toMatch(new RegExp(`round -> ${logged.coefficient} \\(not sent\\)`));
});
