import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readDecisionLog, type DecisionEntry } from '../../src/observe/decision-log/reader.js';
import type { Explanation } from '../../src/observe/explain.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { loadPersonas, manifestModelVersion, metricSum, native, post, requestFor, scrape, send, tencent } from '../support/rta-client.js';

/**
 * The decision log and explain end to end: a real engine process logs what it decided for real requests, the log
 * is read back after a clean stop, and explain answers for the same devices through the serving path.
 */
const personas = loadPersonas();
const prime = personas.prime_prospect.find((d) => d.os === 'android')!;
const borrower = personas.active_borrower[0]!;

interface TargetInfo {
  out_target_id: string;
  user_weight_factor?: number;
}

describe('the decision log', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rta-decision-log-'));
  const sent: { prime: { body: Uint8Array; reply: Uint8Array; targets: TargetInfo[] } | null } = { prime: null };
  let entries: DecisionEntry[] = [];

  beforeAll(async () => {
    const engine = await startEngine({ ...DECISIONS_ENV, RTA_DECISION_LOG_DIR: dir, RTA_DECISION_LOG_RAW_SAMPLE: '1' });
    const primeRequest = requestFor(prime, { requestId: 'log-prime' });
    const encoded = tencent.encodeRequest(primeRequest);
    const { reply, decoded } = await send(engine, tencent, primeRequest);
    sent.prime = { body: encoded.body, reply: reply.body, targets: (decoded.target_infos ?? []) as TargetInfo[] };
    await send(engine, native, requestFor(borrower, { requestId: 'log-borrower' }), { json: true });
    await send(engine, native, requestFor(null, { requestId: 'log-no-id' }));
    await send(engine, tencent, requestFor(prime, { requestId: 'log-ping', isPing: true }));
    expect((await post(`${engine.mediaUrl}/rta/v1`, 'garbage', 'application/x-protobuf')).status).toBe(400);
    // A clean stop writes what the threads still hold.
    expect(await engine.stop()).toBe(0);
    entries = [...readDecisionLog([dir])];
  }, 60_000);

  test('one record per decision: pings and refused input are not decisions', () => {
    expect(entries.map((e) => e.traceId).sort()).toEqual(['log-borrower', 'log-no-id', 'log-prime']);
  });

  test('a taken device: what we knew, what we computed, what we answered, byte for byte', () => {
    const record = entries.find((e) => e.traceId === 'log-prime')!;
    expect(record).toMatchObject({ media: 'tencent', os: 2, known: true, test: false, code: 0, reason: 'take', excludedBy: '', modelVersion: manifestModelVersion() });
    expect(prime.ids.map((id) => id.md5)).toContain(record.deviceKey);
    expect(record.bookVersion).not.toBe('');
    expect(record.storeVersion).toMatch(/^snapshot-[0-9a-f]{12}$/);
    expect(record.scores).toHaveLength(4);
    const taken = record.strategies.filter((s) => s.verdict === 'taken');
    expect(taken.map((s) => s.strategyId).sort()).toEqual(sent.prime!.targets.map((t) => t.out_target_id).sort());
    for (const s of taken) {
      const target = sent.prime!.targets.find((t) => t.out_target_id === s.strategyId)!;
      expect(s.coefficient!).toBeCloseTo(target.user_weight_factor ?? 1, 5);
      expect(s.valueFen!).toBeGreaterThan(0);
      expect(s.rawCoefficient!).toBeGreaterThan(0);
    }
    expect(record.strategies.length + record.notCandidates).toBe(4);
    expect(Buffer.from(record.requestBytes!).equals(Buffer.from(sent.prime!.body))).toBe(true);
    expect(Buffer.from(record.replyBytes!).equals(Buffer.from(sent.prime!.reply))).toBe(true);
  });

  test('an excluded device names the exclusion and lists no strategy', () => {
    const record = entries.find((e) => e.traceId === 'log-borrower')!;
    expect(record).toMatchObject({ media: 'native', code: 2, reason: 'existing_borrower', excludedBy: 'excl_active_borrower', strategies: [], known: true });
    expect(record.contentType).toBe('application/json');
  });

  test('a request without a usable id is logged without a device', () => {
    expect(entries.find((e) => e.traceId === 'log-no-id')).toMatchObject({ code: 5, deviceKey: '', known: false, strategies: [] });
  });

  test('rta log grep finds a trace id; rta log stats counts take shares', () => {
    const rta = (...args: string[]) => execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'log', ...args, '--dir', dir], { encoding: 'utf8' });
    const found = rta('grep', '--trace-id', 'log-prime');
    expect(found.trim().split('\n')).toHaveLength(1);
    expect(found).toContain('log-prime');
    expect(found).toContain('acq_prime_new');
    const json = JSON.parse(rta('grep', '--trace-id', 'log-borrower', '--json').trim()) as DecisionEntry;
    expect(json.excludedBy).toBe('excl_active_borrower');
    const stats = rta('stats');
    expect(stats).toMatch(/decisions\s+3\b/);
    expect(stats).toMatch(/existing_borrower\s+1\b/);
  });

  test('rta dry-run: the same book reproduces what was answered; a proposed change shows before and after', () => {
    const rta = (book: string) => execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'dry-run', '--book', book, '--dir', dir], { encoding: 'utf8' });
    const row = (text: string, id: string) => text.split('\n').find((l) => l.startsWith(`${id} `))!;
    const same = rta(join(REPO_ROOT, 'data/strategies.json'));
    // Three records; the one without a usable id cannot be replayed.
    expect(same).toMatch(/^replayed 2 recorded decisions with book [0-9a-f]{12} \(1 left out/);
    const taken = entries.find((e) => e.traceId === 'log-prime')!.strategies.filter((s) => s.verdict === 'taken');
    for (const s of taken) expect(row(same, s.strategyId)).toMatch(/^\S+\s+50\.0 % -> 50\.0 %\s+(\d+\.\d+) -> \1 /);

    const proposed = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8'));
    // A floor no device reaches: the strategy no longer takes anyone.
    for (const s of proposed.strategies) if (s.id === 'acq_prime_new') s.bid.minValueFen = 1e9;
    const file = join(dir, '..', `proposed-${process.pid}.json`);
    writeFileSync(file, JSON.stringify(proposed));
    expect(row(rta(file), 'acq_prime_new')).toMatch(/^acq_prime_new\s+50\.0 % -> 0\.0 %/);
  });

  test('rta experiments report puts the device in its arm, eligible and taken', () => {
    const prime = entries.find((e) => e.traceId === 'log-prime')!;
    const arm = prime.arms.find((a) => a.experiment === 'prime_curve_w48')!;
    expect(prime.strategies.find((s) => s.strategyId === 'acq_prime_new')).toMatchObject({ armName: arm.arm, armTag: arm.tag });
    const report = execFileSync(process.execPath, [join(REPO_ROOT, 'dist/tools/rta.js'), 'experiments', 'report', '--dir', dir], { encoding: 'utf8' });
    expect(report).toContain('prime_curve_w48 (layer prime_curve_w48)');
    // requests, share, eligible, taken, take share: the one prime prospect, taken.
    expect(report).toMatch(new RegExp(`^  ${arm.arm}\\s+${arm.tag}\\s+1\\s+100\\.0 %\\s+1\\s+1\\s+100\\.0 %`, 'm'));
  });
});

describe('explain', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngine(DECISIONS_ENV);
  }, 60_000);
  afterAll(async () => {
    await engine?.stop();
  });

  const explain = async (query: string, body: Uint8Array | string, contentType: string, accept = 'application/json') => {
    const response = await fetch(`${engine.adminUrl}/explain${query}`, { method: 'POST', body, headers: { 'Content-Type': contentType, Accept: accept } });
    return { status: response.status, text: await response.text() };
  };

  test('a Tencent request: every stage, and the coefficient that was sent with its arithmetic', async () => {
    const request = requestFor(prime, { requestId: 'explain-prime' });
    const { decoded } = await send(engine, tencent, request);
    const { body, contentType } = tencent.encodeRequest(request);
    const answer = await explain('?media=tencent', body, contentType);
    expect(answer.status).toBe(200);
    const e = JSON.parse(answer.text) as Explanation;
    expect(e.device).toMatchObject({ known: true });
    expect(Object.keys(e.device!.profile!)).toContain('credit_band');
    expect(Object.keys(e.scores!)).toEqual(['apply', 'approve', 'risk', 'ltv']);
    expect(e.exclusions.every((x) => x.result === 'did_not_match')).toBe(true);
    expect(e.arms.map((a) => a.experiment)).toEqual(['prime_curve_w48']);
    const targets = (decoded.target_infos ?? []) as TargetInfo[];
    const taken = e.strategies.filter((s) => s.verdict === 'taken');
    expect(taken.map((s) => s.id).sort()).toEqual(targets.map((t) => t.out_target_id).sort());
    for (const s of taken) {
      expect(s.coefficient!.sent).toBeCloseTo(targets.find((t) => t.out_target_id === s.id)!.user_weight_factor ?? 1, 5);
      expect(s.value!.formula).toContain('P(apply)');
      expect(s.creative!.id).toBeGreaterThan(0);
    }
    expect(e.reply.target_infos).toEqual(decoded.target_infos);
  });

  test('per-arm counters: a taken prime prospect counts in its arm as eligible and taken; explain counts nothing', async () => {
    const request = requestFor(prime, { requestId: 'arm-count' });
    const { body, contentType } = tencent.encodeRequest(request);
    const arm = (JSON.parse((await explain('?media=tencent', body, contentType)).text) as Explanation).arms.find((a) => a.experiment === 'prime_curve_w48')!;
    const labels = (outcome: string) => ({ experiment: 'prime_curve_w48', arm: arm.arm, outcome });
    const before = await scrape(engine);
    await send(engine, tencent, request);
    const afterSend = await scrape(engine);
    expect(metricSum(afterSend, 'rta_experiment_arm_decisions_total', labels('eligible')) - metricSum(before, 'rta_experiment_arm_decisions_total', labels('eligible'))).toBe(1);
    expect(metricSum(afterSend, 'rta_experiment_arm_decisions_total', labels('taken')) - metricSum(before, 'rta_experiment_arm_decisions_total', labels('taken'))).toBe(1);
    await explain('?media=tencent', body, contentType);
    expect(metricSum(await scrape(engine), 'rta_experiment_arm_decisions_total', {})).toBe(metricSum(afterSend, 'rta_experiment_arm_decisions_total', {}));
  });

  test('readable text on Accept: text/plain', async () => {
    const { body, contentType } = tencent.encodeRequest(requestFor(prime));
    const answer = await explain('?media=tencent', body, contentType, 'text/plain');
    expect(answer.status).toBe(200);
    expect(answer.text).toMatch(/^request /);
    expect(answer.text).toMatch(/coefficient = \(/);
    expect(answer.text).toMatch(/decision: code 0 take/);
  });

  test('a device by its ids: the exclusion that matched, and those never tried', async () => {
    const answer = await explain('', JSON.stringify({ os: borrower.os, md5: borrower.ids.map((id) => ({ kind: ['', 'oaid_md5', 'imei_md5', 'idfa_md5', 'android_id_md5', 'mac_md5', 'caid_md5'][id.kind], md5: id.md5 })) }), 'application/json');
    expect(answer.status).toBe(200);
    const e = JSON.parse(answer.text) as Explanation;
    expect(e.decision).toMatchObject({ code: 2, reason: 'existing_borrower' });
    expect(e.exclusions.map((x) => [x.id, x.result])).toEqual([
      ['excl_blacklist', 'did_not_match'],
      ['excl_active_borrower', 'matched'],
      ['excl_high_risk', 'not_evaluated'],
    ]);
    expect(e.scores).toBeNull();
  });

  test('bad input gets a precise refusal', async () => {
    expect(await explain('?media=nope', 'x', 'application/x-protobuf')).toMatchObject({ status: 404, text: expect.stringMatching(/^unknown_media: /) });
    expect(await explain('?media=native', 'garbage', 'application/x-protobuf')).toMatchObject({ status: 400, text: expect.stringMatching(/^malformed_protobuf: /) });
    expect(await explain('', '{"os":"android"}', 'application/json')).toMatchObject({ status: 400, text: expect.stringMatching(/^invalid_request: .*at least one device id/) });
  });
});
