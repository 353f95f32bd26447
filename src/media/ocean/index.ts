import type { MediaModule } from '../module.js';
import { oceanAdapter } from './adapter.js';
import { oceanClient } from './client.js';

export const ocean: MediaModule = {
  name: 'ocean',
  path: '/rta/ocean',
  summary: 'Ocean Engine (ByteDance) RTA, proto3, from a public integration, not an official document (shared/protocols/ocean-engine-rta.md)',
  adapter: oceanAdapter,
  client: oceanClient,
  // No range is published (the platform's reports bucket coefficients up to "above 5.0"): Tencent's, until known.
  rules: { coefficient: { min: 0.2, max: 5, decimals: 2 }, cpcFloorFen: 10, cacheSeconds: { min: 0, max: 604_800 }, declineStatus: 200 },
  proto: { file: new URL('../../../proto/ocean/rta.proto', import.meta.url), request: 'ocean.rta.Req', response: 'ocean.rta.Rsp' },
  fixtures: new URL('./fixtures/', import.meta.url),
  speaks: { ping: false, test: false, secondRequest: false, askedStrategies: true, declinesByStrategy: true },
  carriesRawIds: true,
  strategyIdPattern: /^[1-9][0-9]{0,17}$/,
};
