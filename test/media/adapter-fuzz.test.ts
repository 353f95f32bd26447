import { expect, test } from 'vitest';
import { loadCorpus } from '../../fuzz/corpus.js';
import { protobufBody, toTree } from '../../fuzz/protobuf-mutator.js';
import { inputRandom } from '../../fuzz/random.js';
import { Malformed, parseMessage } from '../../fuzz/reference.js';
import { InputError } from '../../src/engine/errors.js';
import { loadConfig } from '../../src/config.js';
import type { DecisionSink } from '../../src/engine/engine.js';
import type { BidContext, Decision } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import { mediaModule } from '../../src/media/registry.js';
import { isDecodeFixture, loadFixtures } from './fixture-support.js';
import { offlineEngine } from '../../src/tools/dry-run.js';
import { loadPersonas, PERSONA_NAMES, requestFor } from '../support/rta-client.js';

/**
 * A fast, in-process fuzz of the proto3 adapters the server fuzzer (npm run fuzz) does not drive yet: structure-
 * aware mutations of each module's fixtures and of persona requests. The fuzzer's own reference reader (built
 * from the .proto alone, not from src/media/wire-check.ts) says whether each input is well-formed protobuf; the
 * adapter must agree: decode it, or refuse it as malformed_protobuf, never throw anything else. Every decoded
 * request is then decided by an engine in process (the demo book, models and devices) and encoded, and its reply
 * must read back with the request id, naming only the book's strategies on that media (for Ocean only those asked,
 * each once; for SP every one, yes or no), each coefficient within the media's rules.
 */

const INPUTS = 3000;
const corpus = loadCorpus();
const personas = loadPersonas();
const config = loadConfig({ env: {} });
const { engine } = offlineEngine(config, config.strategies);

function decide(context: BidContext): Decision {
  let decided: Decision | null = null;
  const sink: DecisionSink = {
    deliver: (_context, decision) => (decided = decision),
    fail: (_context, stage) => expect.fail(`${stage} failed and so did the fallback`),
  };
  engine.handle(context, sink, performance.now());
  return decided!;
}

for (const name of ['tencent-sp', 'ocean']) {
  const module = mediaModule(name);
  const type = loadProto(module.proto.file).lookupType(module.proto.request);

  test(`${name}: ${INPUTS} mutated requests, each decoded or refused exactly as the reference reader says`, () => {
    const seeds = [
      ...loadFixtures(module.fixtures).flatMap(({ fixture }) => (isDecodeFixture(fixture) ? [type.encode(type.fromObject(fixture.request)).finish()] : [])),
      ...PERSONA_NAMES.map((persona) => module.client.encodeRequest(requestFor(personas[persona][0]!, { askedStrategyIds: ['7001', '7002'] })).body),
    ];
    const trees = seeds.map((seed) => toTree(type, seed));
    const outcomes = { decoded: 0, refused: 0, withIds: 0, taken: 0 };
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
      const decision = decide(context);
      if (decision.code === 0) outcomes.taken++;
      const reply = module.adapter.encode(context, decision);
      const answer = module.client.readAnswer(reply.body as Uint8Array, reply.contentType);
      expect(answer.requestId ?? '').toBe(context.requestId);
      const onMedia = [...decision.mediaStrategyIds.values()];
      const named = [...answer.strategies.map((a) => a.id), ...answer.declined];
      expect(new Set(named).size, `input ${i}: a strategy named twice`).toBe(named.length);
      if (module.speaks.askedStrategies) expect(named.sort()).toEqual([...context.askedStrategyIds!].sort());
      else expect(named.sort()).toEqual(onMedia.sort());
      for (const { id, coefficient } of answer.strategies) {
        expect(onMedia).toContain(id);
        expect(coefficient).toBeGreaterThanOrEqual(module.rules.coefficient.min - 1e-6);
        expect(coefficient).toBeLessThanOrEqual(module.rules.coefficient.max + 1e-6);
      }
    }
    // Not vacuous: both outcomes, decoded requests that carry usable ids, and devices taken.
    expect(outcomes.decoded).toBeGreaterThan(INPUTS / 10);
    expect(outcomes.refused).toBeGreaterThan(INPUTS / 10);
    expect(outcomes.withIds).toBeGreaterThan(INPUTS / 20);
    expect(outcomes.taken).toBeGreaterThan(INPUTS / 50);
  });
}
