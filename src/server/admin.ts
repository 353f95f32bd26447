import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { Metrics } from '../observe/metrics.js';
import { refuse } from './media-route.js';
import type { Uws } from './uws.js';

/**
 * The admin port (loopback by default): Prometheus metrics and readiness. Kept off the media port so a media
 * platform can never scrape or probe it. `metrics` counts the admin port's own refusals; `exposition` renders
 * every thread's metrics.
 */
export function createAdminApp(uws: Uws, metrics: Metrics, exposition: () => Promise<string>, isReady: () => boolean): TemplatedApp {
  return uws
    .App()
    .get('/metrics', (res) => {
      let aborted = false;
      res.onAborted(() => (aborted = true));
      exposition().then(
        (text) => !aborted && reply(res, '200 OK', metrics.registry.contentType, text),
        (err: Error) => !aborted && reply(res, '500 Internal Server Error', 'text/plain', `metrics_failed: ${err.message}\n`),
      );
    })
    .get('/readyz', (res) => {
      if (isReady()) reply(res, '200 OK', 'text/plain', 'ready\n');
      else reply(res, '503 Service Unavailable', 'text/plain', 'not_ready: models, strategies or device store still loading\n');
    })
    .get('/healthz', (res) => reply(res, '200 OK', 'text/plain', 'ok\n'))
    .any('/*', (res, req) => refuse(res, metrics, '404 Not Found', 'not_found', `no admin route ${req.getMethod().toUpperCase()} ${req.getUrl()}`, false));
}

function reply(res: HttpResponse, status: string, contentType: string, body: string): void {
  res.cork(() => res.writeStatus(status).writeHeader('Content-Type', contentType).end(body));
}
