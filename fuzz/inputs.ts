import { native, tencent } from '../test/support/rta-client.js';
import { loadCorpus, type Corpus } from './corpus.js';
import { jsonBody, jsonTrees } from './json-mutator.js';
import { mutateBytes, protobufBody, toTree } from './protobuf-mutator.js';
import { chance, inputRandom, int, pick, randomBytes, type Rng } from './random.js';
import { decoderFor, PROTOBUF_SPECS, type Decoder } from './reference.js';

/** One request body to send, reproducible from (seed, index). */
export interface FuzzInput {
  index: number;
  /** The decoder the route and Content-Type select (see reference.decoderFor). */
  decoder: Decoder;
  path: string;
  contentType: string;
  body: Uint8Array;
  /** Family of mutation, for counting: seed, structure, bytes, schema, random-bytes, cross-route... */
  mutation: string;
  /** Every step that made the body, for a person reading a saved input. */
  steps: string[];
}

const JSON_TYPES = ['application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON'];
const PROTOBUF_TYPES = ['application/x-protobuf', 'application/x-protobuf', '', 'application/octet-stream', 'text/plain'];

/**
 * Input i of a run: 30 % Tencent, 8 % Tencent SP, 8 % Ocean, 22 % native protobuf, 27 % native JSON, 5 % raw
 * random bytes or a body sent to the wrong decoder.
 */
export class InputSource {
  private readonly corpus: Corpus = loadCorpus();
  private readonly tencentTrees = this.corpus.tencent.map((seed) => toTree(PROTOBUF_SPECS.tencent.request, seed));
  private readonly nativeTrees = this.corpus.native.map((seed) => toTree(PROTOBUF_SPECS.native.request, seed));
  private readonly spTrees = this.corpus['tencent-sp'].map((seed) => toTree(PROTOBUF_SPECS['tencent-sp'].request, seed));
  private readonly oceanTrees = this.corpus.ocean.map((seed) => toTree(PROTOBUF_SPECS.ocean.request, seed));
  private readonly jsonTrees = jsonTrees(this.corpus);

  constructor(private readonly seed: number) {}

  at(index: number): FuzzInput {
    const r = inputRandom(this.seed, index);
    const steps: string[] = [];
    const roll = r();
    let path: string;
    let contentType: string;
    let made: { body: Uint8Array; mutation: string };
    if (roll < 0.3) {
      path = tencent.path;
      contentType = chance(r, 0.95) ? 'application/x-protobuf' : pick(r, ['', 'application/json']);
      made = protobufBody(r, PROTOBUF_SPECS.tencent.request, this.corpus.tencent, this.tencentTrees, this.corpus, steps);
    } else if (roll < 0.38) {
      path = '/rta/tencent-sp';
      contentType = pick(r, PROTOBUF_TYPES);
      made = protobufBody(r, PROTOBUF_SPECS['tencent-sp'].request, this.corpus['tencent-sp'], this.spTrees, this.corpus, steps);
    } else if (roll < 0.46) {
      path = '/rta/ocean';
      contentType = pick(r, PROTOBUF_TYPES);
      made = protobufBody(r, PROTOBUF_SPECS.ocean.request, this.corpus.ocean, this.oceanTrees, this.corpus, steps);
    } else if (roll < 0.68) {
      path = native.path;
      contentType = pick(r, PROTOBUF_TYPES);
      made = protobufBody(r, PROTOBUF_SPECS.native.request, this.corpus.native, this.nativeTrees, this.corpus, steps);
    } else if (roll < 0.95) {
      path = native.path;
      contentType = pick(r, JSON_TYPES);
      made = jsonBody(r, this.corpus, this.jsonTrees, steps);
    } else if (roll < 0.98) {
      path = pick(r, [tencent.path, native.path, '/rta/tencent-sp', '/rta/ocean']);
      contentType = path === native.path && chance(r, 0.3) ? 'application/json' : 'application/x-protobuf';
      steps.push('random-bytes');
      made = { body: randomBody(r), mutation: 'random-bytes' };
    } else {
      ({ path, contentType, made } = this.crossRoute(r, steps));
    }
    return { index, decoder: decoderFor(path, contentType), path, contentType, body: made.body, mutation: made.mutation, steps };
  }

  /** A body of one protocol sent where another is expected: Tencent to native, native to Tencent, JSON as protobuf and back. */
  private crossRoute(r: Rng, steps: string[]): { path: string; contentType: string; made: { body: Uint8Array; mutation: string } } {
    const from = pick(r, ['tencent', 'native', 'json'] as const);
    const seeds = from === 'json' ? this.corpus.json.map((text) => Buffer.from(text)) : this.corpus[from];
    steps.push(`cross-route from ${from}`);
    const body = chance(r, 0.5) ? pick(r, seeds) : mutateBytes(r, pick(r, seeds), seeds, steps);
    const made = { body, mutation: 'cross-route' };
    if (from === 'tencent') return { path: native.path, contentType: chance(r, 0.5) ? 'application/json' : 'application/x-protobuf', made };
    if (from === 'native') return { path: chance(r, 0.5) ? tencent.path : native.path, contentType: 'application/json', made };
    return { path: chance(r, 0.5) ? tencent.path : native.path, contentType: 'application/x-protobuf', made };
  }
}

/** Mostly short, sometimes kilobytes, rarely past the 64 KiB body limit. */
function randomBody(r: Rng): Uint8Array {
  const roll = r();
  if (roll < 0.02) return randomBytes(r, 65_537 + int(r, 2000));
  if (roll < 0.1) return randomBytes(r, int(r, 8192));
  return randomBytes(r, int(r, 96));
}
