import { describe, expect, test } from 'vitest';
import { InputError } from '../../src/engine/errors.js';
import { DEVICE_ID_KIND_NAMES, type BidContext, type Decision } from '../../src/engine/types.js';
import { nativeAdapter } from '../../src/media/native/adapter.js';
import { loadProto } from '../../src/media/protobuf.js';
import { tencentAdapter } from '../../src/media/tencent/adapter.js';

const tencent = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = tencent.lookupType('tencent.ad.rta.RtaRequest');
const RtaResponse = tencent.lookupType('tencent.ad.rta.RtaResponse');
const native = loadProto(new URL('../../proto/rta/v1/native.proto', import.meta.url));
const NativeRequest = native.lookupType('rta.v1.NativeRequest');
const NativeResponse = native.lookupType('rta.v1.NativeResponse');

function inputErrorOf(run: () => unknown): { reason: string; message: string } {
  try {
    run();
  } catch (error) {
    if (error instanceof InputError) return { reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error('expected an InputError, nothing was thrown');
}

const secondRequestWithCreative = (creativeId: string) =>
  RtaRequest.encode(
    RtaRequest.fromObject({ request_info: { request_type: 2 }, ad_infos: [{ adgroup_id: 1, creative_infos: [{ creative_id: creativeId }] }] }),
  ).finish();

const context = (overrides: Partial<BidContext> = {}): BidContext => ({
  media: 'tencent',
  requestId: 'r-1',
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
  ...overrides,
});

const decision = (overrides: Partial<Decision> = {}): Decision => ({
  code: 0,
  reason: 'take',
  strategies: [],
  adResults: [],
  cacheTtlSeconds: 3600,
  experimentTag: 0,
  experimentTagName: '',
  processingTimeUs: 0,
  modelVersion: '',
  bookVersion: '',
  mediaStrategyIds: new Map(),
  facts: null,
  ...overrides,
});

describe('uint64 ids', () => {
  test('2^53-1 is the largest id that decodes; one more is id_out_of_range, never rounded', () => {
    const largest = tencentAdapter.decode(secondRequestWithCreative('9007199254740991'), '');
    expect(largest.candidateAds[0]!.creatives[0]!.creativeId).toBe(Number.MAX_SAFE_INTEGER);
    expect(inputErrorOf(() => tencentAdapter.decode(secondRequestWithCreative('9007199254740992'), ''))).toEqual({
      reason: 'id_out_of_range',
      message: 'ad_infos.creative_infos.creative_id 9007199254740992 is above 2^53-1 and cannot be represented exactly',
    });
    expect(inputErrorOf(() => tencentAdapter.decode(secondRequestWithCreative('18446744073709551615'), '')).reason).toBe(
      'id_out_of_range',
    );
  });

  test('native protobuf and JSON refuse an advertiser id above 2^53-1 alike', () => {
    const bytes = NativeRequest.encode(NativeRequest.fromObject({ candidate_ads: [{ advertiser_id: '9007199254740993' }] })).finish();
    expect(inputErrorOf(() => nativeAdapter.decode(bytes, '')).reason).toBe('id_out_of_range');
    const json = new TextEncoder().encode('{"candidateAds":[{"advertiserId":9007199254740993}]}');
    expect(inputErrorOf(() => nativeAdapter.decode(json, 'application/json')).reason).toBe('id_out_of_range');
  });
});

describe('native JSON requests', () => {
  const decodeJson = (text: string, contentType = 'application/json') =>
    nativeAdapter.decode(new TextEncoder().encode(text), contentType);

  test('JSON nested deeper than any request is refused as invalid_json, not recursed into until the stack breaks', () => {
    // 13,000 levels were once answered "undecodable: Maximum call stack size exceeded".
    const arrays = `{"candidateAds":${'['.repeat(13_000)}${']'.repeat(13_000)}}`;
    const objects = `{"requestId":"a","x":${'{"a":'.repeat(20)}1${'}'.repeat(20)}}`;
    for (const text of [arrays, objects]) {
      const error = inputErrorOf(() => decodeJson(text));
      expect([error.reason, error.message]).toEqual(['invalid_json', 'request body nests deeper than 16 levels']);
    }
    // The deepest real request (request, candidateAds, ad, creatives, creative) still decodes.
    expect(decodeJson('{"candidateAds":[{"creatives":[{"creativeId":"12","templateId":3}]}]}').candidateAds).toHaveLength(1);
  });

  test('the Content-Type decides the format, case-insensitively, with or without parameters', () => {
    const text = '{"requestId":"j","os":"OS_ANDROID","deviceIds":[{"type":1,"md5":"3fe359c786cf678c65a0ad10421d0350"}]}';
    expect(decodeJson(text, 'Application/JSON; charset=utf-8')).toMatchObject({ requestId: 'j', os: 2, wantsJson: true });
    expect(inputErrorOf(() => decodeJson(text, 'application/x-protobuf')).reason).toBe('malformed_protobuf');
  });

  test.each([
    ['', 'invalid_json', /^request body is not JSON: /],
    ['{"requestId": "a",}', 'invalid_json', /^request body is not JSON: /],
    ['[]', 'invalid_request', /^request: Invalid input: expected object, received array$/],
    ['{"requestId":"a","bogus":1}', 'invalid_request', /^request: Unrecognized key: "bogus"$/],
    ['{"isPing":"yes"}', 'invalid_request', /^isPing: Invalid input: expected boolean, received string$/],
    ['{"os":"ANDROID"}', 'invalid_request', /^os: expected one of OS_UNKNOWN, OS_IOS, OS_ANDROID, OS_OTHER or an enum number$/],
    ['{"experimentIds":[1,-2]}', 'invalid_request', /^experimentIds\[1\]: Too small: expected number to be >=0$/],
    ['{"experimentIds":[4294967296]}', 'invalid_request', /^experimentIds\[0\]: Too big: expected number to be <=4294967295$/],
    ['{"deviceIds":[{"type":1,"md5":7}]}', 'invalid_request', /^deviceIds\[0\]\.md5: Invalid input: expected string, received number$/],
    ['{"candidateAds":[{"creatives":[{"creativeId":"12a"}]}]}', 'invalid_request', /^candidateAds\[0\]\.creatives\[0\]\.creativeId: /],
    ['{"candidateAds":[{"adGroupId":1.5}]}', 'invalid_request', /^candidateAds\[0\]\.adGroupId: expected an integer$/],
  ])('%s is refused as %s with a message naming the place', (text, reason, message) => {
    const error = inputErrorOf(() => decodeJson(text));
    expect(error.reason).toBe(reason);
    expect(error.message).toMatch(message);
  });

  test('proto field names (snake_case) are accepted as well as lowerCamelCase, as the proto3 JSON mapping allows', () => {
    const snake = decodeJson('{"request_id":"s","is_test":true,"device_ids":[{"type":"OAID_MD5","md5":"3fe359c786cf678c65a0ad10421d0350"}],"experiment_ids":[7]}');
    const camel = decodeJson('{"requestId":"s","isTest":true,"deviceIds":[{"type":"OAID_MD5","md5":"3fe359c786cf678c65a0ad10421d0350"}],"experimentIds":[7]}');
    expect(snake).toEqual(camel);
    expect(snake).toMatchObject({ requestId: 's', isTest: true, platformExperimentIds: [7] });
  });

  test('a body that is not UTF-8 is invalid JSON, not a crash', () => {
    const error = inputErrorOf(() => nativeAdapter.decode(Uint8Array.from([0x7b, 0xff, 0x7d]), 'application/json'));
    expect(error.reason).toBe('invalid_json');
  });

  test('the request media name never becomes the metric label', () => {
    expect(decodeJson('{"media":"a-media-with-unbounded-names-12345"}').media).toBe('native');
  });
});

describe('native protocol', () => {
  test('IdType numbers and names are the engine DeviceIdKind ones', () => {
    const values = native.lookupEnum('rta.v1.NativeRequest.IdType').values;
    for (const [kind, name] of Object.entries(DEVICE_ID_KIND_NAMES)) expect(values[name.toUpperCase()]).toBe(Number(kind));
    expect(Object.keys(values)).toHaveLength(Object.keys(DEVICE_ID_KIND_NAMES).length + 1);
  });

  test('a decoded context owns its arrays, even for fields absent on the wire', () => {
    const decoded = nativeAdapter.decode(new Uint8Array(0), '');
    decoded.platformExperimentIds.push(1);
    expect(nativeAdapter.decode(new Uint8Array(0), '').platformExperimentIds).toEqual([]);
  });
});

describe('replies never carry a NaN float', () => {
  const strategy = { strategyId: 's', creativeId: 0, cpaPriceFen: 0, cpcPriceFen: 0, experimentTag: 0, experimentTagName: '' };
  const broken = decision({
    strategies: [{ ...strategy, coefficient: Number.NaN, pcvr: Number.NaN }],
    adResults: [{ adGroupId: 1, ignore: false, creatives: [{ creativeId: 2, raiseFactor: Number.POSITIVE_INFINITY }] }],
  });

  test('tencent leaves the factor out, which the platform reads as neutral', () => {
    const reply = tencentAdapter.encode(context({ secondRequest: true }), broken);
    expect(RtaResponse.toObject(RtaResponse.decode(reply.body as Uint8Array), { longs: Number })).toEqual({
      request_id: 'r-1',
      code: 0,
      processing_time_ms: 0,
      response_cache_time: 3600,
      out_target_id: ['s'],
      target_infos: [{ out_target_id: 's' }],
      ad_results: [{ adgroup_id: 1, creative_results: [{ creative_id: 2 }] }],
    });
  });

  test('native writes 0 in protobuf and in JSON, never NaN or null', () => {
    const bytes = nativeAdapter.encode(context(), broken).body as Uint8Array;
    const message = NativeResponse.toObject(NativeResponse.decode(bytes), { defaults: true, longs: Number });
    expect(message.decisions[0]).toMatchObject({ coefficient: 0, pcvr: 0 });
    expect(message.ad_results[0].creatives[0]).toMatchObject({ raise_factor: 0 });
    const json = JSON.parse(nativeAdapter.encode(context({ wantsJson: true }), broken).body as string);
    expect(json.decisions[0]).toMatchObject({ coefficient: 0, pcvr: 0 });
    expect(json.adResults[0].creatives[0]).toEqual({ creativeId: '2', raiseFactor: 0 });
  });
});

describe('tencent reply details', () => {
  test.each([
    [0, 0],
    [1, 1],
    [999.2, 1],
    [1000, 1],
    [1001, 2],
    [Number.NaN, 0],
  ])('processing time %s us is reported as %s ms', (us, ms) => {
    const reply = tencentAdapter.encode(context(), decision({ processingTimeUs: us }));
    expect(RtaResponse.decode(reply.body as Uint8Array).toJSON().processing_time_ms).toBe(ms);
  });

  test('ad results are written for a second request only', () => {
    const withAds = decision({ adResults: [{ adGroupId: 9, ignore: true, creatives: [] }] });
    const first = RtaResponse.decode(tencentAdapter.encode(context(), withAds).body as Uint8Array).toJSON();
    const second = RtaResponse.decode(tencentAdapter.encode(context({ secondRequest: true }), withAds).body as Uint8Array).toJSON();
    expect(first.ad_results).toBeUndefined();
    expect(second.ad_results).toEqual([{ adgroup_id: '9', ignore: true }]);
  });
});
