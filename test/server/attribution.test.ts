import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadProto } from '../../src/media/protobuf.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { loadPersonas, metricSum, post, requestFor, scrape, send, tencent, waitForMetric } from '../support/rta-client.js';

/**
 * Attribution end to end: a real engine decides real Tencent requests, its events endpoint takes JSON Lines and
 * protobuf on the admin port, and the results come back through /results, `rta report` and the metrics; then a
 * restart on the same folders rebuilds them.
 */
const personas = loadPersonas();
const prime = personas.prime_prospect.find((d) => d.os === 'android')!;
const EventBatch = loadProto(new URL('../../proto/events/events.proto', import.meta.url)).lookupType('rta.events.EventBatch');

interface ResultsBody {
  rememberedDecisions: number;
  rows: { strategy: string; arm: string; decisions: number; takes: number; events: Record<string, number>; costFen: number; costPerApprovedFen: number | null }[];
}

describe('attribution on a running engine', () => {
  const dirs = { RTA_DECISION_LOG_DIR: mkdtempSync(join(tmpdir(), 'rta-attr-log-')), RTA_ATTRIBUTION_DIR: mkdtempSync(join(tmpdir(), 'rta-attr-events-')) };
  // A short flush, so the decisions reach the log at once.
  const env = { ...DECISIONS_ENV, ...dirs, RTA_DECISION_LOG_FLUSH_MS: '10' };
  let engine: EngineProcess;
  let strategy = '';
  const postEvents = (lines: object[]) =>
    post(`${engine.adminUrl}/events`, lines.map((l) => JSON.stringify({ media: 'tencent', event_time: Date.now(), ...l })).join('\n'), 'application/x-ndjson');
  const results = async (by = 'strategy,arm') => (await (await fetch(`${engine.adminUrl}/results?by=${by}`)).json()) as ResultsBody;

  beforeAll(async () => {
    engine = await startEngine(env);
    const { decoded } = await send(engine, tencent, requestFor(prime, { requestId: 'attr-prime-1' }));
    strategy = (decoded.out_target_id as string[])[0]!;
    await send(engine, tencent, requestFor(prime, { requestId: 'attr-prime-2' }));
  }, 60_000);
  afterAll(() => engine?.stop());

  test('JSON Lines: joined, duplicate and unmatched events, each counted; a bad line refused by number', async () => {
    // Both decisions written by the serving threads and read by attribution (it follows the log every second).
    expect(await waitForMetric(engine, 'rta_attribution_log_records_total', {}, 2, 10_000)).toBe(2);
    let reply = await postEvents([{ trace_id: 'attr-prime-1', event: 'impression', cost_fen: 120 }]);
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.text)).toMatchObject({ joined: 1 });
    reply = await postEvents([
      { trace_id: 'attr-prime-1', event: 'impression', cost_fen: 120 },
      { trace_id: 'attr-prime-1', event: 'credit_approved' },
      { trace_id: 'never-sent', event: 'click' },
      { trace_id: 'attr-prime-2', event: 'explosion' },
    ]);
    expect(JSON.parse(reply.text)).toMatchObject({ joined: 1, duplicates: 1, unmatched: 1, refused: 1, refusals: [{ line: 4, reason: 'invalid_event' }] });
  });

  test('protobuf: an EventBatch on the same endpoint', async () => {
    const body = EventBatch.encode(EventBatch.create({ events: [{ trace_id: 'attr-prime-2', media: 'tencent', event: 1, cost_fen: 80, event_time_ms: Date.now() }] })).finish();
    const reply = await post(`${engine.adminUrl}/events`, body, 'application/x-protobuf');
    expect(JSON.parse(reply.text)).toMatchObject({ joined: 1, refused: 0 });
    expect((await post(`${engine.adminUrl}/events`, '{}', 'text/csv')).status).toBe(415);
  });

  test('results per strategy and arm: the admin call, rta report and the metrics agree', async () => {
    const body = await results();
    const row = body.rows.find((r) => r.strategy === strategy)!;
    expect(row).toMatchObject({ decisions: 2, takes: 2, costFen: 200, costPerApprovedFen: 200 });
    expect(row.events).toMatchObject({ impression: 2, credit_approved: 1 });
    const report = execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'report', '--admin', engine.adminUrl], { encoding: 'utf8' });
    // strategy, arm, decisions, takes, then impressions ... approved; cost 2.00 yuan, 2.00 yuan per approved.
    expect(report).toMatch(new RegExp(`^${strategy}\\s+${row.arm}\\s+2\\s+2\\s+2\\s+0\\s+0\\s+0\\s+0\\s+1\\s+0\\s+0\\s+2\\.00\\s+2\\.00\\s`, 'm'));
    const metrics = await scrape(engine);
    expect(metricSum(metrics, 'rta_funnel_events_total', { strategy, event: 'impression' })).toBe(2);
    expect(metricSum(metrics, 'rta_funnel_cost_fen_total', { strategy })).toBe(200);
    expect(metricSum(metrics, 'rta_attribution_events_total', { result: 'unmatched' })).toBe(1);
    expect(metricSum(metrics, 'rta_attribution_remembered_decisions')).toBe(2);
    const badBy = await fetch(`${engine.adminUrl}/results?by=strategy,colour`);
    expect([badBy.status, await badBy.text()]).toEqual([400, 'invalid_request: by: "colour" is not one of strategy, arm, creative, book\n']);
  });

  test('rta events posts a file; a restart on the same folders gives the same results and still knows duplicates', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'rta-events-file-')), 'events.jsonl');
    writeFileSync(file, `${JSON.stringify({ trace_id: 'attr-prime-2', media: 'tencent', event: 'click', cost_fen: 30, event_time: Date.now() })}\n`);
    const rta = () => execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'events', file, '--admin', engine.adminUrl], { encoding: 'utf8' });
    expect(rta()).toBe('joined 1, duplicates 0, late 0, unmatched 0, refused 0\n');
    const before = await results('strategy,arm,creative,book');
    expect(await engine.stop()).toBe(0);
    engine = await startEngine(env);
    expect(await results('strategy,arm,creative,book')).toEqual(before);
    expect(rta()).toBe('joined 0, duplicates 1, late 0, unmatched 0, refused 0\n');
  }, 60_000);
});
