import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { Attribution } from '../../src/attribution/attribution.js';
import { loadConfig } from '../../src/config.js';
import { loadProto } from '../../src/media/protobuf.js';
import { DECISION_LOG_MAGIC } from '../../src/observe/decision-log/files.js';
import { REPO_ROOT } from '../support/engine-process.js';
import { metricSum } from '../support/rta-client.js';

/**
 * Attribution in process: decision log files written in their real format (protobufjs encodes the records the
 * serving threads would write), events posted as JSON Lines and as EventBatch bytes, and what the join makes of them.
 */
const DecisionRecord = loadProto(new URL('../../proto/log/decision_log.proto', import.meta.url)).lookupType('rta.log.DecisionRecord');
const EventBatch = loadProto(new URL('../../proto/events/events.proto', import.meta.url)).lookupType('rta.events.EventBatch');
const TAKEN = 5;
const NO_VALUE = 3;
const MODELS = 'apply@1,approve@1,risk@1,ltv@1';
const HOUR = 3_600_000;
const NOW = Date.now();

interface Take {
  id: string;
  arm?: string;
  creative?: number;
  verdict?: number;
}

function record(traceId: string, takes: Take[], options: { timeMs?: number; risk?: number; test?: boolean; book?: string } = {}): Uint8Array {
  const message = DecisionRecord.create({
    time_ms: options.timeMs ?? NOW - HOUR,
    media: 'tencent',
    trace_id: Buffer.from(traceId),
    code: 0,
    reason: 'take',
    test: options.test ?? false,
    book_version: options.book ?? 'book-1',
    model_version: MODELS,
    scores: [0.2, 0.6, options.risk ?? 0.01, 0.5],
    strategies: takes.map((t) => ({
      strategy_id: t.id,
      verdict: t.verdict ?? TAKEN,
      coefficient: 1.2,
      creative_id: t.verdict === undefined || t.verdict === TAKEN ? (t.creative ?? 7001) : 0,
      arm_name: t.arm ?? 'control',
    })),
  });
  return DecisionRecord.encodeDelimited(message).finish();
}

interface Engine {
  attribution: Attribution;
  registry: Registry;
  logFile: string;
  dirs: { log: string; events: string };
}

function engine(options: { maxDecisions?: number; dirs?: Engine['dirs'] } = {}): Engine {
  const dirs = options.dirs ?? { log: mkdtempSync(join(tmpdir(), 'rta-attr-log-')), events: mkdtempSync(join(tmpdir(), 'rta-attr-events-')) };
  const logFile = join(dirs.log, 'decisions-20261201T000000000Z-000-t1.rtalog');
  if (!options.dirs) writeFileSync(logFile, DECISION_LOG_MAGIC);
  const config = loadConfig({ env: {} }).attribution;
  const registry = new Registry();
  const attribution = new Attribution({ ...config, dir: dirs.events, maxDecisions: options.maxDecisions ?? config.maxDecisions, lowRiskBelow: 0.05 }, dirs.log, ['tencent', 'native'], registry);
  attribution.start();
  return { attribution, registry, logFile, dirs };
}

const line = (fields: Record<string, unknown>) => JSON.stringify({ media: 'tencent', event_time: NOW - HOUR / 2, ...fields });
const post = (e: Engine, lines: string[]) => e.attribution.takeEvents(Buffer.from(lines.join('\n')), 'application/x-ndjson');
const rows = async (e: Engine, by: ('strategy' | 'arm' | 'creative' | 'book')[] = ['strategy']) => (await e.attribution.report(by)).rows;

describe('joining events to taken decisions', () => {
  test('each funnel stage once per take; cost per approved customer; approved with low predicted risk', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('t-1', [{ id: 'acq' }], { risk: 0.01 }));
    appendFileSync(e.logFile, record('t-2', [{ id: 'acq' }], { risk: 0.3 }));
    appendFileSync(e.logFile, record('t-3', [{ id: 'acq', verdict: NO_VALUE }]));
    const outcome = await post(e, [
      line({ trace_id: 't-1', event: 'impression', cost_fen: 40 }),
      line({ trace_id: 't-1', event: 'click', cost_fen: 60 }),
      line({ trace_id: 't-1', event: 'credit_approved', value_fen: 5000 }),
      line({ trace_id: 't-2', event: 'impression', cost_fen: 100 }),
      line({ trace_id: 't-2', event: 'credit_approved' }),
      line({ trace_id: 't-1', event: 'impression', cost_fen: 40 }),
    ]);
    expect(outcome).toMatchObject({ joined: 5, duplicates: 1, late: 0, unmatched: 0, refused: 0 });
    const [acq] = await rows(e);
    expect(acq).toMatchObject({ strategy: 'acq', decisions: 3, takes: 2, costFen: 200, valueFen: 5000, costPerApprovedFen: 100, approvedLowRisk: 1 });
    expect(acq!.events).toMatchObject({ impression: 2, click: 1, credit_approved: 2, loan_drawn: 0 });
    const metrics = await e.registry.metrics();
    expect(metricSum(metrics, 'rta_funnel_events_total', { strategy: 'acq', event: 'credit_approved' })).toBe(2);
    expect(metricSum(metrics, 'rta_funnel_cost_fen_total', { strategy: 'acq' })).toBe(200);
    expect(metricSum(metrics, 'rta_attribution_takes_total', { strategy: 'acq' })).toBe(2);
    expect(metricSum(metrics, 'rta_attribution_events_total', { result: 'duplicate' })).toBe(1);
    e.attribution.stop();
  });

  test('results per arm, creative and book version; a named strategy picks its take', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('t-1', [{ id: 'acq', arm: 'treatment', creative: 9 }, { id: 'retarget', creative: 5 }], { book: 'book-2' }));
    const outcome = await post(e, [
      line({ trace_id: 't-1', strategy_id: 'retarget', event: 'click', cost_fen: 30 }),
      line({ trace_id: 't-1', strategy_id: 'acq', event: 'click', cost_fen: 50 }),
    ]);
    expect(outcome.joined).toBe(2);
    expect(await rows(e, ['strategy', 'arm', 'creative', 'book'])).toEqual([
      expect.objectContaining({ strategy: 'acq', arm: 'treatment', creative: 9, book: 'book-2', takes: 1, costFen: 50 }),
      expect.objectContaining({ strategy: 'retarget', arm: 'control', creative: 5, book: 'book-2', takes: 1, costFen: 30 }),
    ]);
    expect(await rows(e, [])).toEqual([expect.objectContaining({ decisions: 2, takes: 2, costFen: 80 })]);
    e.attribution.stop();
  });

  test('late, unmatched, before the decision, ambiguous or not taken: each said, counted, never joined', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('old', [{ id: 'acq' }], { timeMs: NOW - 9 * 24 * HOUR }));
    appendFileSync(e.logFile, record('two', [{ id: 'acq' }, { id: 'retarget' }]));
    appendFileSync(e.logFile, record('debug', [{ id: 'acq' }], { test: true }));
    const outcome = await post(e, [
      line({ trace_id: 'old', event: 'click', event_time: NOW - 8 * 24 * HOUR }),
      line({ trace_id: 'nobody', event: 'click' }),
      line({ trace_id: 'debug', event: 'click' }),
      line({ trace_id: 'two', event: 'click', event_time: NOW - 3 * HOUR }),
      line({ trace_id: 'two', event: 'click' }),
      line({ trace_id: 'two', strategy_id: 'dormant', event: 'click' }),
    ]);
    expect(outcome).toMatchObject({ joined: 0, late: 1, unmatched: 2, refused: 3 });
    expect(outcome.refusals.map((r) => [r.line, r.reason])).toEqual([
      [4, 'before_decision'],
      [5, 'strategy_ambiguous'],
      [6, 'strategy_not_taken'],
    ]);
    expect(outcome.refusals[1]!.message).toBe('trace two was taken by several strategies (acq, retarget): say strategy_id');
    // Joint-debugging decisions are not counted either.
    expect(await rows(e)).toEqual([expect.objectContaining({ strategy: 'acq', decisions: 2, takes: 2 }), expect.objectContaining({ strategy: 'retarget', decisions: 1 })]);
    e.attribution.stop();
  });

  test('bad lines are refused with their line and reason; the rest of the batch is taken', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('t-1', [{ id: 'acq' }]));
    const outcome = await post(e, [
      '{"trace_id": "t-1"',
      line({ trace_id: 't-1', event: 'purchase' }),
      line({ trace_id: 't-1', event: 'click', cost_fen: -5 }),
      line({ trace_id: 't-1', event: 'click', media: 'baidu' }),
      line({ trace_id: 't-1', event: 'click', event_time: NOW + HOUR }),
      line({ trace_id: 't-1', event: 'click', event_time: Math.round(NOW / 1000) }),
      line({ trace_id: 't-1', event: 'click', colour: 'red' }),
      line({ trace_id: 't-1', event: 'click', event_time: 9e15 }),
      '',
      line({ trace_id: 't-1', event: 'click', event_time: new Date(NOW - HOUR / 2).toISOString() }),
    ]);
    expect(outcome.joined).toBe(1);
    expect(outcome.refusals.map((r) => `${r.line} ${r.reason}: ${r.message}`)).toEqual([
      expect.stringMatching(/^1 invalid_json: /),
      expect.stringMatching(/^2 invalid_event: event: Invalid option: expected one of "impression"\|"click"/),
      '3 invalid_event: cost_fen: a cost is never negative',
      '4 invalid_event: media: "baidu" is not a media of this engine (tencent, native)',
      expect.stringMatching(/^5 invalid_event: event_time: .* is in the future$/),
      expect.stringMatching(/^6 invalid_event: event_time: \d+ is before 2020: give milliseconds since the epoch$/),
      expect.stringMatching(/^7 invalid_event: event: Unrecognized key: "colour"$/),
      expect.stringMatching(/^8 invalid_event: event_time: /),
    ]);
    expect(metricSum(await e.registry.metrics(), 'rta_attribution_refused_events_total', { reason: 'invalid_event' })).toBe(7);
    e.attribution.stop();
  });

  test('an EventBatch in protobuf is checked by the same rules; bytes that are no EventBatch are refused whole', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('t-1', [{ id: 'acq' }]));
    const bytes = EventBatch.encode(
      EventBatch.create({
        events: [
          { trace_id: 't-1', media: 'tencent', event: 2, cost_fen: 25, event_time_ms: NOW - HOUR / 2 },
          { trace_id: 't-1', media: 'tencent', event: 0, event_time_ms: NOW - HOUR / 2 },
        ],
      }),
    ).finish();
    const outcome = await e.attribution.takeEvents(bytes, 'application/x-protobuf');
    expect(outcome).toMatchObject({ joined: 1, refused: 1 });
    expect(outcome.refusals[0]).toMatchObject({ line: 2, reason: 'invalid_event' });
    expect((await rows(e))[0]).toMatchObject({ costFen: 25, events: expect.objectContaining({ click: 1 }) });
    await expect(e.attribution.takeEvents(Buffer.from([0x0a, 0x05, 0x01]), 'application/x-protobuf')).rejects.toThrow(/EventBatch/);
    await expect(e.attribution.takeEvents(Buffer.from('{}'), 'application/json')).rejects.toMatchObject({ reason: 'unsupported_media_type' });
    e.attribution.stop();
  });

  const protoc = spawnSync('protoc', ['--version']).error ? null : 'protoc';
  test.skipIf(!protoc)('protoc encodes an EventBatch the engine takes (skipped loudly without protobuf-compiler)', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('t-9', [{ id: 'acq' }]));
    const text = `events { trace_id: "t-9" media: "tencent" event: CREDIT_APPROVED value_fen: 8000 event_time_ms: ${NOW - HOUR / 2} }`;
    const bytes = execFileSync('protoc', ['--encode=rta.events.EventBatch', '-I', join(REPO_ROOT, 'proto/events'), 'events.proto'], { input: text });
    expect((await e.attribution.takeEvents(bytes, 'application/x-protobuf')).joined).toBe(1);
    expect((await rows(e))[0]).toMatchObject({ valueFen: 8000, events: expect.objectContaining({ credit_approved: 1 }) });
    e.attribution.stop();
  });
  if (!protoc) console.warn('SKIPPED: protoc cross-check of EventBatch: protoc is not installed (Debian package protobuf-compiler)');
});

describe('the decision memory and the log it follows', () => {
  test('past maxDecisions the oldest are forgotten, counted, and their events come back unmatched', async () => {
    const e = engine({ maxDecisions: 1000 });
    for (let i = 0; i < 1200; i++) appendFileSync(e.logFile, record(`t-${i}`, [{ id: 'acq' }], { timeMs: NOW - HOUR + i }));
    const outcome = await post(e, [line({ trace_id: 't-0', event: 'click' }), line({ trace_id: 't-199', event: 'click' }), line({ trace_id: 't-200', event: 'click' })]);
    expect(outcome).toMatchObject({ joined: 1, unmatched: 2 });
    const report = await e.attribution.report(['strategy']);
    expect(report.rememberedDecisions).toBe(1000);
    expect(report.oldestDecision).toBe(new Date(NOW - HOUR + 200).toISOString());
    // Forgotten from memory, still counted in the results.
    expect(report.rows[0]).toMatchObject({ decisions: 1200, takes: 1200 });
    expect(metricSum(await e.registry.metrics(), 'rta_attribution_forgotten_decisions_total', { reason: 'full' })).toBe(200);
    e.attribution.stop();
  });

  test('a record cut across two reads is taken whole once the rest is written', async () => {
    const e = engine();
    const bytes = record('split', [{ id: 'acq' }]);
    appendFileSync(e.logFile, bytes.subarray(0, 7));
    expect((await post(e, [line({ trace_id: 'split', event: 'click' })])).unmatched).toBe(1);
    appendFileSync(e.logFile, bytes.subarray(7));
    expect((await post(e, [line({ trace_id: 'split', event: 'click' })])).joined).toBe(1);
    e.attribution.stop();
  });

  test('a media retry under the same trace id replaces the decision but keeps what was joined: a re-posted event is a duplicate', async () => {
    const e = engine();
    appendFileSync(e.logFile, record('retry', [{ id: 'acq' }]));
    expect((await post(e, [line({ trace_id: 'retry', event: 'click', cost_fen: 100 })])).joined).toBe(1);
    appendFileSync(e.logFile, record('retry', [{ id: 'acq' }]));
    expect((await post(e, [line({ trace_id: 'retry', event: 'click', cost_fen: 100 })])).duplicates).toBe(1);
    expect((await rows(e))[0]).toMatchObject({ costFen: 100 });
    e.attribution.stop();
  });

  test('an unreadable record is skipped and counted; the records after it, and later appends, are still read', async () => {
    const e = engine();
    // A whole record (its length prefix is right) whose first field has wire type 3, which the log never writes.
    appendFileSync(e.logFile, Buffer.from([0x02, 0x0b, 0x00]));
    appendFileSync(e.logFile, record('after', [{ id: 'acq' }]));
    expect((await post(e, [line({ trace_id: 'after', event: 'click' })])).joined).toBe(1);
    appendFileSync(e.logFile, record('later', [{ id: 'acq' }]));
    expect((await post(e, [line({ trace_id: 'later', event: 'click' })])).joined).toBe(1);
    expect(metricSum(await e.registry.metrics(), 'rta_attribution_log_read_errors_total')).toBe(1);
    e.attribution.stop();
  });

  test('a restart rebuilds the results from the decision log and the kept events, and still knows duplicates', async () => {
    const first = engine();
    appendFileSync(first.logFile, record('t-1', [{ id: 'acq' }]));
    await post(first, [line({ trace_id: 't-1', event: 'impression', cost_fen: 40 }), line({ trace_id: 't-1', event: 'credit_approved' })]);
    first.attribution.stop();
    const before = await rows(first);

    const second = engine({ dirs: first.dirs });
    expect((await post(second, [line({ trace_id: 't-1', event: 'credit_approved' })])).duplicates).toBe(1);
    expect(await rows(second)).toEqual(before);
    expect((await post(second, [line({ trace_id: 't-1', event: 'loan_drawn', value_fen: 9000 })])).joined).toBe(1);
    second.attribution.stop();
  });
});
