/**
 * What a team would otherwise build: the very same engine (the built dist/, as `node dist/server/main.js` runs it)
 * behind Node's own `http` module instead of uWebSockets.js, on one thread. Request handling mirrors
 * src/server/media-route.ts: POST only, body limit, 400 with `reason: message` on bad input, one 200 reply per
 * decision, the same metrics. The admin port serves /metrics.
 * Run: node --import tsx bench/servers/node-http-engine.ts  (env as for the engine: HOST, PORT, ADMIN_PORT, RTA_*)
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type * as ConfigModule from '../../src/config.js';
import type { DecisionSink, Engine } from '../../src/engine/engine.js';
import type * as ErrorsModule from '../../src/engine/errors.js';
import type { BidContext, Decision, MediaAdapter } from '../../src/engine/types.js';
import type { Metrics } from '../../src/observe/metrics.js';
import type * as BootModule from '../../src/server/boot.js';

const built = (path: string) => new URL(`../../dist/${path}`, import.meta.url).href;
const { loadConfig } = (await import(built('config.js'))) as typeof ConfigModule;
const { boot } = (await import(built('server/boot.js'))) as typeof BootModule;
const { InputError } = (await import(built('engine/errors.js'))) as typeof ErrorsModule;

const config = loadConfig();
const runtime = await boot(config, { scoring: config.server.mode === 'scoring-pool' ? 'pool' : 'inline', processMetrics: true });
const { engine, metrics } = runtime;
const maxBodyBytes = config.server.maxBodyBytes;

class NodeHttpRequest implements DecisionSink {
  private receivedAt = 0;
  private closed = false;

  constructor(
    private readonly adapter: MediaAdapter,
    private readonly engine: Engine,
    private readonly metrics: Metrics,
    private readonly res: ServerResponse,
  ) {
    res.once('close', () => (this.closed = true));
  }

  decide(body: Buffer, contentType: string): void {
    this.receivedAt = performance.now();
    let context: BidContext;
    try {
      context = this.adapter.decode(body, contentType);
    } catch (err) {
      const reason = err instanceof InputError ? err.reason : 'undecodable';
      refuse(this.res, 400, reason, (err as Error).message, false);
      return;
    }
    const media = this.adapter.name;
    if (context.refusedDeviceIds > 0) this.metrics.refusedDeviceIds.inc({ media }, context.refusedDeviceIds);
    if (context.isTest) this.metrics.testRequests.inc({ media });
    this.engine.handle(context, this, this.receivedAt);
  }

  deliver(context: BidContext, decision: Decision): void {
    if (this.closed) {
      this.metrics.abortedRequests.inc();
      return;
    }
    decision.processingTimeUs = Math.round((performance.now() - this.receivedAt) * 1000);
    const reply = this.adapter.encode(context, decision);
    const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
    this.res.writeHead(200, { 'Content-Type': reply.contentType, 'Content-Length': body.length });
    this.res.end(body);
    this.metrics.processingSeconds.observe(this.metrics.processingSeconds.slot({ media: this.adapter.name }), (performance.now() - this.receivedAt) / 1000);
    this.metrics.requests.inc({ media: context.media, outcome: decision.reason });
  }

  fail(_context: BidContext, stage: string): void {
    if (!this.closed) refuse(this.res, 500, 'internal_error', `${stage} failed and so did the fallback`, false);
  }
}

function refuse(res: ServerResponse, status: number, reason: string, message: string, closeConnection: boolean): void {
  metrics.rejectedInputs.inc({ reason });
  const body = `${reason}: ${message.replace(/\s+/g, ' ').slice(0, 300)}\n`;
  res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), ...(closeConnection ? { Connection: 'close' } : {}) });
  res.end(body);
}

const adapterByPath = new Map(runtime.media.map((m) => [m.module.path, m.module.adapter]));
const media = createServer({ keepAlive: true, noDelay: true }, (req: IncomingMessage, res: ServerResponse) => {
  const adapter = adapterByPath.get(req.url ?? '');
  if (!adapter) return refuse(res, 404, 'not_found', `no route ${req.method} ${req.url}`, false);
  if (req.method !== 'POST') return refuse(res, 405, 'method_not_allowed', `use POST for ${req.url}`, false);
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBodyBytes) return refuse(res, 413, 'body_too_large', `body of ${declared} bytes exceeds the limit of ${maxBodyBytes}`, true);
  const request = new NodeHttpRequest(adapter, engine, metrics, res);
  const chunks: Buffer[] = [];
  let received = 0;
  req.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > maxBodyBytes) {
      refuse(res, 413, 'body_too_large', `body exceeds the limit of ${maxBodyBytes} bytes`, true);
      req.destroy();
    } else chunks.push(chunk);
  });
  req.on('end', () => {
    if (received <= maxBodyBytes) request.decide(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), req.headers['content-type'] ?? '');
  });
});

const admin = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/metrics') {
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
      (err: Error) => res.writeHead(500).end(`metrics_failed: ${err.message}\n`),
    );
  } else res.writeHead(404).end('not_found\n');
});

const listen = (server: ReturnType<typeof createServer>, host: string, port: number) =>
  new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
const mediaPort = await listen(media, config.server.host, config.server.port);
const adminPort = await listen(admin, config.server.adminHost, config.server.adminPort);
metrics.ready.set(1);
console.log(
  JSON.stringify({ event: 'listening', media: `http://${config.server.host}:${mediaPort}`, admin: `http://${config.server.adminHost}:${adminPort}` }),
);

// The benchmark stops this server only between runs, with nothing in flight; the engine keeps no state to save.
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
