import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { LearningState } from '../../src/learning/online-learning.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { adminJson, loadPersonas, native, post, requestFor, send, waitForMetric } from '../support/rta-client.js';

/**
 * Online learning on a real engine: prime prospects' applications are all approved and dormant customers' never
 * (the opposite of what the daily approve model expects); once the applications have waited labelAfterSeconds, a
 * look publishes a learned approve model, the serving threads answer with its version, its figures are kept, and
 * a person's rollback puts the daily file back.
 */
const personas = loadPersonas();
const primes = personas.prime_prospect;
const dormants = personas.dormant_approved;
const signature = { author: 'ana', message: 'test online learning' };
const DAILY = JSON.parse(readFileSync(join(REPO_ROOT, 'data/models/manifest.json'), 'utf8')).models.find((m: { name: string }) => m.name === 'approve').version as string;

describe('online learning', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rta-learning-'));
  let engine: EngineProcess;
  let requests = 0;
  const admin = <T>(method: 'GET' | 'POST', path: string, body?: unknown) => adminJson<T>(engine, method, path, body);
  const decide = async (device: (typeof primes)[number]) => {
    const requestId = `learn-${++requests}`;
    const { decoded } = await send(engine, native, requestFor(device, { requestId }));
    const reply = decoded as { model_version: string; decisions: { strategy_id: string }[] };
    return { requestId, strategyId: reply.decisions[0]!.strategy_id, modelVersion: reply.model_version };
  };

  beforeAll(async () => {
    const config = { learning: { enabled: true, dir: join(dir, 'learning'), minExamples: 60, labelAfterSeconds: 1, ftrl: { alpha: 0.5, holdout: 50 } }, scoring: { watchManifest: false } };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    engine = await startEngine({ ...DECISIONS_ENV, RTA_CONFIG: join(dir, 'config.json'), RTA_STRATEGY_HISTORY: join(dir, 'history'), RTA_DECISION_LOG_FLUSH_MS: '10' });
  }, 60_000);
  afterAll(() => engine?.stop());

  test('a learned model better on unseen examples goes into service as a new version; a rollback restores the daily one', async () => {
    const taken = [];
    for (let round = 0; round < 10; round++) for (const device of [...primes, ...dormants]) taken.push({ approved: primes.includes(device), ...(await decide(device)) });
    expect(taken[0]!.modelVersion).toContain(`approve@${DAILY}`);
    expect(await waitForMetric(engine, 'rta_attribution_log_records_total', {}, taken.length, 10_000)).toBe(taken.length);
    const events = taken.flatMap(({ requestId, strategyId, approved }) => [
      { trace_id: requestId, media: 'native', strategy_id: strategyId, event: 'credit_application', event_time: Date.now() },
      ...(approved ? [{ trace_id: requestId, media: 'native', strategy_id: strategyId, event: 'credit_approved', event_time: Date.now() }] : []),
    ]);
    expect(JSON.parse((await post(`${engine.adminUrl}/events`, events.map((e) => JSON.stringify(e)).join('\n'), 'application/x-ndjson')).text)).toMatchObject({ joined: events.length });

    const early = await admin<LearningState>('POST', '/learning/run', signature);
    expect(early.lastLook).toMatchObject({ result: 'too_few_examples', version: DAILY });
    // Every application is labelled at the same age, labelAfterSeconds (1 s), approved by then or not; all 60
    // examples are needed (minExamples).
    expect(early).toMatchObject({ pendingApplications: 60, examples: { positive: 0, negative: 0 } });
    let look = early;
    const deadline = Date.now() + 10_000;
    while (look.lastLook!.result !== 'published' && Date.now() < deadline) look = await admin<LearningState>('POST', '/learning/run', signature);
    expect(look.examples).toEqual({ positive: 30, negative: 30 });
    const published = look.lastLook!;
    expect(published).toMatchObject({ result: 'published', version: `${DAILY}.online-1` });
    expect(published.figures.candidate.logLoss).toBeLessThan(published.figures.live.logLoss);
    expect(published.figures.candidate.auc).toBeGreaterThanOrEqual(published.figures.live.auc);
    expect((await decide(primes[0]!)).modelVersion).toContain(`approve@${DAILY}.online-1`);
    const kept = readFileSync(join(dir, 'learning', 'versions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(kept.at(-1)).toMatchObject({ result: 'published', version: `${DAILY}.online-1`, figures: { holdout: 50 } });
    const status = execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'learning', '--admin', engine.adminUrl], { encoding: 'utf8' });
    expect(status).toContain(`learning approve on, every 60 min; in service approve@${DAILY}.online-1`);

    const rolledBack = await admin<LearningState>('POST', '/learning/rollback', { author: 'ben', message: 'not this one' });
    expect(rolledBack).toMatchObject({ enabled: false, inService: DAILY, lastLook: { result: 'rolled_back', reason: `ben: not this one (${DAILY}.online-1 taken out of service)` } });
    expect(readFileSync(join(dir, 'learning', 'versions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).result)).toEqual(['published', 'rolled_back']);
    // The rejected correction is not published again without new evidence.
    expect((await admin<LearningState>('POST', '/learning/run', signature)).lastLook).toMatchObject({ result: 'too_few_examples' });
    expect((await decide(primes[0]!)).modelVersion).toContain(`approve@${DAILY},`);
  }, 60_000);

  test('a learning action must say who and why', async () => {
    const answer = await post(`${engine.adminUrl}/learning/on`, '{}', 'application/json');
    expect(answer.status).toBe(400);
  });
});
