import { createRequire } from 'node:module';
import type * as UwsModule from 'uWebSockets.js';

/**
 * Loads uWebSockets.js and insists on the native binary. The npm package we install silently falls back to a
 * pure-JS server when its binary does not load; serving RTA traffic on that would be an order of magnitude
 * slower, so we refuse to start instead.
 */
const require = createRequire(import.meta.url);

export type Uws = typeof UwsModule;

export class UwsNotNativeError extends Error {
  override name = 'UwsNotNativeError';
}

export function loadNativeUws(): Uws {
  const uws = require('uWebSockets.js') as Uws;
  const nativeBinary = Object.keys(require.cache).find((path) => /uws_[a-z0-9]+_[a-z0-9]+_\d+\.node$/.test(path));
  if (!nativeBinary) {
    throw new UwsNotNativeError(
      `uWebSockets.js did not load its native binary for ${process.platform}-${process.arch} ABI ${process.versions.modules} ` +
        `(Node ${process.version}) and fell back to its slow pure-JS server. Refusing to start: run on Node 20 on glibc Linux, ` +
        `and unset UWS_USE_FALLBACK.`,
    );
  }
  return uws;
}
