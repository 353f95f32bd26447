import { nativeClient } from './native/client.js';
import type { MediaClient } from './simulated-request.js';
import { tencentClient } from './tencent/client.js';

/** The media side of every protocol we serve, by media name: for the simulator, the benchmark and the warm-up. */
export const MEDIA_CLIENTS: ReadonlyMap<string, MediaClient> = new Map([
  [tencentClient.name, tencentClient],
  [nativeClient.name, nativeClient],
]);
