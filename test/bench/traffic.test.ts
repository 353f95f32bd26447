import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { DeviceIdKind, Os } from '../../src/engine/types.js';
import { nativeAdapter } from '../../src/media/native/adapter.js';
import { tencentAdapter } from '../../src/media/tencent/adapter.js';
import type { BenchDevice, DevicePopulation } from '../../bench/lib/population.js';
import { DEFAULT_MIX, encodeTraffic, generateTraffic, ZipfSampler, type BookIds, type TrafficItem } from '../../bench/lib/traffic.js';

const md5 = (text: string) => createHash('md5').update(text).digest('hex');

function devices(os: BenchDevice['os'], count: number, prefix: string): BenchDevice[] {
  return Array.from({ length: count }, (_, i) => ({
    os,
    ids:
      os === 'android'
        ? [{ kind: DeviceIdKind.OAID_MD5, md5: md5(`${prefix}-oaid-${i}`) }, ...(i % 2 === 0 ? [{ kind: DeviceIdKind.IMEI_MD5, md5: md5(`${prefix}-imei-${i}`) }] : [])]
        : [{ kind: DeviceIdKind.IDFA_MD5, md5: md5(`${prefix}-idfa-${i}`) }, ...(i % 2 === 0 ? [{ kind: DeviceIdKind.CAID_MD5, md5: md5(`${prefix}-caid-${i}`) }] : [])],
  }));
}

const population: DevicePopulation = {
  known: { android: devices('android', 3000, 'known'), ios: devices('ios', 1000, 'known') },
  unknown: { android: devices('android', 1500, 'unknown'), ios: devices('ios', 500, 'unknown') },
};
const knownKeys = new Set([...population.known.android, ...population.known.ios].flatMap((d) => d.ids.map((id) => id.md5)));
const book: BookIds = {
  bidStrategies: [
    { id: 'acq_prime_new', creativeIds: [710101, 710102] },
    { id: 'react_dormant', creativeIds: [720201] },
  ],
};

const COUNT = 40_000;
const items = generateTraffic(population, book, DEFAULT_MIX, COUNT, 7);
const share = (predicate: (item: TrafficItem) => boolean, among: readonly TrafficItem[] = items) => among.filter(predicate).length / among.length;
/** Four standard errors of a share estimated from n draws: a correct generator stays inside this almost always. */
const tolerance = (p: number, n: number) => 4 * Math.sqrt((p * (1 - p)) / n);

describe('generateTraffic', () => {
  test('the same seed gives the same traffic, byte for byte; another seed does not', () => {
    const again = generateTraffic(population, book, DEFAULT_MIX, 2000, 7);
    expect(again).toEqual(items.slice(0, 2000));
    const bytes = (list: TrafficItem[]) => Buffer.concat(encodeTraffic(list, '127.0.0.1').map((r) => r.message));
    expect(bytes(again).equals(bytes(items.slice(0, 2000)))).toBe(true);
    expect(generateTraffic(population, book, DEFAULT_MIX, 2000, 8)).not.toEqual(again);
  });

  test('each share of the mix comes out as configured', () => {
    const pings = items.filter((i) => i.request.isPing);
    const decisions = items.filter((i) => !i.request.isPing);
    expect(Math.abs(share((i) => !i.known) - DEFAULT_MIX.unknownShare)).toBeLessThan(tolerance(DEFAULT_MIX.unknownShare, COUNT));
    expect(Math.abs(share((i) => i.request.os === 'ios') - DEFAULT_MIX.iosShare)).toBeLessThan(tolerance(DEFAULT_MIX.iosShare, COUNT));
    expect(Math.abs(share((i) => i.media === 'native') - DEFAULT_MIX.nativeShare)).toBeLessThan(tolerance(DEFAULT_MIX.nativeShare, COUNT));
    expect(Math.abs(pings.length / COUNT - DEFAULT_MIX.pingShare)).toBeLessThan(tolerance(DEFAULT_MIX.pingShare, COUNT));
    const second = share((i) => i.request.secondRequest, decisions);
    expect(Math.abs(second - DEFAULT_MIX.secondRequestShare)).toBeLessThan(tolerance(DEFAULT_MIX.secondRequestShare, decisions.length));
    const withBuckets = share((i) => i.request.platformExperimentIds.length > 0, decisions);
    expect(Math.abs(withBuckets - DEFAULT_MIX.experimentShare)).toBeLessThan(tolerance(DEFAULT_MIX.experimentShare, decisions.length));
    expect(pings.every((i) => !i.request.secondRequest && i.request.platformExperimentIds.length === 0)).toBe(true);
  });

  test('unknown devices are never in the store and known ones always are', () => {
    for (const item of items) expect(item.request.ids.some((id) => knownKeys.has(id.md5))).toBe(item.known);
  });

  test("each platform sends only its own id kinds, at least one, sometimes several", () => {
    const androidKinds = new Set<number>([DeviceIdKind.OAID_MD5, DeviceIdKind.IMEI_MD5]);
    for (const { request } of items) {
      expect(request.ids.length).toBeGreaterThan(0);
      for (const id of request.ids) expect(androidKinds.has(id.kind)).toBe(request.os === 'android');
    }
    expect(share((i) => i.request.ids.length > 1)).toBeGreaterThan(0.1);
  });

  test('devices repeat with a Zipf-like skew, and a device keeps its platform buckets', () => {
    const counts = new Map<string, number>();
    for (const { request } of items) counts.set(request.ids[0]!.md5, (counts.get(request.ids[0]!.md5) ?? 0) + 1);
    const sorted = [...counts.values()].sort((a, b) => b - a);
    const topShare = sorted.slice(0, 10).reduce((a, b) => a + b, 0) / COUNT;
    // Ten devices out of 6000 would take 0.17 % of uniform traffic; a Zipf head takes far more.
    expect(topShare).toBeGreaterThan(0.05);
    expect(counts.size).toBeLessThan(COUNT / 4);
    // Requests sending the same ids come from the same device.
    const bucketsByIds = new Map<string, string>();
    for (const { request } of items) {
      if (request.platformExperimentIds.length === 0) continue;
      const ids = request.ids.map((id) => id.md5).sort().join();
      const buckets = request.platformExperimentIds.join();
      expect(bucketsByIds.get(ids) ?? buckets).toBe(buckets);
      bucketsByIds.set(ids, buckets);
    }
  });

  test('second requests carry candidate ads bound to configured strategies with their own creatives', () => {
    const ads = items.filter((i) => i.request.secondRequest).flatMap((i) => i.request.ads);
    expect(ads.length).toBeGreaterThan(0);
    const creativesOf = new Map(book.bidStrategies.map((s) => [s.id, new Set(s.creativeIds.map(String))]));
    for (const ad of ads) {
      expect(ad.creatives.length).toBeGreaterThan(0);
      if (ad.strategyId === '') continue;
      const owned = creativesOf.get(ad.strategyId);
      expect(owned).toBeDefined();
      for (const creative of ad.creatives) expect(owned!.has(creative.creativeId)).toBe(true);
    }
    expect(ads.some((ad) => ad.strategyId === '')).toBe(true);
  });

  test('refuses shares outside 0..1', () => {
    expect(() => generateTraffic(population, book, { ...DEFAULT_MIX, unknownShare: 1.2 }, 10, 1)).toThrow(/unknownShare 1.2/);
  });
});

describe('encodeTraffic', () => {
  test('each message is a complete HTTP request whose body the engine decodes back to the same request', () => {
    const sample = items.filter((i) => !i.request.isPing).slice(0, 300);
    const encoded = encodeTraffic(sample, '127.0.0.1');
    encoded.forEach((request, i) => {
      const item = sample[i]!;
      const head = request.message.subarray(0, request.message.length - request.body.length).toString('latin1');
      expect(head).toMatch(new RegExp(`^POST ${request.path} HTTP/1\\.1\\r\\n[\\s\\S]*Content-Length: ${request.body.length}\\r\\n\\r\\n$`));
      const adapter = item.media === 'tencent' ? tencentAdapter : nativeAdapter;
      const context = adapter.decode(request.body, request.contentType);
      expect(context.requestId).toBe(item.request.requestId);
      expect(context.os).toBe(item.request.os === 'ios' ? Os.IOS : Os.ANDROID);
      expect(context.deviceIds.map((id) => Buffer.from(id.key).toString('hex')).sort()).toEqual(item.request.ids.map((id) => id.md5).sort());
      expect(context.platformExperimentIds).toEqual(item.request.platformExperimentIds);
      expect(context.secondRequest).toBe(item.request.secondRequest);
      expect(context.candidateAds.length).toBe(item.request.ads.length);
    });
  });
});

describe('ZipfSampler', () => {
  test('draws rank r with probability proportional to 1/(r+1)^s', () => {
    const n = 100;
    const s = 1.1;
    const sampler = new ZipfSampler(n, s);
    const counts = new Array<number>(n).fill(0);
    const draws = 200_000;
    for (let i = 0; i < draws; i++) counts[sampler.rank((i + 0.5) / draws)]!++;
    let harmonic = 0;
    for (let r = 1; r <= n; r++) harmonic += 1 / r ** s;
    for (const r of [0, 1, 9, 99]) {
      const expected = 1 / (r + 1) ** s / harmonic;
      expect(Math.abs(counts[r]! / draws - expected)).toBeLessThan(0.002);
    }
    expect(sampler.rank(0)).toBe(0);
    expect(sampler.rank(0.999999999)).toBe(n - 1);
  });
});
