import { loadConfig } from '../../src/config.js';
import { loadDemoPopulation } from './population.js';
import { encodeTraffic, generateTraffic, readBookIds, type EncodedRequest, type TrafficMix } from './traffic.js';

/** The traffic every server gets, built once before any server starts; only the encoded bytes are kept. */

export interface TrafficOptions {
  seed: number;
  mix: TrafficMix;
  /** Distinct pre-encoded requests, rotated through. */
  distinct: number;
  /** Known devices drawn from the demo population (the unknown pool is half as large). */
  population: number;
}

export interface PreparedTraffic {
  requests: EncodedRequest[];
  description: {
    seed: number;
    mix: TrafficMix;
    distinctRequests: number;
    knownDevices: number;
    unknownDevices: number;
    meanBodyBytes: number;
    tencentShare: number;
    secondRequests: number;
    pings: number;
    millis: number;
  };
}

export function prepareTraffic(options: TrafficOptions): PreparedTraffic {
  const started = performance.now();
  const config = loadConfig();
  const population = loadDemoPopulation({
    snapshotPath: config.store.snapshot,
    profileSchemaPath: config.store.profileSchema,
    knownDevices: options.population,
    unknownDevices: Math.ceil(options.population / 2),
  });
  const items = generateTraffic(population, readBookIds(config.strategies), options.mix, options.distinct, options.seed);
  const requests = encodeTraffic(items, '127.0.0.1');
  return {
    requests,
    description: {
      seed: options.seed,
      mix: options.mix,
      distinctRequests: requests.length,
      knownDevices: population.known.android.length + population.known.ios.length,
      unknownDevices: population.unknown.android.length + population.unknown.ios.length,
      meanBodyBytes: Math.round(requests.reduce((sum, r) => sum + r.body.length, 0) / requests.length),
      tencentShare: items.filter((i) => i.media === 'tencent').length / items.length,
      secondRequests: items.filter((i) => i.request.secondRequest).length,
      pings: items.filter((i) => i.request.isPing).length,
      millis: Math.round(performance.now() - started),
    },
  };
}

/** Frees what building the traffic left on the heap, so the generator's GC stays short while load runs. */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}
