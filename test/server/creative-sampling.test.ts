import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ControllerState } from '../../src/controllers/controller.js';
import type { SharesStep } from '../../src/controllers/creative-sampling.js';
import type { Listing } from '../../src/strategy/versions.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { adminJson, loadPersonas, native, post, requestFor, send, waitForMetric } from '../support/rta-client.js';

/**
 * The creative-sampling controller on a real engine: a person's shares send a prime prospect one creative and then
 * the other; clicks and approvals come back far better for the first; a look moves the shares toward it (floor
 * kept) as a new book version the serving threads answer with, explain says the creative was sampled, and a
 * person's rollback restores the shares.
 */
const prime = loadPersonas().prime_prospect.find((d) => d.os === 'android')!;
const signature = { author: 'ana', message: 'test the controller' };

describe('creative sampling', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rta-creatives-'));
  let engine: EngineProcess;
  let requests = 0;
  const admin = <T>(method: 'GET' | 'POST', path: string, body?: unknown) => adminJson<T>(engine, method, path, body);
  const bookWithShares = (shares: [number, number]) => {
    const book = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8'));
    const strategy = book.strategies.find((s: { id: string }) => s.id === 'acq_prime_new');
    strategy.creativeSampling = { floorShare: 0.05, minImpressions: 4 };
    strategy.creatives = [
      { id: 710101, share: shares[0] },
      { id: 710100, share: shares[1] },
    ];
    return book;
  };
  /** Sends the prime prospect once; its trace id and the creative acq_prime_new chose. */
  const creative = async () => {
    const requestId = `creative-${++requests}`;
    const { decoded } = await send(engine, native, requestFor(prime, { requestId }));
    const decision = (decoded.decisions as { strategy_id: string; creative_id: string }[]).find((d) => d.strategy_id === 'acq_prime_new')!;
    return { requestId, creative: Number(decision.creative_id) };
  };
  const events = (traces: string[], clicks: number, approvals: number) =>
    traces.flatMap((trace_id, i) => [
      { trace_id, media: 'native', strategy_id: 'acq_prime_new', event: 'impression', cost_fen: 30, event_time: Date.now() },
      ...(i < clicks ? [{ trace_id, media: 'native', strategy_id: 'acq_prime_new', event: 'click', event_time: Date.now() }] : []),
      ...(i < approvals ? [{ trace_id, media: 'native', strategy_id: 'acq_prime_new', event: 'credit_approved', event_time: Date.now() }] : []),
    ]);

  beforeAll(async () => {
    writeFileSync(join(dir, 'strategies.json'), JSON.stringify(bookWithShares([1, 0]), null, 2));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ strategies: join(dir, 'strategies.json'), scoring: { watchManifest: false } }));
    engine = await startEngine({ ...DECISIONS_ENV, RTA_CONFIG: join(dir, 'config.json'), RTA_STRATEGY_HISTORY: join(dir, 'history'), RTA_DECISION_LOG_FLUSH_MS: '10' });
  }, 60_000);
  afterAll(() => engine?.stop());

  test('a look moves the shares toward the creative that gets approvals; a rollback restores them', async () => {
    const first = await Promise.all(Array.from({ length: 20 }, () => creative()));
    expect(new Set(first.map((c) => c.creative))).toEqual(new Set([710101]));
    await admin('POST', '/books', { book: bookWithShares([0, 1]), author: 'ana', message: 'try the other creative' });
    const second = await Promise.all(Array.from({ length: 20 }, () => creative()));
    expect(new Set(second.map((c) => c.creative))).toEqual(new Set([710100]));
    await admin('POST', '/books', { book: bookWithShares([0.5, 0.5]), author: 'ana', message: 'let the controller choose' });
    const personsVersion = (await admin<Listing>('GET', '/books')).live!;
    expect(await waitForMetric(engine, 'rta_attribution_log_records_total', {}, 40, 10_000)).toBe(40);
    const batch = [...events(first.map((c) => c.requestId), 12, 8), ...events(second.map((c) => c.requestId), 2, 0)];
    expect(JSON.parse((await post(`${engine.adminUrl}/events`, batch.map((e) => JSON.stringify(e)).join('\n'), 'application/x-ndjson')).text)).toMatchObject({ joined: batch.length });

    const look = await admin<ControllerState<SharesStep>>('POST', '/controllers/creatives/run', signature);
    const step = look.steps.find((s) => s.strategy === 'acq_prime_new')!;
    expect(step.changed).toBe(true);
    const [good, bad] = step.creatives;
    expect(good).toMatchObject({ creative: 710101, impressions: 20, clicks: 12, approvals: 8 });
    expect(bad).toMatchObject({ creative: 710100, impressions: 20, clicks: 2, approvals: 0 });
    // The floor, 0.05, plus the odd draw where the poor creative came out best.
    expect(bad!.share).toBeGreaterThanOrEqual(0.05);
    expect(bad!.share).toBeLessThan(0.06);
    expect(good!.share + bad!.share).toBeCloseTo(1, 2);
    const listing = await admin<Listing>('GET', '/books');
    expect(listing.events[0]).toMatchObject({ author: 'controller:creatives', result: 'applied', id: look.actions[0]!.book });
    const shown = await admin<{ book: { strategies: { id: string; creatives?: { id: number; share: number }[] }[] } }>('GET', `/books/${listing.live}`);
    expect(shown.book.strategies.find((s) => s.id === 'acq_prime_new')!.creatives!.map((c) => c.share)).toEqual([good!.share, bad!.share]);

    const served = await creative();
    const { body, contentType } = native.encodeRequest(requestFor(prime, { requestId: 'explain-creative' }));
    const explained = await fetch(`${engine.adminUrl}/explain?media=native`, { method: 'POST', body, headers: { 'Content-Type': contentType, Accept: 'text/plain' } });
    const share = served.creative === 710101 ? good!.share : bad!.share;
    expect(await explained.text()).toContain(`creative ${served.creative} (rule ${served.creative === 710101 ? 0 : 1}, sampled: share ${share} among those that suit)`);
    const status = execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'creatives', '--admin', engine.adminUrl], { encoding: 'utf8' });
    expect(status).toContain('  acq_prime_new: changed: shares, creative approvals/clicks/impressions -> share: 710101 8/12/20 ->');

    await admin('POST', `/books/${personsVersion}/apply`, { author: 'ben', message: 'undo the controller' });
    const restored = await admin<{ book: { strategies: { id: string; creatives?: { share: number }[] }[] } }>('GET', `/books/${personsVersion}`);
    expect((await admin<Listing>('GET', '/books')).live).toBe(personsVersion);
    expect(restored.book.strategies.find((s) => s.id === 'acq_prime_new')!.creatives!.map((c) => c.share)).toEqual([0.5, 0.5]);
  }, 60_000);

  test('an unknown controller is a 404 naming the ones there are', async () => {
    const answer = await post(`${engine.adminUrl}/controllers/bidding/run`, JSON.stringify(signature), 'application/json');
    expect([answer.status, answer.text]).toEqual([404, 'not_found: no controller "bidding" (bid-tuning, creatives)\n']);
  });
});
