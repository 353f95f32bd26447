import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MEDIA_MODULES } from '../../src/media/registry.js';
import { loadRoundTrips, roundTripRequest, withoutVolatileFields } from '../media/fixture-support.js';
import { DECISIONS_ENV, REPO_ROOT, startEngine, type EngineProcess } from '../support/engine-process.js';
import { post } from '../support/rta-client.js';

/**
 * Each module's round-trip fixtures: a demo device's request, decided by a real engine on its default config with
 * the demo book and models, and the media's reply as it decodes it, field for field.
 */

const PERSONAS = new URL('data/generated/personas.json', `file://${REPO_ROOT}`);
let engine: EngineProcess;

beforeAll(async () => {
  engine = await startEngine(DECISIONS_ENV);
});

afterAll(async () => {
  await engine?.stop();
});

for (const module of MEDIA_MODULES) {
  describe(`${module.name} round trips`, () => {
    const all = loadRoundTrips(module.fixtures);

    test('a device taken and a device declined, at least', () => {
      expect(all.length).toBeGreaterThanOrEqual(2);
    });

    for (const { file, fixture } of all) {
      test(file, async () => {
        const { body, contentType } = module.client.encodeRequest(roundTripRequest(fixture, PERSONAS));
        const reply = await post(`${engine.mediaUrl}${module.path}`, body, contentType);
        expect(reply.status, reply.text).toBe(200);
        expect(withoutVolatileFields(module.client.decodeReply(reply.body, reply.contentType))).toEqual(fixture.reply);
      });
    }
  });
}
