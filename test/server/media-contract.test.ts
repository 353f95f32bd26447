import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { DeviceIdKind } from '../../src/engine/types.js';
import type { MediaModule } from '../../src/media/module.js';
import { MEDIA_MODULES, MEDIA_NAMES } from '../../src/media/registry.js';
import { strategyIdsInFile } from '../../src/strategy/book.js';
import type { MediaAnswer, SimulatedRequest } from '../../src/media/simulated-request.js';
import { DECISIONS_ENV, startEngine, type EngineProcess } from '../support/engine-process.js';
import { hashRawDeviceId } from '../../src/store/device-key.js';
import { loadPersonas, loadStrategyFile, metricSum, post, requestFor, scrape } from '../support/rta-client.js';

/**
 * The contract every media module keeps, run against each registered module through one real engine process:
 * requests encoded by the module's client, posted to its route, replies read the way that media reads them.
 * The engine runs with narrower rules than any media's own (coefficients 0.5..1.5 to one decimal, cache times
 * 3600..7200 s, the native route declining with 204), so each reply must show the configured rules, not defaults.
 */

const RULES = { coefficient: { min: 0.5, max: 1.5, decimals: 1 }, cacheSeconds: { min: 3600, max: 7200 } };
const personas = loadPersonas();
const book = loadStrategyFile();
let dir: string;
let engine: EngineProcess;
let config: Config;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rta-media-contract-'));
  const file = join(dir, 'config.json');
  const media = Object.fromEntries(MEDIA_MODULES.map((m) => [m.name, m.name === 'native' ? { ...RULES, declineStatus: 204 } : RULES]));
  writeFileSync(file, JSON.stringify({ media }));
  config = loadConfig({ file, env: {} });
  // Every decision sampled raw: what a media's bytes leave in the log is looked at after the engine stops.
  engine = await startEngine({ ...DECISIONS_ENV, RTA_CONFIG: file, RTA_DECISION_LOG_DIR: join(dir, 'log'), RTA_DECISION_LOG_RAW_SAMPLE: '1' });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Requests whose traces the decision log is checked for once the engine has stopped (see the last describe). */
const logged: Array<{ media: string; requestId: string; kept?: string; neverKept?: string }> = [];


const md5 = (text: string) => createHash('md5').update(text).digest('hex');

for (const module of MEDIA_MODULES) {
  describe(`media contract: ${module.name} (${module.path})`, () => {
    // The demo book's bidding strategies on this media, by their ids there: what a reply may ever name.
    const ids = strategyIdsInFile(book.strategies, module);
    const rules = () => config.media[module.name]!;

    async function postBody(body: Uint8Array, contentType = 'application/x-protobuf') {
      const reply = await post(`${engine.mediaUrl}${module.path}`, body, contentType);
      return { ...reply, answer: reply.status === 200 ? module.client.readAnswer(reply.body, reply.contentType) : null };
    }

    function encode(request: SimulatedRequest) {
      return module.client.encodeRequest({ askedStrategyIds: ids, ...request });
    }

    async function ask(request: SimulatedRequest) {
      const { body, contentType } = encode(request);
      return postBody(body, contentType);
    }

    /**
     * Every reply: only strategies of the book on this media (declined: also ids the request itself named), each
     * coefficient and cache time within the configured rules.
     */
    function expectWithinRules(answer: MediaAnswer, named: string[] = ids) {
      for (const s of answer.strategies) {
        expect(ids).toContain(s.id);
        if (s.coefficient === null) continue;
        expect(s.coefficient).toBeGreaterThanOrEqual(rules().coefficient.min);
        expect(s.coefficient).toBeLessThanOrEqual(rules().coefficient.max);
        expect(Math.abs(s.coefficient * 10 - Math.round(s.coefficient * 10))).toBeLessThan(1e-6);
      }
      for (const id of answer.declined) expect([...ids, ...named]).toContain(id);
      if (answer.cacheSeconds !== null) {
        expect(answer.cacheSeconds).toBeGreaterThanOrEqual(rules().cacheSeconds.min);
        expect(answer.cacheSeconds).toBeLessThanOrEqual(rules().cacheSeconds.max);
      }
    }

    /** A decline: the configured status; with a body, nothing taken and, where the media names strategies, all of them. */
    function expectDecline(reply: Awaited<ReturnType<typeof postBody>>, names: string[] = ids) {
      expect(reply.status, reply.text).toBe(rules().declineStatus);
      if (reply.answer === null) return expect(reply.body.length).toBe(0);
      expect(reply.answer.taken).toBe(false);
      expect(reply.answer.strategies).toEqual([]);
      expect([...reply.answer.declined].sort()).toEqual(module.speaks.declinesByStrategy ? [...names].sort() : []);
      expectWithinRules(reply.answer, names);
    }

    test('the module, its route and its client agree; the demo book has strategies here', () => {
      expect(module.client.name).toBe(module.name);
      expect(module.client.path).toBe(module.path);
      expect(module.adapter.name).toBe(module.name);
      expect(ids.length).toBeGreaterThan(0);
    });

    test('a known device worth bidding on is taken: only configured strategy ids, within the configured rules, the request id echoed', async () => {
      const request = requestFor(personas.prime_prospect[0]!);
      const { status, answer } = await ask(request);
      expect(status).toBe(200);
      expect(answer!.taken).toBe(true);
      expect(answer!.requestId).toBe(request.requestId);
      // Every protocol carries a coefficient for what it takes, so the rules below have something to check.
      expect(answer!.strategies.some((s) => s.coefficient !== null)).toBe(true);
      expectWithinRules(answer!);
    });

    test('an existing borrower is declined for every strategy', async () => {
      expectDecline(await ask(requestFor(personas.active_borrower[0]!)));
    });

    test('an unknown device gets a well-formed answer within the rules', async () => {
      const reply = await ask(requestFor({ os: 'android', ids: [{ kind: DeviceIdKind.OAID_MD5, md5: md5(`unknown-${module.name}`) }] }));
      if (reply.answer?.taken) expectWithinRules(reply.answer);
      else expectDecline(reply);
    });

    test('no usable device id: declined', async () => {
      expectDecline(await ask(requestFor(null)));
    });

    test('placeholder and malformed ids are refused, counted, never looked up', async () => {
      const before = metricSum(await scrape(engine), 'rta_refused_device_ids_total', { media: module.name });
      const refused = [
        { kind: DeviceIdKind.IMEI_MD5, md5: md5('') },
        { kind: DeviceIdKind.ANDROID_ID_MD5, md5: 'not-an-md5' },
      ];
      expectDecline(await ask(requestFor({ os: 'android', ids: refused })));
      expect(metricSum(await scrape(engine), 'rta_refused_device_ids_total', { media: module.name })).toBe(before + 2);
    });

    test('malformed bytes get 400 malformed_protobuf, and are counted', async () => {
      const before = metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason: 'malformed_protobuf' });
      // Field 1, length-delimited, claiming 255 bytes of which none follow.
      const reply = await postBody(Uint8Array.of(0x0a, 0xff, 0x01));
      expect(reply.status).toBe(400);
      expect(reply.text).toMatch(/^malformed_protobuf: /);
      expect(metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason: 'malformed_protobuf' })).toBe(before + 1);
    });

    test('an oversized body gets 413', async () => {
      const reply = await postBody(new Uint8Array(config.server.maxBodyBytes + 1));
      expect(reply.status).toBe(413);
      expect(reply.text).toMatch(/^body_too_large: /);
    });

    test('unknown fields are skipped: the same answer as without them', async () => {
      const request = requestFor(personas.prime_prospect[0]!);
      const { body } = encode(request);
      // Field 1999 as a varint, then field 2000 as bytes: numbers no protocol of ours declares.
      const extra = Uint8Array.of(0xf8, 0xf9, 0x07, 0x01, 0x82, 0xfd, 0x07, 0x02, 0x68, 0x69);
      const plain = await postBody(body);
      const padded = await postBody(Uint8Array.from([...body, ...extra]));
      expect(padded.status).toBe(200);
      expect(padded.answer).toEqual(plain.answer);
    });

    test('request ids are echoed byte for byte', async () => {
      const request = requestFor(personas.prime_prospect[0]!, { requestId: `ид-雅-😀-${module.name}-\u0001` });
      expect((await ask(request)).answer!.requestId).toBe(request.requestId);
    });

    test.runIf(module.speaks.ping)('a ping is answered at once, its id echoed, nothing taken', async () => {
      const request = requestFor(personas.prime_prospect[0]!, { isPing: true });
      const { status, answer } = await ask(request);
      expect(status).toBe(200);
      expect(answer!.requestId).toBe(request.requestId);
      expect(answer!.taken).toBe(false);
    });

    test.runIf(module.speaks.test)('test traffic is decided like live traffic and counted apart', async () => {
      const before = metricSum(await scrape(engine), 'rta_test_requests_total', { media: module.name });
      const { answer } = await ask(requestFor(personas.prime_prospect[0]!, { isTest: true }));
      expect(answer!.taken).toBe(true);
      expect(metricSum(await scrape(engine), 'rta_test_requests_total', { media: module.name })).toBe(before + 1);
    });

    test.runIf(module.carriesRawIds)('raw ids are hashed on arrival, the request decided (its log checked below)', async () => {
      const raw = `raw-oaid-${process.pid}-${module.name}`;
      const ids = [{ kind: DeviceIdKind.OAID_MD5, md5: hashRawDeviceId(DeviceIdKind.OAID_MD5, raw), raw }];
      const request = requestFor(null, { requestId: `raw-ids-${module.name}-${process.pid}`, os: 'android', ids });
      expect((await ask(request)).status).toBe(rules().declineStatus);
      logged.push({ media: module.name, requestId: request.requestId, neverKept: raw });
    });

    test.runIf(!module.carriesRawIds)('its requests are decided for the raw sample (its log checked below)', async () => {
      const request = requestFor(personas.prime_prospect[0]!, { requestId: `raw-sample-${module.name}-${process.pid}` });
      const { body } = encode(request);
      expect((await ask(request)).status).toBe(200);
      logged.push({ media: module.name, requestId: request.requestId, kept: Buffer.from(body).subarray(0, 16).toString('latin1') });
    });

    test.runIf(module.speaks.askedStrategies)('only the strategies asked about are decided and answered', async () => {
      const device = personas.prime_prospect[0]!;
      const taken = (await ask(requestFor(device))).answer!.strategies[0]!.id;
      const others = ids.filter((id) => id !== taken);
      const decisions = async () => metricSum(await scrape(engine), 'rta_strategy_decisions_total');
      const before = await decisions();
      const one = (await ask(requestFor(device, { askedStrategyIds: [taken] }))).answer!;
      expect(one.strategies.map((s) => s.id)).toEqual([taken]);
      expect(one.declined).toEqual([]);
      expect(await decisions()).toBe(before + 1);
      // Not asked, the strategy that wants the device is not decided at all (not_asked), not merely left out.
      expectDecline(await ask(requestFor(device, { askedStrategyIds: others })), others);
      expect(await decisions()).toBe(before + 1);
      expectDecline(await ask(requestFor(device, { askedStrategyIds: ['999999'] })), ['999999']);
    });
  });
}

describe('the decision log, after a clean stop (which writes what the serving threads still hold)', () => {
  let text = '';

  beforeAll(async () => {
    expect(await engine.stop()).toBe(0);
    const files = readdirSync(join(dir, 'log'), { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile());
    text = files.map((entry) => readFileSync(join(entry.parentPath, entry.name)).toString('latin1')).join('');
  });

  test('every media was checked', () => {
    expect(logged.map((l) => l.media).sort()).toEqual([...MEDIA_NAMES].sort());
  });

  test("raw ids never reach it; other media's requests are sampled raw as configured", () => {
    for (const { media, requestId, kept, neverKept } of logged) {
      expect(text.includes(requestId), `${media}: its decision is logged`).toBe(true);
      if (kept !== undefined) expect(text.includes(kept), `${media}: its raw request is kept`).toBe(true);
      if (neverKept !== undefined) expect(text.includes(neverKept), `${media}: its raw id is kept`).toBe(false);
    }
  });
});
