import { describe, expect, test } from 'vitest';
import { InputError } from '../../src/engine/errors.js';
import type { MediaAdapter } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import { MEDIA_MODULES } from '../../src/media/registry.js';
import { checkWire, compileWireRule } from '../../src/media/wire-check.js';
import {
  assertFixtureMatchesType,
  contextFromText,
  contextToText,
  decisionFromFixture,
  isDecodeFixture,
  loadFixtures,
  overTheWire,
  TEXT_FORM,
  type DecodeFixture,
  type EncodeFixture,
} from './fixture-support.js';

for (const module of MEDIA_MODULES) {
  const root = loadProto(module.proto.file);
  const request = root.lookupType(module.proto.request);
  const response = root.lookupType(module.proto.response);
  describe(`${module.name} fixtures`, () => {
    const all = loadFixtures(module.fixtures);
    const responseRule = compileWireRule(response);

    test('exemplary fixtures document decoding and encoding; supplemental ones the edge cases', () => {
      const exemplary = all.filter(({ file }) => file.startsWith('exemplary/')).map(({ fixture }) => fixture);
      expect(exemplary.filter(isDecodeFixture).length).toBeGreaterThanOrEqual(2);
      expect(exemplary.filter((f) => !isDecodeFixture(f)).length).toBeGreaterThanOrEqual(2);
      expect(all.filter(({ file }) => file.startsWith('supplemental/')).length).toBeGreaterThanOrEqual(2);
    });

    for (const { file, fixture } of all) {
      if (isDecodeFixture(fixture)) {
        test(`decode ${file}`, () => runDecode(module.adapter, request, fixture));
      } else {
        test(`encode ${file}`, () => runEncode(module.adapter, response, responseRule, fixture));
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
  const reply = adapter.encode(contextFromText(fixture.context, adapter.name), decisionFromFixture(fixture.decision));
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
