import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, test } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { BidContext, Decision } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import type { DecisionLogFiles } from '../../src/observe/decision-log/files.js';
import { ProtoWriter } from '../../src/media/proto-writer.js';
import { DecisionLogRecorder } from '../../src/observe/decision-log/recorder.js';
import { readDecisionLog } from '../../src/observe/decision-log/reader.js';
import { HotCounter } from '../../src/observe/hot-metrics.js';

const Record = loadProto(new URL('../../proto/log/decision_log.proto', import.meta.url)).lookupType('rta.log.DecisionRecord');

describe('ProtoWriter: what protobufjs reads back', () => {
  test('fields past 15 (two-byte tags), strings of 128+ bytes and multi-byte text, nested messages', () => {
    const w = new ProtoWriter(Buffer.alloc(4096));
    const traceId = 'é'.repeat(100); // 200 bytes: a length that needs two varint bytes, so the text is moved right
    w.uint(1, 1_764_650_000_123); // above 2^32
    w.string(3, traceId);
    w.string(16, 'book-abc');
    w.uint(22, 300);
    w.packedUints(7, [1, 32768]);
    w.packedFloats(23, new Float32Array([0.5, 0.25]), 0, 2);
    const nested = w.beginField(21);
    w.string(1, 's'.repeat(130));
    w.uint(2, 5);
    w.float32(5, 1.25);
    w.end(nested);
    const message = Record.toObject(Record.decode(w.bytes.subarray(0, w.pos)), { longs: Number }) as Record<string, any>;
    expect(new TextDecoder().decode(message.trace_id)).toBe(traceId);
    expect(message).toMatchObject({ time_ms: 1_764_650_000_123, book_version: 'book-abc', not_candidates: 300, platform_experiment_ids: [1, 32768], scores: [0.5, 0.25] });
    expect(message.strategies).toEqual([{ strategy_id: 's'.repeat(130), verdict: 5, coefficient: 1.25 }]);
  });
});

const context: BidContext = {
  media: 'native',
  requestId: 'ring-test',
  requestIdBytes: null,
  isPing: false,
  isTest: false,
  os: 2,
  deviceIds: [],
  refusedDeviceIds: 0,
  platformExperimentIds: [],
  secondRequest: false,
  candidateAds: [],
  askedStrategyIds: null,
  wantsJson: false,
};
const decision: Decision = {
  code: 5,
  reason: 'no_usable_device_id',
  strategies: [],
  adResults: [],
  cacheTtlSeconds: 86400,
  experimentTag: 0,
  experimentTagName: '',
  processingTimeUs: 12,
  modelVersion: '',
  bookVersion: '',
  mediaStrategyIds: new Map(),
  facts: null,
};

/** A disk that takes blocks and finishes writing them only when the test says so. */
function heldDisk() {
  const held: Array<{ length: number; written: () => void }> = [];
  const files = {
    write: (_block: Uint8Array, length: number, written: () => void) => void held.push({ length, written }),
    close: async () => {},
  } as unknown as DecisionLogFiles;
  return { files, held };
}

describe('the ring of blocks', () => {
  test('with every block waiting for the disk, records are dropped and counted; once a write finishes, logged again', async () => {
    const config = { ...loadConfig({ env: {} }).decisionLog, blocks: 2, blockBytes: 16_384, flushMillis: 60_000 };
    const counter = new HotCounter('t_records_total', 'test', ['result'] as const, new Registry());
    const { files, held } = heldDisk();
    const recorder = new DecisionLogRecorder(config, files, 0, counter);
    const count = async (result: string) => (await counter.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

    let sent = 0;
    while ((await count('dropped_ring_full')) === 0 && sent < 10_000) {
      recorder.record(context, decision, Date.now(), null);
      sent++;
    }
    // Two blocks: the first shipped full, the second full with nowhere to go.
    expect(held).toHaveLength(2);
    const logged = await count('logged');
    expect(logged).toBeGreaterThan(100);
    expect(logged + (await count('dropped_ring_full'))).toBe(sent);

    held.shift()!.written();
    recorder.record(context, decision, Date.now(), null);
    expect(await count('logged')).toBe(logged + 1);
    await recorder.close();
  });

  test('a record larger than a block (sampled raw bytes of a huge body) is dropped and counted, the next one logged', async () => {
    const config = { ...loadConfig({ env: {} }).decisionLog, blocks: 2, blockBytes: 16_384, flushMillis: 60_000 };
    const counter = new HotCounter('t_records_total', 'test', ['result'] as const, new Registry());
    const { files, held } = heldDisk();
    const recorder = new DecisionLogRecorder(config, files, 0, counter);
    recorder.record(context, decision, Date.now(), { request: new Uint8Array(20_000), reply: new Uint8Array(10), contentType: 'application/x-protobuf' });
    recorder.record(context, decision, Date.now(), null);
    const values = (await counter.get()).values;
    expect(values.find((v) => v.labels.result === 'dropped_too_large')?.value).toBe(1);
    expect(values.find((v) => v.labels.result === 'logged')?.value).toBe(1);
    await recorder.close();
    expect(held).toHaveLength(1);
  });
});

describe('the fields every record of a media shares', () => {
  test('follow the media, the model version and the parts from record to record, in any order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rta-log-constants-'));
    const config = { ...loadConfig({ env: {} }).decisionLog, dir, flushMillis: 60_000 };
    const counter = new HotCounter('t_records_total', 'test', ['result'] as const, new Registry());
    const recorder = await DecisionLogRecorder.open(config, 5, counter, (error) => {
      throw error;
    });
    // Parts as a reload swaps them: facts of an excluded device, which read nothing of the parts but their versions.
    const parts = (book: string, store: string) => ({ book: { version: book, layerCount: 0 }, store: { version: store }, scorer: { modelNames: [] } });
    const factsOf = (p: ReturnType<typeof parts>) =>
      ({ parts: p, deviceKey: new Uint8Array(16), records: null, recordOffset: 0, scores: new Float32Array(0), scoresOffset: 0, mask: new Uint8Array(0), excludedBy: 'excl', candidates: 0 }) as unknown as Decision['facts'];
    const before = parts('book-1', 'store-1');
    const after = parts('book-2', 'store-1');
    const cases = [
      { media: 'native', modelVersion: 'm@1', facts: factsOf(before) },
      { media: 'tencent', modelVersion: 'm@1', facts: factsOf(before) },
      { media: 'native', modelVersion: 'm@1', facts: null },
      { media: 'native', modelVersion: 'm@2', facts: factsOf(after) },
      { media: 'tencent', modelVersion: 'm@2', facts: factsOf(after) },
      { media: 'native', modelVersion: 'm@2', facts: factsOf(after) },
    ];
    for (const [i, c] of cases.entries()) recorder.record({ ...context, media: c.media, requestId: `c${i}` }, { ...decision, modelVersion: c.modelVersion, facts: c.facts }, Date.now(), null);
    await recorder.close();
    const entries = [...readDecisionLog([dir])];
    expect(entries.map((e) => [e.traceId, e.media, e.modelVersion, e.bookVersion, e.storeVersion, e.thread])).toEqual([
      ['c0', 'native', 'm@1', 'book-1', 'store-1', 5],
      ['c1', 'tencent', 'm@1', 'book-1', 'store-1', 5],
      ['c2', 'native', 'm@1', '', '', 5],
      ['c3', 'native', 'm@2', 'book-2', 'store-1', 5],
      ['c4', 'tencent', 'm@2', 'book-2', 'store-1', 5],
      ['c5', 'native', 'm@2', 'book-2', 'store-1', 5],
    ]);
  });
});

describe('the files', () => {
  test('rotated past maxFileBytes, the oldest deleted past maxTotalBytes, every record readable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rta-log-files-'));
    const config = { ...loadConfig({ env: {} }).decisionLog, dir, blocks: 128, blockBytes: 16_384, maxFileBytes: 65_536, maxTotalBytes: 200_000, flushMillis: 60_000 };
    const counter = new HotCounter('t_records_total', 'test', ['result'] as const, new Registry());
    const recorder = await DecisionLogRecorder.open(config, 3, counter, (error) => {
      throw error;
    });
    const total = 20_000;
    for (let i = 0; i < total; i++) {
      recorder.record({ ...context, requestId: `r${i}` }, decision, Date.now(), null);
      // Gives the disk a turn now and then, as live traffic does.
      if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await recorder.close();
    // A ring this large never fills at this pace: every record reached the disk, the pruned ones were deleted.
    expect((await counter.get()).values.find((v) => v.labels.result === 'dropped_ring_full')?.value).toBe(0);
    const files = readdirSync(dir);
    const bytes = files.reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
    expect(files.length).toBeGreaterThan(1);
    expect(files.every((name) => /^decisions-\d{8}T\d{9}Z-\d{3}-t3\.rtalog$/.test(name))).toBe(true);
    expect(bytes).toBeLessThanOrEqual(200_000 + 65_536);
    const ids = [...readDecisionLog([dir])].map((e) => Number(e.traceId.slice(1)));
    // What is left is the newest records, in order, ending with the last one.
    expect(ids.length).toBeGreaterThan(1000);
    expect(ids.length).toBeLessThan(total);
    expect(ids[ids.length - 1]).toBe(total - 1);
    expect(ids.every((id, i) => i === 0 || id === ids[i - 1]! + 1)).toBe(true);
  });
});
