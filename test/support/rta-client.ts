import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEVICE_ID_KIND_NAMES, type DeviceIdKind } from '../../src/engine/types.js';
import { mediaModule } from '../../src/media/registry.js';
import type { MediaClient, SimulatedRequest } from '../../src/media/simulated-request.js';
import { hashRawDeviceId } from '../../src/store/device-key.js';
import { REPO_ROOT, type EngineProcess } from './engine-process.js';
import { RawConnection, rawPost } from './raw-http.js';

/**
 * The media side of the integration tests: demo personas as the platform would hash them, requests encoded by our
 * media clients, replies decoded the way the media reads them, and Prometheus scrapes of the admin port.
 */

export const PERSONA_NAMES = ['prime_prospect', 'dormant_approved', 'active_borrower', 'blacklisted', 'high_risk', 'unknown'] as const;
export type PersonaName = (typeof PERSONA_NAMES)[number];

export interface PersonaDevice {
  os: 'android' | 'ios';
  ids: { kind: DeviceIdKind; md5: string }[];
}

interface PersonasFile {
  personas: Record<string, { devices: Array<{ os: 'android' | 'ios'; ids: Array<{ kind: string; raw: string; md5: string }> }> }>;
}

const KIND_BY_NAME = new Map(Object.entries(DEVICE_ID_KIND_NAMES).map(([kind, name]) => [name, Number(kind) as DeviceIdKind]));

/**
 * data/generated/personas.json, with every raw id hashed here by the platform's rules (not taken from the file's
 * own md5 column), so a disagreement between the demo generator and the hashing rules shows up as a failure.
 */
export function loadPersonas(): Record<PersonaName, PersonaDevice[]> {
  const file = JSON.parse(readFileSync(resolve(REPO_ROOT, 'data/generated/personas.json'), 'utf8')) as PersonasFile;
  const result = {} as Record<PersonaName, PersonaDevice[]>;
  for (const name of PERSONA_NAMES) {
    const persona = file.personas[name];
    if (!persona || persona.devices.length === 0) throw new Error(`personas.json has no devices for persona "${name}"`);
    result[name] = persona.devices.map((device) => ({
      os: device.os,
      ids: device.ids.map((id) => {
        const kind = KIND_BY_NAME.get(id.kind);
        if (kind === undefined) throw new Error(`personas.json: unknown id kind "${id.kind}"`);
        const md5 = hashRawDeviceId(kind, id.raw);
        if (md5 !== id.md5) throw new Error(`personas.json: ${id.kind} "${id.raw}" hashes to ${md5}, the file says ${id.md5}`);
        return { kind, md5 };
      }),
    }));
  }
  return result;
}

let requestCounter = 0;

/** A plain first request for one device; override any field. */
export function requestFor(device: PersonaDevice | null, overrides: Partial<SimulatedRequest> = {}): SimulatedRequest {
  return {
    requestId: `it-${process.pid}-${++requestCounter}`,
    os: device?.os ?? 'android',
    ids: device?.ids ?? [],
    platformExperimentIds: [],
    isPing: false,
    isTest: false,
    secondRequest: false,
    ads: [],
    ...overrides,
  };
}

export interface HttpReply {
  status: number;
  contentType: string;
  body: Uint8Array;
  text: string;
}

export async function post(url: string, body: Uint8Array | string, contentType?: string): Promise<HttpReply> {
  const response = await fetch(url, { method: 'POST', body, headers: contentType ? { 'Content-Type': contentType } : {} });
  const bytes = new Uint8Array(await response.arrayBuffer());
  return {
    status: response.status,
    contentType: response.headers.get('content-type') ?? '',
    body: bytes,
    text: new TextDecoder().decode(bytes),
  };
}

export const tencent: MediaClient = mediaModule('tencent').client;
export const native: MediaClient = mediaModule('native').client;

/** Encodes with the media's client, posts to its route, and decodes a 200 reply; anything else throws with the body. */
export async function send(engine: EngineProcess, client: MediaClient, request: SimulatedRequest, options: { json?: boolean } = {}) {
  const { body, contentType } = client.encodeRequest(request, options);
  const reply = await post(`${engine.mediaUrl}${client.path}`, body, contentType);
  if (reply.status !== 200) throw new Error(`${client.path} answered ${reply.status}: ${reply.text}`);
  return { reply, decoded: client.decodeReply(reply.body, reply.contentType) };
}

export async function scrape(engine: EngineProcess): Promise<string> {
  const response = await fetch(`${engine.adminUrl}/metrics`);
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return response.text();
}

/** Sum of a metric over every series whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => present[k] === v)) sum += Number(match[3]);
  }
  return sum;
}

/** Polls the metrics until `metric` (summed over `labels`) reaches `atLeast`, or gives up after `timeoutMs`. */
export async function waitForMetric(engine: EngineProcess, metric: string, labels: Record<string, string>, atLeast: number, timeoutMs = 3000): Promise<number> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const value = metricSum(await scrape(engine), metric, labels);
    if (value >= atLeast || Date.now() > giveUpAt) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface LoadReply {
  status: number;
  /** The reply as the media reads it; undefined when the status is not 200. */
  decoded: Record<string, unknown> | undefined;
  /** Client-observed, from writing the request to its complete reply. */
  roundTripMs: number;
  /** performance.now() when the reply was complete. */
  at: number;
}

interface ReplyWaiter {
  predicate: (reply: LoadReply) => boolean;
  resolve: (reply: LoadReply) => void;
}

/**
 * Load over keep-alive connections: each connection sends its next request `pauseMs` after its last reply is
 * complete (at once by default: a closed loop at the engine's maximum), until stop() or `maxRequests` requests in all. A reply that does not come within readReply's timeout
 * (3 s) fails the load: a request the engine holds on to is exactly what fault tests look for.
 */
export class KeepAliveLoad {
  readonly replies: LoadReply[] = [];
  private sent = 0;
  private stopping = false;
  private waiters: ReplyWaiter[] = [];
  private readonly running: Promise<void>;

  private constructor(
    private readonly client: MediaClient,
    connections: RawConnection[],
    private readonly request: (n: number) => SimulatedRequest,
    private readonly maxRequests: number,
    private readonly pauseMs: number,
  ) {
    this.running = Promise.all(connections.map((connection) => this.drive(connection))).then(() => undefined);
    // Surfaced by done() or next(); this keeps a failure before either is awaited from being unhandled.
    this.running.catch(() => {});
  }

  static async start(
    engine: EngineProcess,
    client: MediaClient,
    options: { connections: number; request: (n: number) => SimulatedRequest; maxRequests?: number; pauseMs?: number },
  ): Promise<KeepAliveLoad> {
    const connections = await Promise.all(Array.from({ length: options.connections }, () => RawConnection.open(engine.mediaUrl)));
    return new KeepAliveLoad(client, connections, options.request, options.maxRequests ?? Infinity, options.pauseMs ?? 0);
  }

  /** The first reply completed from now on that satisfies `predicate`. */
  next(predicate: (reply: LoadReply) => boolean, timeoutMs = 10_000): Promise<LoadReply> {
    let timer: NodeJS.Timeout | undefined;
    let waiter: ReplyWaiter | undefined;
    const seen = new Promise<LoadReply>((resolve, reject) => {
      waiter = { predicate, resolve };
      this.waiters.push(waiter);
      timer = setTimeout(() => reject(new Error(`no such reply within ${timeoutMs} ms (${this.replies.length} replies so far)`)), timeoutMs);
    });
    const ended = this.running.then(() => {
      throw new Error(`the load ended before such a reply (${this.replies.length} replies)`);
    });
    return Promise.race([seen, ended]).finally(() => {
      clearTimeout(timer);
      this.waiters = this.waiters.filter((w) => w !== waiter);
    });
  }

  /** Every reply, once each connection's last request is answered (after maxRequests, or stop()). */
  async done(): Promise<LoadReply[]> {
    await this.running;
    return this.replies;
  }

  stop(): Promise<LoadReply[]> {
    this.stopping = true;
    return this.done();
  }

  private async drive(connection: RawConnection): Promise<void> {
    try {
      while (!this.stopping && this.sent < this.maxRequests) {
        const { body, contentType } = this.client.encodeRequest(this.request(this.sent++));
        const sentAt = performance.now();
        await connection.write(rawPost(this.client.path, body, { headers: { 'Content-Type': contentType } }));
        const raw = await connection.readReply();
        const at = performance.now();
        const reply: LoadReply = {
          status: raw.status,
          decoded: raw.status === 200 ? this.client.decodeReply(raw.body, raw.headers.get('content-type') ?? '') : undefined,
          roundTripMs: at - sentAt,
          at,
        };
        this.replies.push(reply);
        for (const waiter of this.waiters) if (waiter.predicate(reply)) waiter.resolve(reply);
        if (this.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, this.pauseMs));
      }
    } finally {
      connection.destroy();
    }
  }
}

export interface StrategyFileJson {
  cacheTtlSeconds: { take: number; reject: number; fallback: number };
  strategies: Array<{ id: string; kind: 'bid' | 'exclude'; enabled?: boolean; media?: string[]; mediaIds?: Record<string, string>; creatives?: Array<{ id: number }> }>;
  experiments: Array<{ id: string; salt: string; strategies: string[]; arms: Array<{ name: string; tag: number; percent: number }> }>;
}

export function loadStrategyFile(): StrategyFileJson {
  return JSON.parse(readFileSync(resolve(REPO_ROOT, 'data/strategies.json'), 'utf8')) as StrategyFileJson;
}

/** "apply@2026.11.25-1,approve@..." from data/models/manifest.json, as replies carry it. */
export function manifestModelVersion(): string {
  const manifest = JSON.parse(readFileSync(resolve(REPO_ROOT, 'data/models/manifest.json'), 'utf8')) as { models: Array<{ name: string; version: string }> };
  return manifest.models.map((m) => `${m.name}@${m.version}`).join(',');
}

/** A JSON admin call that must succeed: its parsed answer (an error naming the status and body otherwise). */
export async function adminJson<T>(engine: EngineProcess, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const response = await fetch(`${engine.adminUrl}${path}`, { method, body: body === undefined ? null : JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
  const text = await response.text();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}
