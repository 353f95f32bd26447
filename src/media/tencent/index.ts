import type { MediaModule } from '../module.js';
import { tencentAdapter } from './adapter.js';
import { tencentClient } from './client.js';

export const tencent: MediaModule = {
  name: 'tencent',
  path: '/rta/tencent',
  summary: 'Tencent Ads RTA, proto2 `tencent.ad.rta` (shared/protocols/tencent-rta.md)',
  adapter: tencentAdapter,
  client: tencentClient,
  // The protocol page: coefficients 0.2..5.0 (outside read as 1.0), at most 2 decimals; CPC at least 10 fen.
  rules: { coefficient: { min: 0.2, max: 5, decimals: 2 }, cpcFloorFen: 10, cacheSeconds: { min: 3600, max: 604_800 }, declineStatus: 200 },
  proto: { file: new URL('../../../proto/tencent/rta.proto', import.meta.url), request: 'tencent.ad.rta.RtaRequest', response: 'tencent.ad.rta.RtaResponse' },
  fixtures: new URL('./fixtures/', import.meta.url),
  speaks: { ping: true, test: true, secondRequest: true, askedStrategies: false, declinesByStrategy: false },
  carriesRawIds: false,
};
