import { setTimeout as sleep } from 'node:timers/promises';
import type { RedisOptions } from 'ioredis';
import { Cluster, Redis } from './ioredis.js';
import { z } from 'zod';
import { profileLayoutFingerprint } from './layout-fingerprint.js';
import type { ProfileSchema } from './profile-schema.js';

/**
 * The connection to the Redis device base, shared by the engine's store and the loader: one server (`url`) or a
 * Redis Cluster (`nodes`, a few seed nodes; the rest are discovered). Tuned for serving, not for durability of
 * commands: nothing waits in an offline queue and nothing is retried, because a lookup that cannot be answered
 * within its budget is worth nothing later; the connection itself reconnects on its own.
 *
 * Also the layout stamp: the loader writes `<prefix>layout` next to the records, and the store refuses to serve
 * records written for another profile layout (same length, different fields would otherwise be misread silently).
 */
export const redisConnectionShape = {
  /** One server, e.g. redis://127.0.0.1:6379 (password and db number as the URL says). */
  url: z.string().regex(/^rediss?:\/\/\S+$/, 'a redis:// or rediss:// URL').optional(),
  /** Redis Cluster seed nodes as host:port. */
  nodes: z
    .array(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'host:port'))
    .min(1)
    .optional(),
  /** Refuse to start when the first connection (or the cluster's slot map) is not ready this soon. */
  connectTimeoutMs: z.number().int().min(100).max(60_000).default(2_000),
  /** A connection with commands outstanding that hears nothing this long is dropped and reconnected. */
  socketTimeoutMs: z.number().int().min(100).max(60_000).default(2_000),
  /** Reconnect backoff doubles from 50 ms up to this. */
  reconnectMaxDelayMs: z.number().int().min(50).max(60_000).default(1_000),
};

export const redisConnectionSchema = z.object(redisConnectionShape).strict().superRefine(exactlyOneTarget);
export type RedisConnectionOptions = z.infer<typeof redisConnectionSchema>;
export type RedisClient = Redis | Cluster;

export function exactlyOneTarget(options: { url?: string | undefined; nodes?: string[] | undefined }, ctx: z.RefinementCtx): void {
  if ((options.url === undefined) === (options.nodes === undefined))
    ctx.addIssue({ code: 'custom', message: 'give exactly one of `url` (one server) or `nodes` (Redis Cluster seed nodes)' });
}

export class RedisStoreError extends Error {
  override name = 'RedisStoreError';
}

/** Where the client points, for messages. The URL's password is masked. */
export function describeTarget(options: RedisConnectionOptions): string {
  if (options.nodes) return `Redis Cluster (seed nodes ${options.nodes.join(', ')})`;
  return `Redis at ${options.url!.replace(/\/\/([^@/]*)@/, '//***@')}`;
}

/** Connects, or throws RedisStoreError naming the target and the cause within connectTimeoutMs. */
export async function connectRedis(options: RedisConnectionOptions, connectionName: string): Promise<RedisClient> {
  const clientOptions: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: options.connectTimeoutMs,
    socketTimeout: options.socketTimeoutMs,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, options.reconnectMaxDelayMs),
    connectionName,
  };
  const client = options.nodes
    ? new Cluster(
        options.nodes.map((node) => {
          const colon = node.lastIndexOf(':');
          return { host: node.slice(0, colon), port: Number(node.slice(colon + 1)) };
        }),
        {
          lazyConnect: true,
          enableOfflineQueue: false,
          redisOptions: clientOptions,
          clusterRetryStrategy: () => options.reconnectMaxDelayMs,
          clusterNodeRetryStrategy: clientOptions.retryStrategy,
          slotsRefreshTimeout: options.connectTimeoutMs,
        },
      )
    : new Redis(options.url!, clientOptions);
  // ioredis opens a node's connection on its first command; that first lookup would then miss its budget.
  if (client instanceof Cluster) client.on('+node', (node: Redis) => node.status === 'wait' && node.connect().catch(() => {}));
  // The error event carries the cause (ECONNREFUSED, auth...); connect() only rejects with "Connection is closed".
  let cause = 'no answer';
  const remember = (error: Error) => (cause = error.message);
  client.on('error', remember);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client instanceof Cluster ? clusterReady(client, performance.now() + options.connectTimeoutMs) : client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not ready within ${options.connectTimeoutMs} ms`)), options.connectTimeoutMs);
      }),
    ]);
  } catch (error) {
    client.disconnect();
    const detail = cause === 'no answer' ? (error as Error).message : cause;
    throw new RedisStoreError(`cannot reach ${describeTarget(options)}: ${detail}`);
  } finally {
    clearTimeout(timer);
    client.off('error', remember);
  }
  // Errors while serving show up as failed lookups (counted); the listener only keeps ioredis from crashing.
  client.on('error', () => {});
  return client;
}

/**
 * Ready means the slot map is known and every node's connection is open. When its first attempt fails, the cluster
 * client retries by itself but its connect() promise may never settle, so readiness is polled (startup only).
 */
async function clusterReady(cluster: Cluster, deadline: number): Promise<void> {
  cluster.connect().catch(() => {});
  while (!(cluster.status === 'ready' && cluster.nodes('all').every((node) => node.status === 'ready'))) {
    if (performance.now() > deadline) throw new Error(`cluster not ready within the connect timeout (status ${cluster.status})`);
    await sleep(10);
  }
}

const layoutStampSchema = z
  .object({ schemaVersion: z.number().int(), recordBytes: z.number().int(), layoutFingerprint: z.string() })
  .strict();
export type LayoutStamp = z.infer<typeof layoutStampSchema>;

export function layoutStampKey(keyPrefix: string): string {
  return `${keyPrefix}layout`;
}

export function layoutStampOf(schema: ProfileSchema): LayoutStamp {
  return { schemaVersion: schema.version, recordBytes: schema.recordBytes, layoutFingerprint: profileLayoutFingerprint(schema) };
}

/** The stamp under this prefix, undefined when none; throws RedisStoreError on a value that is not a stamp. */
export async function readLayoutStamp(client: RedisClient, keyPrefix: string): Promise<LayoutStamp | undefined> {
  const key = layoutStampKey(keyPrefix);
  const text = await client.get(key);
  if (text === null) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const stamp = layoutStampSchema.safeParse(parsed);
  if (!stamp.success) throw new RedisStoreError(`Redis key "${key}" is not a profile layout stamp: ${JSON.stringify(text.slice(0, 80))}`);
  return stamp.data;
}

/** Why records stamped `found` cannot be read with `wanted`, or undefined when they can. */
export function layoutMismatch(found: LayoutStamp, wanted: LayoutStamp): string | undefined {
  if (found.schemaVersion !== wanted.schemaVersion || found.recordBytes !== wanted.recordBytes)
    return `written for profile schema version ${found.schemaVersion} (${found.recordBytes}-byte records), but this schema is version ${wanted.schemaVersion} (${wanted.recordBytes}-byte records)`;
  if (found.layoutFingerprint !== wanted.layoutFingerprint)
    return `written for another field layout of profile schema version ${wanted.schemaVersion} (layout ${found.layoutFingerprint}, this schema ${wanted.layoutFingerprint})`;
  return undefined;
}
