import type { TemplatedApp } from 'uWebSockets.js';
import type { Config } from '../config.js';
import type { Runtime } from './boot.js';
import { mediaAccess } from './media-access.js';
import { mediaRoute, refuse } from './media-route.js';
import type { Uws } from './uws.js';

/** The media port's routes: one per media protocol, a liveness probe, and a counted 404 for everything else. */
export function createMediaApp(uws: Uws, runtime: Runtime, config: Config): TemplatedApp {
  const { metrics } = runtime;
  const app = uws.App();
  for (const media of runtime.media) {
    const access = mediaAccess(media.module.path, config.server.mediaAuth[media.module.name]);
    app.any(access.routePath, mediaRoute(media, runtime.engine, config.server, metrics, access, runtime.decisionLog));
  }
  app.get('/healthz', (res) => {
    res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', 'text/plain').end('ok\n'));
  });
  app.any('/healthz', (res) => refuse(res, metrics, '405 Method Not Allowed', 'method_not_allowed', 'use GET for /healthz', false, 'GET'));
  app.any('/*', (res, req) => refuse(res, metrics, '404 Not Found', 'not_found', `no route ${req.getMethod().toUpperCase()} ${req.getUrl()}`, false));
  return app;
}

export function listen(app: TemplatedApp, host: string, port: number, name: string): Promise<import('uWebSockets.js').us_listen_socket> {
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => (socket ? resolve(socket) : reject(new Error(`cannot listen for ${name} on ${host}:${port} (port in use or not permitted)`))));
  });
}

/**
 * A drain that loses nothing: with the listening socket already closed, every reply from now on closes its
 * connection, so a peer with requests still in the socket gets each answered and then reconnects elsewhere.
 * Resolves once nothing is in flight and no request has started for `quietMs` (requests already sent on open
 * connections are read within that), or when the drain time is up; returns the requests left unfinished.
 */
export async function drain(inFlight: { count: number; draining: boolean; lastStartedAt: number }, timeoutMs: number, quietMs = 100): Promise<number> {
  inFlight.draining = true;
  const giveUpAt = Date.now() + timeoutMs;
  while (Date.now() < giveUpAt && (inFlight.count > 0 || performance.now() - inFlight.lastStartedAt < quietMs)) await new Promise((r) => setTimeout(r, 5));
  return inFlight.count;
}
