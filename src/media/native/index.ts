import type { MediaModule } from '../module.js';
import { nativeAdapter } from './adapter.js';
import { nativeClient } from './client.js';

export const native: MediaModule = {
  name: 'native',
  path: '/rta/v1',
  summary: 'our own protocol, proto3 `rta.v1` in protobuf or JSON, for other media and for tools',
  adapter: nativeAdapter,
  client: nativeClient,
  // Our own protocol keeps the book's three decimals; the ranges are the media's, so a reply means the same everywhere.
  rules: { coefficient: { min: 0.2, max: 5, decimals: 3 }, cpcFloorFen: 10, cacheSeconds: { min: 0, max: 604_800 }, declineStatus: 200 },
  proto: { file: new URL('../../../proto/rta/v1/native.proto', import.meta.url), request: 'rta.v1.NativeRequest', response: 'rta.v1.NativeResponse' },
  fixtures: new URL('./fixtures/', import.meta.url),
  speaks: { ping: true, test: true, secondRequest: true, askedStrategies: false, declinesByStrategy: false },
  carriesRawIds: false,
};
