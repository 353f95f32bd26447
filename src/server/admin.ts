import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { Metrics } from '../observe/metrics.js';
import { refuse } from './media-route.js';
import { RELOAD_TARGETS, type ReloadTarget } from './reload.js';
import { secretCheck } from './secret.js';
import type { Uws } from './uws.js';

/**
 * The admin port (loopback by default): Prometheus metrics and readiness. Kept off the media port so a media
 * platform can never scrape or probe it. `POST /reload/models|strategies|devices` hot-reloads that part from the
 * files the config names (the old part keeps serving if the new one is refused).
 */
export interface AdminHooks {
  /** Counts the admin port's own refusals. */
  metrics: Metrics;
  /** The bearer token every route requires, or null when the port is open (loopback only). */
  token: string | null;
  /** Prometheus text for every thread. */
  exposition(): Promise<string>;
  isReady(): boolean;
  reload(target: ReloadTarget): Promise<Record<string, unknown>>;
}

export function createAdminApp(uws: Uws, { metrics, token, exposition, isReady, reload }: AdminHooks): TemplatedApp {
  const authorized = bearerCheck(token);
  const guarded =
    (handler: (res: HttpResponse, req: HttpRequest) => void) =>
    (res: HttpResponse, req: HttpRequest): void => {
      if (authorized(req.getHeader('authorization'))) handler(res, req);
      else refuse(res, metrics, '401 Unauthorized', 'unauthorized', 'this admin route needs Authorization: Bearer <server.adminToken>', false);
    };
  return uws
    .App()
    .post('/reload/:target', guarded((res, req) => {
      const target = req.getParameter(0) as ReloadTarget;
      if (!RELOAD_TARGETS.includes(target)) {
        refuse(res, metrics, '404 Not Found', 'not_found', `no reload target "${target}" (one of ${RELOAD_TARGETS.join(', ')})`, false);
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      // Drain the (empty) body so uWS can reuse the connection.
      res.onData(() => {});
      reload(target).then(
        (summary) => !aborted && reply(res, '200 OK', 'application/json', JSON.stringify({ reloaded: target, ...summary }) + '\n'),
        (err: Error) => !aborted && reply(res, '422 Unprocessable Entity', 'text/plain', `reload_refused: ${err.message.replace(/\s+/g, ' ')}\n`),
      );
    }))
    .get('/metrics', guarded((res) => {
      let aborted = false;
      res.onAborted(() => (aborted = true));
      exposition().then(
        (text) => !aborted && reply(res, '200 OK', metrics.registry.contentType, text),
        (err: Error) => !aborted && reply(res, '500 Internal Server Error', 'text/plain', `metrics_failed: ${err.message}\n`),
      );
    }))
    .get('/readyz', guarded((res) => {
      if (isReady()) reply(res, '200 OK', 'text/plain', 'ready\n');
      else reply(res, '503 Service Unavailable', 'text/plain', 'not_ready: models, strategies or device store still loading\n');
    }))
    .get('/healthz', guarded((res) => reply(res, '200 OK', 'text/plain', 'ok\n')))
    .any('/*', guarded((res, req) => refuse(res, metrics, '404 Not Found', 'not_found', `no admin route ${req.getMethod().toUpperCase()} ${req.getUrl()}`, false)));
}

function bearerCheck(token: string | null): (header: string) => boolean {
  return token === null ? () => true : secretCheck(`Bearer ${token}`);
}

function reply(res: HttpResponse, status: string, contentType: string, body: string): void {
  res.cork(() => res.writeStatus(status).writeHeader('Content-Type', contentType).end(body));
}
