import protobuf from 'protobufjs';
import { describe, expect, test } from 'vitest';
import { InputError } from '../../src/engine/errors.js';
import { nativeAdapter } from '../../src/media/native/adapter.js';
import { loadProto } from '../../src/media/protobuf.js';
import { tencentAdapter } from '../../src/media/tencent/adapter.js';
import { MAX_NESTING_DEPTH, checkWire, compileWireRule } from '../../src/media/wire-check.js';
import { seededRandom } from '../support/seeded-random.js';

const tencent = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const RtaRequest = tencent.lookupType('tencent.ad.rta.RtaRequest');
const native = loadProto(new URL('../../proto/rta/v1/native.proto', import.meta.url));
const NativeRequest = native.lookupType('rta.v1.NativeRequest');

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

function expectRefused(bytes: number[] | Uint8Array, message: string) {
  const error = thrownBy(() => tencentAdapter.decode(Uint8Array.from(bytes), ''));
  expect(error).toBeInstanceOf(InputError);
  expect((error as InputError).reason).toBe('malformed_protobuf');
  expect((error as InputError).message).toBe(message);
}

/** What protobufjs does alone with bytes our check refuses: accept them, or fail without saying it is bad input. */
function protobufjsAlone(type: protobuf.Type, bytes: number[]): 'accepted' | 'threw a non-InputError' | 'threw InputError' {
  const error = thrownBy(() => type.decode(Uint8Array.from(bytes)));
  if (error === undefined) return 'accepted';
  return error instanceof InputError ? 'threw InputError' : 'threw a non-InputError';
}

const typicalRequest = RtaRequest.encode(
  RtaRequest.fromObject({
    id: 'rta-1',
    device: {
      os: 'OS_ANDROID',
      oaid_md5sum: '3fe359c786cf678c65a0ad10421d0350',
      imei_md5sum: 'ee7312e93d57adefe4b880dcf13ab6b5',
    },
    exps: [{ exp_id: 1 }, { exp_id: 300 }],
    ad_infos: [{ adgroup_id: '9876543210123', creative_infos: [{ creative_id: 5, crt_template_id: 7 }] }],
    crt_template_id: [311, 70000],
  }),
).finish();

describe('wire check refuses malformed protobuf with a precise one-line message', () => {
  test('a message cut inside a string', () => {
    // id "rta-1" is bytes 0..6; cut after 4 bytes of its value.
    expectRefused(typicalRequest.subarray(0, 5), 'tencent.ad.rta.RtaRequest field 1 (id) at byte 0: length 5 overruns the 3 bytes left');
  });

  test('every truncation of a valid request is either a shorter valid message or refused as malformed', () => {
    let refused = 0;
    for (let length = 0; length < typicalRequest.length; length++) {
      const error = thrownBy(() => tencentAdapter.decode(typicalRequest.subarray(0, length), ''));
      if (error !== undefined) {
        expect(error).toBeInstanceOf(InputError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(typicalRequest.length / 2);
  });

  test('a length prefix claiming 4 GiB', () => {
    const bytes = [0x0a, 0x80, 0x80, 0x80, 0x80, 0x10, 0x10, 0x01];
    // Older protobufjs read this as an empty id followed by is_ping; 8.8.1 throws a bare Error. Neither is an InputError.
    expect(protobufjsAlone(RtaRequest, bytes)).not.toBe('threw InputError');
    expectRefused(bytes, 'tencent.ad.rta.RtaRequest field 1 (id) at byte 0: length prefix of 2^31 or more');
  });

  test('a length prefix of exactly 2^31 inside the device', () => {
    expectRefused(
      [0x2a, 0x06, 0x32, 0x80, 0x80, 0x80, 0x80, 0x08],
      'tencent.ad.rta.RtaRequest.Device field 6 (oaid_md5sum) at byte 2: length prefix of 2^31 or more',
    );
  });

  test('a varint of 11 bytes, in a known field and in an unknown one', () => {
    const eleven = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    expectRefused([0x10, ...eleven], 'tencent.ad.rta.RtaRequest field 2 (is_ping) at byte 0: varint longer than 10 bytes');
    const unknown = [0xa0, 0x06, ...eleven]; // field 100
    expect(protobufjsAlone(RtaRequest, unknown)).toBe('accepted');
    expectRefused(unknown, 'tencent.ad.rta.RtaRequest field 100 at byte 0: varint longer than 10 bytes');
  });

  test('a 10-byte varint is still a varint', () => {
    const ten = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01];
    expect(tencentAdapter.decode(Uint8Array.from([0x10, ...ten]), '').isPing).toBe(true);
  });

  test('a known field sent with the wrong wire type', () => {
    const deviceAsVarint = [0x28, 0x05, 0x10, 0x01];
    expect(protobufjsAlone(RtaRequest, deviceAsVarint)).toBe('accepted');
    expectRefused(deviceAsVarint, 'tencent.ad.rta.RtaRequest field 5 (device) at byte 0: wire type 0 where the schema needs 2');
    expectRefused([0x0d, 1, 2, 3, 4], 'tencent.ad.rta.RtaRequest field 1 (id) at byte 0: wire type 5 where the schema needs 2');
    expectRefused([0x12, 0x01, 0x01], 'tencent.ad.rta.RtaRequest field 2 (is_ping) at byte 0: wire type 2 where the schema needs 0');
    expectRefused([0x79, 1, 2, 3, 4, 5, 6, 7, 8], 'tencent.ad.rta.RtaRequest field 15 (crt_template_id) at byte 0: wire type 1 where the schema needs 0 or 2');
  });

  test('group wire types, known or unknown field', () => {
    const group = [0x0b, 0x10, 0x01, 0x0c];
    expect(protobufjsAlone(RtaRequest, group)).toBe('accepted');
    expectRefused(group, 'tencent.ad.rta.RtaRequest field 1 (id) at byte 0: group wire type 3 is not supported');
    expectRefused([0xa3, 0x06, 0xa4, 0x06], 'tencent.ad.rta.RtaRequest field 100 at byte 0: group wire type 3 is not supported');
    expectRefused([0x0c], 'tencent.ad.rta.RtaRequest field 1 (id) at byte 0: group wire type 4 is not supported');
  });

  test('invalid wire types, field number 0 and tags over 32 bits', () => {
    expectRefused([0x0e, 0x00], 'tencent.ad.rta.RtaRequest field 1 (id) at byte 0: invalid wire type 6');
    expectRefused([0x10, 0x01, 0x00, 0x01], 'tencent.ad.rta.RtaRequest at byte 2: field number 0');
    expectRefused([0x80, 0x80, 0x80, 0x80, 0x10, 0x00], 'tencent.ad.rta.RtaRequest at byte 0: tag longer than 32 bits');
    expectRefused([0x10, 0x01, 0x80], 'tencent.ad.rta.RtaRequest at byte 2: truncated tag');
  });

  test('unknown fields are skipped but still checked', () => {
    const unknownString = [0xa2, 0x06, 0x02, 0x61, 0x62, 0x10, 0x01];
    expect(tencentAdapter.decode(Uint8Array.from(unknownString), '').isPing).toBe(true);
    expectRefused([0xa2, 0x06, 0x05, 0x61], 'tencent.ad.rta.RtaRequest field 100 at byte 0: length 5 overruns the 1 bytes left');
    expectRefused([0xa1, 0x06, 1, 2, 3], 'tencent.ad.rta.RtaRequest field 100 at byte 0: truncated 64-bit value (3 bytes left)');
    expectRefused([0xa5, 0x06, 1, 2], 'tencent.ad.rta.RtaRequest field 100 at byte 0: truncated 32-bit value (2 bytes left)');
  });

  test('a nested message may not run past its parent', () => {
    // device (5) of 5 bytes: os = 2, then idfa_md5sum claiming 4 bytes of which only 1 is inside the device.
    expectRefused(
      [0x2a, 0x05, 0x08, 0x02, 0x12, 0x04, 0x61, 0x62, 0x63, 0x64],
      'tencent.ad.rta.RtaRequest.Device field 2 (idfa_md5sum) at byte 4: length 4 overruns the 1 bytes left',
    );
  });

  test('packed repeated scalars accept both encodings and refuse a varint running past the packed length', () => {
    const packed = [0x7a, 0x03, 0x01, 0x80, 0x01];
    const unpacked = [0x78, 0x01, 0x78, 0x80, 0x01];
    expect(checkWire(compileWireRule(RtaRequest), Uint8Array.from(packed))).toBeUndefined();
    expect(RtaRequest.toObject(RtaRequest.decode(Uint8Array.from(packed)))).toEqual({ crt_template_id: [1, 128] });
    expect(RtaRequest.toObject(RtaRequest.decode(Uint8Array.from(unpacked)))).toEqual({ crt_template_id: [1, 128] });
    expect(() => tencentAdapter.decode(Uint8Array.from(unpacked), '')).not.toThrow();
    expectRefused([0x7a, 0x02, 0x01, 0x80, 0x01], 'tencent.ad.rta.RtaRequest field 15 (crt_template_id) at byte 0: packed varint runs past its length');
  });

  test('nesting deeper than the limit is refused, at the limit accepted', () => {
    const root = protobuf.parse('syntax = "proto3"; package t; message Node { Node child = 1; uint32 value = 2; }').root;
    root.resolveAll();
    const rule = compileWireRule(root.lookupType('t.Node'));
    const nested = (depth: number): Uint8Array => {
      let bytes: number[] = [0x10, 0x07];
      for (let i = 0; i < depth; i++) bytes = [0x0a, bytes.length, ...bytes];
      return Uint8Array.from(bytes);
    };
    expect(() => checkWire(rule, nested(MAX_NESTING_DEPTH))).not.toThrow();
    const error = thrownBy(() => checkWire(rule, nested(MAX_NESTING_DEPTH + 1)));
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).message).toBe(`t.Node field 1 (child) at byte 64: messages nested deeper than ${MAX_NESTING_DEPTH} levels`);
    expect(() => checkWire(rule, nested(5), 4)).toThrow('nested deeper than 4 levels');
  });
});

describe('UTF-8 in proto3 strings', () => {
  const singleString = (bytes: number[]) => Uint8Array.from([0x0a, bytes.length, ...bytes]); // NativeRequest.request_id

  test('invalid UTF-8 in a native string is refused with its offset; proto2 strings are not checked', () => {
    const error = thrownBy(() => nativeAdapter.decode(singleString([0x61, 0xc0, 0x80]), ''));
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).message).toBe('rta.v1.NativeRequest field 1 (request_id) at byte 0: invalid UTF-8 at byte 3');
    expect(() => tencentAdapter.decode(singleString([0x61, 0xc0, 0x80]), '')).not.toThrow();
  });

  test('the check agrees with a fatal TextDecoder on valid text and on 3000 seeded random byte strings', () => {
    const fatal = new TextDecoder('utf-8', { fatal: true });
    const rule = compileWireRule(NativeRequest);
    const samples = ['', 'ascii', '借款 用户', '😀 emoji', '\u{10ffff}', '\u0800\uffff'].map((text) => [
      ...new TextEncoder().encode(text),
    ]);
    const random = seededRandom(7);
    for (let i = 0; i < 3000; i++) {
      samples.push(Array.from({ length: 1 + Math.floor(random() * 6) }, () => (random() < 0.2 ? 0x80 : 0xc0) + Math.floor(random() * 64)));
    }
    for (const sample of samples) {
      const decoderAccepts = thrownBy(() => fatal.decode(Uint8Array.from(sample))) === undefined;
      const checkAccepts = thrownBy(() => checkWire(rule, singleString(sample))) === undefined;
      expect({ sample, checkAccepts }).toEqual({ sample, checkAccepts: decoderAccepts });
    }
  });
});

describe('junk input never escapes as anything but InputError', () => {
  const nativeRequest = NativeRequest.encode(
    NativeRequest.fromObject({
      request_id: 'n-1',
      os: 'OS_IOS',
      device_ids: [{ type: 'IDFA_MD5', md5: '674c1f1fbe541044ab36c65ba287ef68' }],
      experiment_ids: [1, 2],
      candidate_ads: [{ ad_group_id: 5, creatives: [{ creative_id: 6, template_id: 7 }] }],
    }),
  ).finish();
  const cases = [
    { adapter: tencentAdapter, type: RtaRequest, valid: typicalRequest },
    { adapter: nativeAdapter, type: NativeRequest, valid: nativeRequest },
  ];

  for (const { adapter, type, valid } of cases) {
    test(`${adapter.name}: 2000 random buffers and 2000 mutated valid requests`, () => {
      const random = seededRandom(adapter.name.length);
      const rule = compileWireRule(type);
      const outcomes = { decoded: 0, refused: 0 };
      for (let i = 0; i < 4000; i++) {
        let bytes: Uint8Array;
        if (i < 2000) {
          bytes = Uint8Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256));
        } else {
          bytes = Uint8Array.from(valid);
          for (let flips = 1 + Math.floor(random() * 3); flips > 0; flips--) {
            bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
          }
        }
        const error = thrownBy(() => adapter.decode(bytes, ''));
        if (error === undefined) outcomes.decoded++;
        else {
          expect(error, `bytes ${Buffer.from(bytes).toString('hex')}`).toBeInstanceOf(InputError);
          outcomes.refused++;
        }
        // The wire check must leave protobufjs nothing to refuse: if it passes, a bare decode succeeds.
        if (thrownBy(() => checkWire(rule, bytes)) === undefined) {
          expect(thrownBy(() => type.decode(bytes)), `bytes ${Buffer.from(bytes).toString('hex')}`).toBeUndefined();
        }
      }
      expect(outcomes.decoded).toBeGreaterThan(50);
      expect(outcomes.refused).toBeGreaterThan(1000);
    });
  }
});
