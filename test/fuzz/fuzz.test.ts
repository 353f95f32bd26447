import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { checkEngine, FUZZ_ENGINE_ENV, fuzzEngine, MAX_BODY_BYTES, type FuzzStats } from '../../fuzz/drive.js';
import { loadFound } from '../../fuzz/found.js';
import { InputSource } from '../../fuzz/inputs.js';
import { judge } from '../../fuzz/judge.js';
import { decoderFor, predict, PROTOBUF_SPECS } from '../../fuzz/reference.js';
import { isDecodeFixture, loadFixtures } from '../media/fixture-support.js';
import { startEngine, type EngineProcess } from '../support/engine-process.js';
import type { RawReply } from '../support/raw-http.js';
import { native, requestFor, scrape, tencent } from '../support/rta-client.js';

/**
 * The fast part of `npm run fuzz`: every input it ever caught (fuzz/found) and a seeded sample of fresh ones, sent
 * to the real engine and judged the same way. Then the judgement itself: it must agree with the documented
 * fixtures and catch replies the engine must never give.
 */

const SAMPLE_SEED = 8;
const SAMPLE_INPUTS = 5_000;

let engine: EngineProcess;

beforeAll(async () => {
  engine = await startEngine(FUZZ_ENGINE_ENV);
});

afterAll(async () => {
  await engine?.stop();
});

function findingsOf(stats: FuzzStats): string[] {
  return stats.findings.map((f) => `#${f.input.index} ${f.input.decoder} ${f.input.steps.join(',')}: ${f.problems.join('; ')}`);
}

describe('fuzzing the engine', () => {
  test('every input saved in fuzz/found gets what the reference says', async () => {
    const found = loadFound();
    const before = await scrape(engine);
    const stats = await fuzzEngine(engine, found.length, (i) => found[i]!.input, { connections: 1, timeoutMs: 3000 });
    expect(stats.inputs).toBe(found.length);
    expect(findingsOf(stats), found.map((f) => f.file).join(', ')).toEqual([]);
    expect(await checkEngine(engine, before, stats)).toEqual([]);
  });

  test(`${SAMPLE_INPUTS.toLocaleString('en')} seeded inputs across every protocol and JSON get what the reference says`, async () => {
    const source = new InputSource(SAMPLE_SEED);
    const before = await scrape(engine);
    const stats = await fuzzEngine(engine, SAMPLE_INPUTS, (i) => source.at(i), { connections: 4, timeoutMs: 3000 });
    expect(findingsOf(stats)).toEqual([]);
    expect(await checkEngine(engine, before, stats)).toEqual([]);
    // The sample reaches every decoder and every kind of answer, or passing it would say little.
    expect([...stats.byDecoder.keys()].sort()).toEqual(['native', 'native-json', 'ocean', 'tencent', 'tencent-sp']);
    for (const outcome of ['200 code 0', '200 code 5', '200 ping', '400 malformed_protobuf', '400 invalid_json', '400 invalid_request', '400 id_out_of_range', '413 body_too_large']) {
      expect(stats.byOutcome.get(outcome) ?? 0, outcome).toBeGreaterThan(0);
    }
  });
});

describe('the reference judgement', () => {
  const fixtureDirs = [
    ['/rta/tencent', new URL('../../src/media/tencent/fixtures/', import.meta.url)],
    ['/rta/tencent-sp', new URL('../../src/media/tencent-sp/fixtures/', import.meta.url)],
    ['/rta/ocean', new URL('../../src/media/ocean/fixtures/', import.meta.url)],
    ['/rta/v1', new URL('../../src/media/native/fixtures/', import.meta.url)],
  ] as const;

  test('predicts what every decode fixture documents', () => {
    let checked = 0;
    for (const [path, dir] of fixtureDirs) {
      for (const { file, fixture } of loadFixtures(dir)) {
        if (!isDecodeFixture(fixture)) continue;
        const contentType = fixture.contentType ?? 'application/x-protobuf';
        const decoder = decoderFor(path, contentType);
        const body =
          decoder === 'native-json'
            ? new TextEncoder().encode(JSON.stringify(fixture.request))
            : PROTOBUF_SPECS[decoder].request.encode(PROTOBUF_SPECS[decoder].request.fromObject(fixture.request)).finish();
        const [expected] = predict(decoder, body, MAX_BODY_BYTES);
        if (fixture.expectedError) {
          expect(expected, file).toEqual({ status: 400, reason: fixture.expectedError.reason });
        } else {
          expect(expected!.status, file).toBe(200);
          const requestId = expected!.status === 200 ? expected!.requestId : undefined;
          expect(typeof requestId === 'string' ? requestId : Buffer.from(requestId!).toString('utf8'), file).toBe(fixture.expected!.requestId);
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(15);
  });

  test('refuses what the wire rules refuse, and accepts what protobuf allows', () => {
    const decide = (bytes: number[]) => predict('tencent', Uint8Array.from(bytes), MAX_BODY_BYTES)[0];
    const malformed = { status: 400, reason: 'malformed_protobuf' };
    expect(decide([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41])).toEqual(malformed); // a length claiming 4 GiB
    expect(decide([0x08, 0x01])).toEqual(malformed); // id (a string) as a varint
    expect(decide([0x0b, 0x0c])).toEqual(malformed); // a group
    expect(decide([0x0a, 0x01, 0x41, 0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])).toEqual(malformed); // an 11-byte varint
    // Unknown fields of every wire type, an overlong but 10-byte varint, and a proto2 string that is not UTF-8.
    const accepted = decide([0x0a, 0x02, 0xff, 0x41, 0xa0, 0x06, 0x05, 0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, 0xad, 0x06, 1, 2, 3, 4, 0x10, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]);
    expect(accepted).toMatchObject({ status: 200, ping: true, requestId: Uint8Array.from([0xff, 0x41]) });
  });

  const ping = tencent.encodeRequest(requestFor(null, { requestId: 'judge-1', isPing: true })).body;
  const expectedPing = predict('tencent', ping, MAX_BODY_BYTES);
  const reply = (status: number, contentType: string, body: Uint8Array | string): RawReply => ({
    status,
    headers: new Map([['content-type', contentType]]),
    body: Buffer.from(body),
  });
  const pingReply = (requestId: string) => {
    const bytes = PROTOBUF_SPECS.tencent.response.encode({ request_id: requestId, code: 0 }).finish();
    return reply(200, 'application/x-protobuf', bytes);
  };

  test('passes a right answer', () => {
    expect(judge(tencent.path, 'tencent', expectedPing, pingReply('judge-1'), null)).toEqual({ outcome: '200 ping', problems: [] });
  });

  test.each([
    ['a 500', reply(500, 'text/plain', 'internal_error: encode failed\n')],
    ['a 400 for a valid request', reply(400, 'text/plain', 'malformed_protobuf: no\n')],
    ['another request id', pingReply('judge-2')],
    ['a body the media cannot read', reply(200, 'application/x-protobuf', Uint8Array.from([0x0a, 0x05, 0x41]))],
    ['a ping answered with a decision', reply(200, 'application/x-protobuf', PROTOBUF_SPECS.tencent.response.encode({ request_id: 'judge-1', code: 1, response_cache_time: 3600 }).finish())],
    ['no reply at all', null],
  ])('catches %s', (_, got) => {
    expect(judge(tencent.path, 'tencent', expectedPing, got, got === null ? 'closed without a reply' : null).problems).not.toEqual([]);
  });

  test('catches a request id that is not UTF-8 coming back as text', () => {
    const id = Uint8Array.from([0x61, 0xff, 0x62]);
    // A ping with that id, written by hand: an encoder would only take text.
    const expected = predict('tencent', Uint8Array.from([0x0a, 3, ...id, 0x10, 1]), MAX_BODY_BYTES);
    const echoed = (idBytes: Uint8Array) => reply(200, 'application/x-protobuf', Buffer.concat([Uint8Array.from([0x0a, idBytes.length]), idBytes, Uint8Array.from([0x10, 0])]));
    expect(judge(tencent.path, 'tencent', expected, echoed(id), null).problems).toEqual([]);
    expect(judge(tencent.path, 'tencent', expected, echoed(Buffer.from('a\ufffdb')), null).problems).not.toEqual([]);
  });

  test('catches refusals with an undocumented reason or on more than one line', () => {
    const garbage = predict('native', Uint8Array.from([0xff]), MAX_BODY_BYTES);
    expect(judge(native.path, 'native', garbage, reply(400, 'text/plain', 'malformed_protobuf: at byte 0\n'), null).problems).toEqual([]);
    expect(judge(native.path, 'native', garbage, reply(400, 'text/plain', 'undecodable: Maximum call stack size exceeded\n'), null).problems).not.toEqual([]);
    expect(judge(native.path, 'native', garbage, reply(400, 'text/plain', 'malformed_protobuf: at\nbyte 0\n'), null).problems).not.toEqual([]);
  });

  test('catches decisions outside what the README promises', () => {
    const take = native.encodeRequest(requestFor(null, { requestId: 'judge-3' })).body;
    const expected = predict('native', take, MAX_BODY_BYTES);
    const decision = (fields: Record<string, unknown>) =>
      reply(200, 'application/x-protobuf', PROTOBUF_SPECS.native.response.encode({ request_id: 'judge-3', cache_ttl_seconds: 3600, ...fields }).finish());
    const good = { code: 0, reason: 'take', decisions: [{ strategy_id: 'acq_prime_new', coefficient: 1.2 }] };
    expect(judge(native.path, 'native', expected, decision(good), null).problems).toEqual([]);
    for (const bad of [
      { ...good, decisions: [{ strategy_id: 'acq_prime_new', coefficient: 7 }] },
      { ...good, decisions: [{ strategy_id: 'excl_blacklist', coefficient: 1 }] },
      { ...good, ad_results: [{ ad_group_id: 1, creatives: [{ creative_id: 2, raise_factor: 1 }] }] },
      { code: 6, reason: 'error_fallback' },
      { code: 3, reason: 'high_risk' },
    ]) {
      expect(judge(native.path, 'native', expected, decision(bad), null).problems, JSON.stringify(bad)).not.toEqual([]);
    }
  });
});
