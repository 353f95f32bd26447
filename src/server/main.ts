import { parseArgs } from 'node:util';
import type { us_listen_socket } from 'uWebSockets.js';
import { ConfigError, loadConfig } from '../config.js';
import { log } from '../observe/log.js';
import { createAdminApp } from './admin.js';
import { boot } from './boot.js';
import { inFlight, mediaRoute, refuse } from './media-route.js';
import { loadNativeUws } from './uws.js';

/**
 * Starts the engine: config, native uWebSockets.js, models, strategies and devices, then the media and admin
 * ports. SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish, and exits 0.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string' } } });
  const config = loadConfig({ file: values.config });
  const uws = loadNativeUws();
  const runtime = await boot(config);
  const { metrics } = runtime;
  let ready = false;

  const app = uws.App();
  for (const [path, adapter] of runtime.routes) app.any(path, mediaRoute(adapter, runtime.engine, config.server, metrics));
  app.get('/healthz', (res) => {
    res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', 'text/plain').end('ok\n'));
  });
  app.any('/healthz', (res) => refuse(res, metrics, '405 Method Not Allowed', 'method_not_allowed', 'use GET for /healthz', false, 'GET'));
  app.any('/*', (res, req) => refuse(res, metrics, '404 Not Found', 'not_found', `no route ${req.getMethod().toUpperCase()} ${req.getUrl()}`, false));

  const admin = createAdminApp(uws, metrics, () => ready);
  const mediaSocket = await listen(app, config.server.host, config.server.port, 'media');
  const adminSocket = await listen(admin, config.server.adminHost, config.server.adminPort, 'admin');
  ready = true;
  metrics.ready.set(1);
  const queueGauge = setInterval(() => {
    metrics.scoringQueueDepth.set(runtime.pool.queueDepth);
    metrics.scoringUtilization.set(runtime.pool.utilization);
  }, 1000);
  queueGauge.unref();
  log('info', 'listening', {
    media: `http://${config.server.host}:${uws.us_socket_local_port(mediaSocket)}`,
    admin: `http://${config.server.adminHost}:${uws.us_socket_local_port(adminSocket)}`,
    routes: [...runtime.routes.keys()],
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    ready = false;
    metrics.ready.set(0);
    log('info', 'stopping', { signal, inFlight: inFlight.count });
    uws.us_listen_socket_close(mediaSocket);
    const giveUpAt = Date.now() + config.server.drainTimeoutMs;
    while (inFlight.count > 0 && Date.now() < giveUpAt) await new Promise((r) => setTimeout(r, 5));
    const unfinished = inFlight.count;
    uws.us_listen_socket_close(adminSocket);
    await runtime.pool.close();
    log(unfinished > 0 ? 'warn' : 'info', 'stopped', { unfinished });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

function listen(app: ReturnType<ReturnType<typeof loadNativeUws>['App']>, host: string, port: number, name: string): Promise<us_listen_socket> {
  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => (socket ? resolve(socket) : reject(new Error(`cannot listen for ${name} on ${host}:${port} (port in use or not permitted)`))));
  });
}

main().catch((err: unknown) => {
  const error = err as Error;
  log('error', 'start_failed', { error: error.name, message: error.message });
  process.exit(error instanceof ConfigError ? 2 : 1);
});
