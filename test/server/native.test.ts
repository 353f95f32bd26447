import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DeviceIdKind } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import { DECISIONS_ENV, startEngine, type EngineProcess } from '../support/engine-process.js';
import { loadPersonas, loadStrategyFile, manifestModelVersion, metricSum, native, post, requestFor, scrape, type PersonaDevice } from '../support/rta-client.js';

/**
 * The native route (/rta/v1) end to end, in both of its encodings: protobuf, and the proto3 JSON mapping (camelCase
 * or snake_case keys) for people debugging. The reply's encoding follows the request's.
 */


interface Decision {
  strategyId: string;
  coefficient: number;
  creativeId: string;
  experimentTag: string;
  experimentTagName: string;
}
interface NativeReply {
  requestId: string;
  code: number;
  reason: string;
  decisions: Decision[];
  adResults: Array<{ adGroupId: string; ignore: boolean; creatives: Array<{ creativeId: string; raiseFactor: number }> }>;
  cacheTtlSeconds: number;
  processingTimeUs: number;
  modelVersion: string;
  experimentTag: string;
  experimentTagName: string;
}

const personas = loadPersonas();
const book = loadStrategyFile();
const bidStrategies = new Map(book.strategies.filter((s) => s.kind === 'bid' && s.enabled !== false).map((s) => [s.id, s]));
const modelVersion = manifestModelVersion();
const proto = loadProto(new URL('../../proto/rta/v1/native.proto', import.meta.url));
const NativeResponse = proto.lookupType('rta.v1.NativeResponse');
const ROUTE = '/rta/v1';

let engine: EngineProcess;

beforeAll(async () => {
  engine = await startEngine(DECISIONS_ENV);
});

afterAll(async () => {
  await engine?.stop();
});

/** A protobuf reply as plain fields in proto3 JSON naming, defaults included, so both encodings compare alike. */
function fromProtobuf(body: Uint8Array): NativeReply {
  const message = NativeResponse.toObject(NativeResponse.decode(body), { longs: String, enums: String, defaults: true, arrays: true }) as Record<string, unknown>;
  return camelCase(message) as NativeReply;
}

function camelCase(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(camelCase);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()), camelCase(v)]));
}

async function askProtobuf(device: PersonaDevice | null, overrides = {}): Promise<NativeReply> {
  const { body, contentType } = native.encodeRequest(requestFor(device, overrides));
  const reply = await post(`${engine.mediaUrl}${ROUTE}`, body, contentType);
  expect(reply.status, reply.text).toBe(200);
  expect(reply.contentType).toBe('application/x-protobuf');
  return fromProtobuf(reply.body);
}

async function askJson(json: unknown, contentType = 'application/json'): Promise<NativeReply> {
  const reply = await post(`${engine.mediaUrl}${ROUTE}`, JSON.stringify(json), contentType);
  expect(reply.status, reply.text).toBe(200);
  expect(reply.contentType).toMatch(/^application\/json/);
  return JSON.parse(reply.text) as NativeReply;
}

function deviceJson(device: PersonaDevice) {
  return device.ids.map((id) => ({ type: id.kind, md5: id.md5 }));
}

function expectConfiguredDecisions(reply: NativeReply, device: PersonaDevice): void {
  expect(reply.code).toBe(0);
  expect(reply.reason).toBe('take');
  expect(reply.cacheTtlSeconds).toBe(book.cacheTtlSeconds.take);
  expect(reply.modelVersion).toBe(modelVersion);
  expect(reply.processingTimeUs).toBeGreaterThan(0);
  expect(reply.decisions.length).toBeGreaterThan(0);
  for (const decision of reply.decisions) {
    const strategy = bidStrategies.get(decision.strategyId);
    expect(strategy, `strategy "${decision.strategyId}"`).toBeDefined();
    expect(strategy!.creatives!.map((c) => String(c.id))).toContain(decision.creativeId);
    expect(decision.coefficient).toBeGreaterThanOrEqual(0.2);
    expect(decision.coefficient).toBeLessThanOrEqual(5);
  }
  // acq_prime_new's 710102 is its iOS creative (data/strategies.json): an Android device never gets it.
  if (device.os === 'android') expect(reply.decisions.map((d) => d.creativeId)).not.toContain('710102');
}

describe('protobuf', () => {
  test('prime prospects are taken with configured strategies and creatives, scored by the manifest models', async () => {
    for (const device of personas.prime_prospect) expectConfiguredDecisions(await askProtobuf(device), device);
  });

  test('a reject decided before scoring names no model version', async () => {
    const reply = await askProtobuf(personas.blacklisted[0]!);
    expect([reply.code, reply.reason, reply.modelVersion, reply.decisions]).toEqual([3, 'blacklisted', '', []]);
    expect(reply.cacheTtlSeconds).toBe(book.cacheTtlSeconds.reject);
  });

  test('the configured lookup order wins over the order the media sent the ids in', async () => {
    const borrowerImei = personas.active_borrower.flatMap((d) => d.ids).find((i) => i.kind === DeviceIdKind.IMEI_MD5)!;
    const blacklistedOaid = personas.blacklisted.find((d) => d.ids.length === 1 && d.ids[0]!.kind === DeviceIdKind.OAID_MD5)!.ids[0]!;
    const reply = await askProtobuf(null, { ids: [borrowerImei, blacklistedOaid] });
    expect(reply.reason).toBe('blacklisted');
  });

  test('a ping carries only the request id (code 0 is the proto3 default)', async () => {
    const { body, contentType } = native.encodeRequest(requestFor(personas.blacklisted[0]!, { isPing: true, requestId: 'ping-1' }));
    const reply = await post(`${engine.mediaUrl}${ROUTE}`, body, contentType);
    expect(reply.status).toBe(200);
    expect(NativeResponse.toObject(NativeResponse.decode(reply.body))).toEqual({ request_id: 'ping-1' });
  });
});

describe('JSON', () => {
  const device = personas.prime_prospect.find((d) => d.os === 'android')!;

  test('lowerCamelCase and snake_case requests get the same JSON decision as the protobuf request', async () => {
    const viaProtobuf = await askProtobuf(device);
    const camel = await askJson({ requestId: 'json-camel', os: 'OS_ANDROID', deviceIds: deviceJson(device) });
    const snake = await askJson({ request_id: 'json-snake', os: 2, device_ids: deviceJson(device) }, 'application/json; charset=utf-8');
    expect(camel.requestId).toBe('json-camel');
    expect(snake.requestId).toBe('json-snake');
    for (const reply of [camel, snake]) {
      expectConfiguredDecisions(reply, device);
      expect(reply.decisions.map((d) => [d.strategyId, d.creativeId, d.experimentTag])).toEqual(
        viaProtobuf.decisions.map((d) => [d.strategyId, d.creativeId, d.experimentTag]),
      );
      // The protobuf field is a float32; JSON carries the engine's number.
      expect(reply.decisions.map((d) => Math.fround(d.coefficient))).toEqual(viaProtobuf.decisions.map((d) => d.coefficient));
      expect([reply.experimentTag, reply.experimentTagName]).toEqual([viaProtobuf.experimentTag, viaProtobuf.experimentTagName]);
    }
  });

  test('experiment ids in JSON reach the strategies (lookalike bucket for an unknown device)', async () => {
    const unknown = personas.unknown[1]!;
    const without = await askJson({ deviceIds: deviceJson(unknown), os: 'OS_ANDROID' });
    const inside = await askJson({ deviceIds: deviceJson(unknown), os: 'OS_ANDROID', experimentIds: [32768] });
    expect(without.decisions.map((d) => d.strategyId)).toEqual(['acq_prime_new']);
    expect(inside.decisions.map((d) => d.strategyId)).toEqual(['acq_prime_new', 'acq_platform_lookalike']);
  });

  test('a second request re-prices only the candidate creatives, boosting our preferred one', async () => {
    const first = await askJson({ deviceIds: deviceJson(device), os: 'OS_ANDROID' });
    const decision = first.decisions.find((d) => d.strategyId === 'acq_prime_new')!;
    const strategy = book.strategies.find((s) => s.id === 'acq_prime_new') as unknown as {
      secondRequest: { preferredCreativeBoost: number; templateFactors: Record<string, number> };
    };
    const other = ['710101', '710100'].find((id) => id !== decision.creativeId)!;
    const reply = await askJson({
      deviceIds: deviceJson(device),
      os: 'OS_ANDROID',
      secondRequest: true,
      candidateAds: [
        {
          adGroupId: '77',
          strategyId: 'acq_prime_new',
          creatives: [
            { creativeId: decision.creativeId, templateId: 0 },
            { creativeId: other, templateId: 311 },
          ],
        },
      ],
    });
    expect(reply.adResults).toHaveLength(1);
    const [preferred, templated] = reply.adResults[0]!.creatives;
    expect([preferred!.creativeId, templated!.creativeId]).toEqual([decision.creativeId, other]);
    const expected = (factor: number) => Math.min(5, Math.max(0.2, decision.coefficient * factor));
    expect(Math.abs(preferred!.raiseFactor - expected(strategy.secondRequest.preferredCreativeBoost))).toBeLessThan(0.0011);
    expect(Math.abs(templated!.raiseFactor - expected(strategy.secondRequest.templateFactors['311']!))).toBeLessThan(0.0011);
  });

  test('a JSON ping is answered with exactly requestId and code', async () => {
    expect(await askJson({ requestId: 'json-ping', isPing: true, deviceIds: deviceJson(personas.blacklisted[0]!) })).toEqual({ requestId: 'json-ping', code: 0 });
  });
});

describe('invalid JSON requests', () => {
  async function refused(body: string | Uint8Array, reason: string): Promise<string> {
    const before = metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason });
    const reply = await post(`${engine.mediaUrl}${ROUTE}`, body, 'application/json');
    expect(reply.status).toBe(400);
    expect(reply.text.endsWith('\n')).toBe(true);
    expect(reply.text.slice(0, -1)).not.toContain('\n');
    const after = metricSum(await scrape(engine), 'rta_rejected_inputs_total', { reason });
    expect(after - before).toBe(1);
    return reply.text;
  }

  test('text that is not JSON gets 400 invalid_json', async () => {
    expect(await refused('{"requestId": ', 'invalid_json')).toMatch(/^invalid_json: request body is not JSON: /);
    expect(await refused(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), 'invalid_json')).toMatch(/^invalid_json: /);
  });

  test.each([
    [{ deviceIds: [{ type: 'OAID_MD5', md5: 7 }] }, 'deviceIds[0].md5'],
    [{ device_ids: [{ type: 'NOT_A_KIND', md5: 'x' }] }, 'deviceIds[0].type'],
    [{ experimentIds: [-1] }, 'experimentIds[0]'],
    [{ candidateAds: [{ creatives: [{ creativeId: '12x' }] }] }, 'candidateAds[0].creatives[0].creativeId'],
    [{ isPing: 'yes' }, 'isPing'],
  ])('schema violation %j gets 400 invalid_request naming %s', async (json, path) => {
    const text = await refused(JSON.stringify(json), 'invalid_request');
    expect(text.startsWith(`invalid_request: ${path}: `), text).toBe(true);
  });

  test('an unknown field is refused rather than ignored', async () => {
    expect(await refused(JSON.stringify({ deviceIdz: [] }), 'invalid_request')).toMatch(/^invalid_request: .*deviceIdz/);
  });

  test('a creative id above 2^53 in JSON gets 400 id_out_of_range, like the protobuf path', async () => {
    const json = { deviceIds: [], secondRequest: true, candidateAds: [{ adGroupId: 1, creatives: [{ creativeId: '9007199254740993' }] }] };
    expect(await refused(JSON.stringify(json), 'id_out_of_range')).toMatch(/^id_out_of_range: .*9007199254740993/);
  });
});
