import { expect, test } from 'vitest';
import { loadCorpus } from '../../fuzz/corpus.js';
import { protobufBody, toTree } from '../../fuzz/protobuf-mutator.js';
import { inputRandom } from '../../fuzz/random.js';
import { Malformed, parseMessage } from '../../fuzz/reference.js';
import { InputError } from '../../src/engine/errors.js';
import type { Decision } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import { mediaModule } from '../../src/media/registry.js';
import { isDecodeFixture, loadFixtures } from './fixture-support.js';
import { loadPersonas, PERSONA_NAMES, requestFor } from '../support/rta-client.js';

/**
 * A fast, in-process fuzz of the proto3 adapters the server fuzzer (npm run fuzz) does not drive yet: structure-
 * aware mutations of each module's fixtures and of persona requests. The fuzzer's own reference reader (built
 * from the .proto alone, not from src/media/wire-check.ts) says whether each input is well-formed protobuf; the
 * adapter must agree: decode it, or refuse it as malformed_protobuf, never throw anything else. Every decoded
 * request must then encode, and its reply must read back with the request id.
 */

const INPUTS = 3000;
const corpus = loadCorpus();
const personas = loadPersonas();
const take: Decision = {
  code: 0,
  reason: 'take',
  strategies: [{ strategyId: 'acq_prime_new', coefficient: 1.2, creativeId: 7, cpaPriceFen: 0, cpcPriceFen: 0, experimentTag: 0, experimentTagName: '', pcvr: 0.1 }],
  adResults: [],
  cacheTtlSeconds: 3600,
  experimentTag: 0,
  experimentTagName: '',
  processingTimeUs: 100,
  modelVersion: '',
  bookVersion: '',
  mediaStrategyIds: new Map([['acq_prime_new', '7001'], ['react_dormant', '7002']]),
  facts: null,
};

for (const name of ['tencent-sp', 'ocean']) {
  const module = mediaModule(name);
  const type = loadProto(module.proto.file).lookupType(module.proto.request);

  test(`${name}: ${INPUTS} mutated requests, each decoded or refused exactly as the reference reader says`, () => {
    const seeds = [
      ...loadFixtures(module.fixtures).flatMap(({ fixture }) => (isDecodeFixture(fixture) ? [type.encode(type.fromObject(fixture.request)).finish()] : [])),
      ...PERSONA_NAMES.map((persona) => module.client.encodeRequest(requestFor(personas[persona][0]!, { askedStrategyIds: ['7001', '7002'] })).body),
    ];
    const trees = seeds.map((seed) => toTree(type, seed));
    const outcomes = { decoded: 0, refused: 0, withIds: 0 };
    for (let i = 0; i < INPUTS; i++) {
      const { body } = protobufBody(inputRandom(11, i), type, seeds, trees, corpus, []);
      let wellFormed = true;
      try {
        parseMessage(type, body, 'proto3');
      } catch (error) {
        if (!(error instanceof Malformed)) throw error;
        wellFormed = false;
      }
      let context;
      try {
        context = module.adapter.decode(body, '');
      } catch (error) {
        expect(error, `input ${i}: ${Buffer.from(body).toString('hex')}`).toBeInstanceOf(InputError);
        expect((error as InputError).reason).toBe('malformed_protobuf');
        expect(wellFormed, `input ${i} refused, the reference reads it: ${Buffer.from(body).toString('hex')}`).toBe(false);
        outcomes.refused++;
        continue;
      }
      expect(wellFormed, `input ${i} decoded, the reference refuses it: ${Buffer.from(body).toString('hex')}`).toBe(true);
      outcomes.decoded++;
      if (context.deviceIds.length > 0) outcomes.withIds++;
      const reply = module.adapter.encode(context, take);
      expect(module.client.readAnswer(reply.body as Uint8Array, reply.contentType).requestId ?? '').toBe(context.requestId);
    }
    // Not vacuous: both outcomes, and decoded requests that carry usable ids.
    expect(outcomes.decoded).toBeGreaterThan(INPUTS / 10);
    expect(outcomes.refused).toBeGreaterThan(INPUTS / 10);
    expect(outcomes.withIds).toBeGreaterThan(INPUTS / 20);
  });
}
