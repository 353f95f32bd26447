import { describe, expect, test } from 'vitest';
import { InputError } from '../../src/engine/errors.js';
import type { MediaAdapter } from '../../src/engine/types.js';
import { nativeAdapter } from '../../src/media/native/adapter.js';
import { loadProto } from '../../src/media/protobuf.js';
import { tencentAdapter } from '../../src/media/tencent/adapter.js';
import { checkWire, compileWireRule } from '../../src/media/wire-check.js';
import {
  assertFixtureMatchesType,
  contextFromText,
  contextToText,
  isDecodeFixture,
  loadFixtures,
  overTheWire,
  TEXT_FORM,
  type DecodeFixture,
  type EncodeFixture,
} from './fixture-support.js';

const tencent = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const native = loadProto(new URL('../../proto/rta/v1/native.proto', import.meta.url));

const suites = [
  {
    adapter: tencentAdapter,
    fixtures: new URL('../../src/media/tencent/fixtures/', import.meta.url),
    request: tencent.lookupType('tencent.ad.rta.RtaRequest'),
    response: tencent.lookupType('tencent.ad.rta.RtaResponse'),
  },
  {
    adapter: nativeAdapter,
    fixtures: new URL('../../src/media/native/fixtures/', import.meta.url),
    request: native.lookupType('rta.v1.NativeRequest'),
    response: native.lookupType('rta.v1.NativeResponse'),
  },
];

for (const { adapter, fixtures, request, response } of suites) {
  describe(`${adapter.name} fixtures`, () => {
    const all = loadFixtures(fixtures);
    const responseRule = compileWireRule(response);

    test('the folder holds decode and encode fixtures', () => {
      expect(all.filter(({ fixture }) => isDecodeFixture(fixture)).length).toBeGreaterThanOrEqual(6);
      expect(all.filter(({ fixture }) => !isDecodeFixture(fixture)).length).toBeGreaterThanOrEqual(3);
    });

    for (const { file, fixture } of all) {
      if (isDecodeFixture(fixture)) {
        test(`decode ${file}`, () => runDecode(adapter, request, fixture));
      } else {
        test(`encode ${file}`, () => runEncode(adapter, response, responseRule, fixture));
      }
    }
  });
}

function runDecode(adapter: MediaAdapter, type: import('protobufjs').Type, fixture: DecodeFixture) {
  const contentType = fixture.contentType ?? '';
  let body: Uint8Array;
  if (contentType.startsWith('application/json')) {
    body = new TextEncoder().encode(JSON.stringify(fixture.request));
  } else {
    assertFixtureMatchesType(type, fixture.request);
    body = type.encode(type.fromObject(fixture.request)).finish();
  }
  if (fixture.expectedError) {
    let error: unknown;
    try {
      adapter.decode(body, contentType);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(InputError);
    expect({ reason: (error as InputError).reason, message: (error as InputError).message }).toEqual(fixture.expectedError);
    return;
  }
  expect(contextToText(adapter.decode(body, contentType))).toEqual({ ...fixture.expected, media: adapter.name });
}

function runEncode(
  adapter: MediaAdapter,
  type: import('protobufjs').Type,
  rule: ReturnType<typeof compileWireRule>,
  fixture: EncodeFixture,
) {
  const reply = adapter.encode(contextFromText(fixture.context, adapter.name), fixture.decision);
  if (fixture.context.wantsJson) {
    expect(reply.contentType).toBe('application/json');
    expect(JSON.parse(reply.body as string)).toEqual(fixture.reply);
    return;
  }
  expect(reply.contentType).toBe('application/x-protobuf');
  assertFixtureMatchesType(type, fixture.reply);
  const bytes = reply.body as Uint8Array;
  checkWire(rule, bytes);
  expect(type.toObject(type.decode(bytes), TEXT_FORM)).toEqual(overTheWire(type, fixture.reply));
}
