import { DEVICE_ID_KIND_NAMES } from '../src/engine/types.js';
import type { SimulatedAd, SimulatedRequest } from '../src/media/simulated-request.js';
import { PLACEHOLDER_KEYS_HEX } from '../src/store/device-key.js';
import { isDecodeFixture, loadFixtures } from '../test/media/fixture-support.js';
import { loadPersonas, loadStrategyFile, native, PERSONA_NAMES, requestFor, tencent, type PersonaDevice, type StrategyFileJson } from '../test/support/rta-client.js';
import { mediaModule } from '../src/media/registry.js';
import { strategyIdsInFile } from '../src/strategy/book.js';
import { PROTOBUF_SPECS } from './reference.js';

/**
 * What the mutations start from: every decode fixture's request body (the documented cases and their edges), and
 * requests for the demo personas encoded by the media clients, so that mutants also reach known devices, every
 * exclusion, takes and second requests with real strategies and creatives. Plus the values worth planting.
 */
export interface Corpus {
  tencent: Uint8Array[];
  'tencent-sp': Uint8Array[];
  ocean: Uint8Array[];
  native: Uint8Array[];
  json: string[];
  /** Device ids that mean something to the engine: demo devices (as sent and upper-cased), placeholders, near misses. */
  md5s: string[];
  /** Text worth planting in string fields: the md5s, strategy ids, names from the schemas. */
  strings: string[];
}

const TEXT = new TextDecoder();

export function loadCorpus(): Corpus {
  const corpus: Corpus = { tencent: [], 'tencent-sp': [], ocean: [], native: [], json: [], md5s: [], strings: [] };
  for (const name of ['tencent', 'tencent-sp', 'ocean', 'native'] as const) {
    const dir = mediaModule(name).fixtures;
    for (const { fixture } of loadFixtures(dir)) {
      if (!isDecodeFixture(fixture)) continue;
      if (fixture.contentType?.startsWith('application/json')) {
        corpus.json.push(JSON.stringify(fixture.request));
      } else {
        const type = PROTOBUF_SPECS[name].request;
        corpus[name].push(type.encode(type.fromObject(fixture.request)).finish());
      }
    }
  }
  const book = loadStrategyFile();
  const personas = loadPersonas();
  // Ocean asks about RTA ids: the book's, and one that is not.
  const ocean = mediaModule('ocean');
  const rtaIds = [...strategyIdsInFile(book.strategies, ocean), '424242'];
  let n = 0;
  for (const persona of PERSONA_NAMES) {
    const device = personas[persona][0]!;
    for (const request of personaRequests(device, book.strategies, () => `fuzz-${persona}-${n++}`)) {
      corpus.tencent.push(tencent.encodeRequest(request).body);
      corpus['tencent-sp'].push(mediaModule('tencent-sp').client.encodeRequest(request).body);
      corpus.ocean.push(ocean.client.encodeRequest({ ...request, askedStrategyIds: rtaIds }).body);
      corpus.native.push(native.encodeRequest(request).body);
      corpus.json.push(TEXT.decode(native.encodeRequest(request, { json: true }).body));
    }
  }
  for (const devices of Object.values(personas)) {
    for (const device of devices) for (const id of device.ids) corpus.md5s.push(id.md5, id.md5.toUpperCase());
  }
  const someMd5 = corpus.md5s[0]!;
  corpus.md5s.push(...PLACEHOLDER_KEYS_HEX, someMd5.slice(1), `${someMd5}0`, `${someMd5.slice(0, 31)}g`, ' '.repeat(32), '');
  corpus.strings.push(...corpus.md5s, ...book.strategies.map((s) => s.id), 'not_our_strategy', ...Object.values(DEVICE_ID_KIND_NAMES), 'OS_IOS', 'ADLIST_REQUEST', ...rtaIds, '\u0000', '雅', '😀');
  return corpus;
}

/** A first request, a second request with ads for every bidding strategy (and one for a strategy not ours), a ping. */
function personaRequests(device: PersonaDevice, strategies: StrategyFileJson['strategies'], id: () => string): SimulatedRequest[] {
  const ads: SimulatedAd[] = strategies
    .filter((s) => s.kind === 'bid')
    .map((s, i) => ({
      adGroupId: String(9001 + i),
      strategyId: s.id,
      creatives: (s.creatives ?? []).map((c, j) => ({ creativeId: String(c.id), templateId: [311, 450, 721][j % 3]! })),
    }));
  ads.push({ adGroupId: '9100', strategyId: 'not_our_strategy', creatives: [{ creativeId: '1', templateId: 311 }] });
  return [
    requestFor(device, { requestId: id(), platformExperimentIds: [32768] }),
    requestFor(device, { requestId: id(), secondRequest: true, ads }),
    requestFor(device, { requestId: id(), isPing: true }),
  ];
}
