import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DeviceIdKind } from '../../src/engine/types.js';
import { mediaModule } from '../../src/media/registry.js';
import type { SimulatedAd, SimulatedRequest } from '../../src/media/simulated-request.js';
import { DemoRandom } from '../../src/store/demo-population.js';
import type { BenchDevice, DevicePopulation } from './population.js';

/**
 * Benchmark traffic, the same for every server and every run of one seed: which media protocol, which device
 * (Zipf-distributed repeats over the population, a share never seen by the store), which of its ids the platform
 * sends, platform experiment buckets, pings, and second requests with candidate creatives. Everything is drawn from
 * one seeded PRNG, so a seed names the traffic exactly.
 */

export interface TrafficMix {
  /** Share of requests whose device is not in the store. */
  unknownShare: number;
  iosShare: number;
  /** Share sent on the native protocol (/rta/v1); the rest is Tencent (/rta/tencent). */
  nativeShare: number;
  pingShare: number;
  /** Share of second requests (re-pricing candidate creatives). */
  secondRequestShare: number;
  /** Share of requests that carry the platform's experiment buckets. */
  experimentShare: number;
  /** s in P(rank r) ~ 1 / r^s: how strongly the same devices come back. */
  zipfExponent: number;
}

export const DEFAULT_MIX: TrafficMix = {
  unknownShare: 0.3,
  iosShare: 0.25,
  nativeShare: 0.3,
  pingShare: 0.01,
  secondRequestShare: 0.03,
  experimentShare: 0.9,
  zipfExponent: 0.9,
};

export interface TrafficItem {
  media: 'tencent' | 'native';
  /** Whether the device is in the store (pings included). */
  known: boolean;
  request: SimulatedRequest;
}

/** What the traffic needs from the strategy book: bid strategy ids and their creatives, for bound candidate ads. */
export interface BookIds {
  bidStrategies: { id: string; creativeIds: number[] }[];
}

const strategiesFile = z.object({
  strategies: z.array(
    z.object({
      id: z.string(),
      kind: z.string(),
      creatives: z.array(z.object({ id: z.number().int() }).loose()).optional(),
    }).loose(),
  ),
}).loose();

export function readBookIds(path: string): BookIds {
  const parsed = strategiesFile.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  if (!parsed.success) throw new Error(`${path}: not a strategy book: ${parsed.error.issues[0]?.message}`);
  const bidStrategies = parsed.data.strategies
    .filter((s) => s.kind === 'bid')
    .map((s) => ({ id: s.id, creativeIds: (s.creatives ?? []).map((c) => c.id) }));
  return { bidStrategies };
}

/**
 * How often the platform sends each id a device has. Android: OAID nearly always, IMEI on older devices and apps
 * with the permission. iOS: IDFA only after App Tracking Transparency consent, CAID where the app integrates it.
 * A request always carries at least one id.
 */
const ID_PRESENCE: Record<DeviceIdKind, number> = {
  [DeviceIdKind.OAID_MD5]: 0.9,
  [DeviceIdKind.IMEI_MD5]: 0.5,
  [DeviceIdKind.IDFA_MD5]: 0.7,
  [DeviceIdKind.CAID_MD5]: 0.9,
  [DeviceIdKind.ANDROID_ID_MD5]: 0.3,
  [DeviceIdKind.MAC_MD5]: 0.1,
};
const TEMPLATE_IDS = [311, 450, 720];
/** Platform experiment layers: buckets are split by device, so a device keeps its buckets from one request to the next. */
const EXPERIMENT_LAYER_ONE = 32768;
const EXPERIMENT_LAYER_TWO = 1024;

/** Inverse-CDF sampling of ranks 0..n-1 with P(rank r) proportional to 1 / (r + 1)^s. */
export class ZipfSampler {
  private readonly cumulative: Float64Array;

  constructor(n: number, exponent: number) {
    if (n < 1) throw new Error('a Zipf sampler needs at least one rank');
    this.cumulative = new Float64Array(n);
    let total = 0;
    for (let r = 0; r < n; r++) this.cumulative[r] = total += 1 / (r + 1) ** exponent;
    for (let r = 0; r < n; r++) this.cumulative[r]! /= total;
  }

  /** The rank for a uniform draw in [0, 1). */
  rank(unit: number): number {
    let low = 0;
    let high = this.cumulative.length - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.cumulative[middle]! > unit) high = middle;
      else low = middle + 1;
    }
    return low;
  }
}

export function generateTraffic(population: DevicePopulation, book: BookIds, mix: TrafficMix, count: number, seed: number): TrafficItem[] {
  checkMix(mix);
  const pools = {
    known: { android: population.known.android, ios: population.known.ios },
    unknown: { android: population.unknown.android, ios: population.unknown.ios },
  };
  const samplers = new Map<BenchDevice[], ZipfSampler>();
  for (const group of [pools.known, pools.unknown])
    for (const devices of [group.android, group.ios]) {
      if (devices.length > 0) samplers.set(devices, new ZipfSampler(devices.length, mix.zipfExponent));
    }

  const random = new DemoRandom(seed);
  const seedHex = (seed >>> 0).toString(16).padStart(8, '0');
  const items: TrafficItem[] = [];
  for (let i = 0; i < count; i++) {
    const isPing = random.chance(mix.pingShare);
    const media = random.chance(mix.nativeShare) ? 'native' : 'tencent';
    const os = random.chance(mix.iosShare) ? 'ios' : 'android';
    const known = !random.chance(mix.unknownShare);
    const devices = (known ? pools.known : pools.unknown)[os];
    const sampler = samplers.get(devices);
    if (!sampler) throw new Error(`the population has no ${known ? 'known' : 'unknown'} ${os} devices to draw from`);
    const device = devices[sampler.rank(random.unit())]!;
    const secondRequest = !isPing && random.chance(mix.secondRequestShare);
    items.push({
      media,
      known,
      request: {
        requestId: `${seedHex}${i.toString(16).padStart(8, '0')}${random.hex(16)}`,
        os,
        ids: sentIds(device, random),
        platformExperimentIds: !isPing && random.chance(mix.experimentShare) ? experimentBuckets(device) : [],
        isPing,
        isTest: false,
        secondRequest,
        ads: secondRequest ? candidateAds(book, random) : [],
      },
    });
  }
  return items;
}

function checkMix(mix: TrafficMix): void {
  for (const [name, value] of Object.entries(mix)) {
    if (name === 'zipfExponent') {
      if (!(value >= 0 && value <= 3)) throw new Error(`zipfExponent ${value} is not within 0..3`);
    } else if (!(value >= 0 && value <= 1)) throw new Error(`${name} ${value} is not a share within 0..1`);
  }
}

function sentIds(device: BenchDevice, random: DemoRandom): BenchDevice['ids'] {
  const sent = device.ids.filter((id) => random.chance(ID_PRESENCE[id.kind]));
  return sent.length > 0 ? sent : [device.ids[0]!];
}

function experimentBuckets(device: BenchDevice): number[] {
  const hash = Number.parseInt(device.ids[0]!.md5.slice(0, 8), 16);
  const buckets = [EXPERIMENT_LAYER_ONE + (hash % 4)];
  if ((hash >>> 2) % 2 === 0) buckets.push(EXPERIMENT_LAYER_TWO + ((hash >>> 8) % 16));
  return buckets;
}

function candidateAds(book: BookIds, random: DemoRandom): SimulatedAd[] {
  const ads: SimulatedAd[] = [];
  const adCount = random.int(1, 3);
  for (let a = 0; a < adCount; a++) {
    const strategy = book.bidStrategies.length > 0 && random.chance(0.8) ? book.bidStrategies[random.int(0, book.bidStrategies.length - 1)]! : null;
    const creatives: SimulatedAd['creatives'] = [];
    const creativeCount = random.int(1, 3);
    for (let c = 0; c < creativeCount; c++) {
      const owned = strategy !== null && strategy.creativeIds.length > 0;
      const creativeId = owned ? strategy.creativeIds[random.int(0, strategy.creativeIds.length - 1)]! : random.int(800_000, 899_999);
      creatives.push({ creativeId: String(creativeId), templateId: TEMPLATE_IDS[random.int(0, TEMPLATE_IDS.length - 1)]! });
    }
    ads.push({ adGroupId: String(random.int(100_000, 999_999)), strategyId: strategy?.id ?? '', creatives });
  }
  return ads;
}

/** One request ready to send: its route, content type, body, and the whole HTTP/1.1 message. */
export interface EncodedRequest {
  path: string;
  contentType: string;
  body: Buffer;
  /** Request line, headers and body, for raw-socket clients. */
  message: Buffer;
}

/** Encodes every item once, up front, with the media's own client: nothing is encoded while load runs. */
export function encodeTraffic(items: readonly TrafficItem[], host: string, options: { json?: boolean } = {}): EncodedRequest[] {
  return items.map(({ media, request }) => {
    const { client } = mediaModule(media);
    const { body, contentType } = client.encodeRequest(request, options);
    const head = `POST ${client.path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: ${contentType}\r\nContent-Length: ${body.length}\r\n\r\n`;
    const bodyBuffer = Buffer.from(body);
    return { path: client.path, contentType, body: bodyBuffer, message: Buffer.concat([Buffer.from(head, 'latin1'), bodyBuffer]) };
  });
}
