import type { MediaModule } from '../module.js';
import { tencentSpAdapter } from './adapter.js';
import { tencentSpClient } from './client.js';

export const tencentSp: MediaModule = {
  name: 'tencent-sp',
  path: '/rta/tencent-sp',
  summary: 'Tencent RTA SP (strategy platform), proto3 `tencent.ad.rtasp`: a vote per strategy name (shared/protocols/tencent-rtasp.md)',
  adapter: tencentSpAdapter,
  client: tencentSpClient,
  // Classic RTA's coefficient and price rules; SP has no cache time of its own.
  rules: { coefficient: { min: 0.2, max: 5, decimals: 2 }, cpcFloorFen: 10, cacheSeconds: { min: 0, max: 604_800 }, declineStatus: 200 },
  proto: { file: new URL('../../../proto/tencent/rtasp.proto', import.meta.url), request: 'tencent.ad.rtasp.RTASPRequest', response: 'tencent.ad.rtasp.RTASPResponse' },
  fixtures: new URL('./fixtures/', import.meta.url),
  speaks: { ping: false, test: false, secondRequest: false, askedStrategies: false, declinesByStrategy: true },
  carriesRawIds: false,
};
