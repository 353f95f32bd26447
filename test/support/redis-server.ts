import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/**
 * Real redis-server processes for the tests, on free loopback ports, with persistence off. Tests that need one
 * skip loudly (describe.skipIf(!REDIS_SERVER_FOUND)) when the binary is not installed; .ci/run installs it.
 */
export const REDIS_SERVER_FOUND = spawnSync('redis-server', ['--version']).status === 0;
if (!REDIS_SERVER_FOUND) {
  console.warn('\n*** redis-server NOT FOUND on PATH: Redis store tests SKIPPED (apt-get install redis-server) ***\n');
}

export interface RedisServer {
  port: number;
  url: string;
  /** SIGKILL: the server vanishes mid-conversation, as in a crash. */
  kill(): Promise<void>;
  /**
   * SIGSTOP: the server stalls with every connection open, as in a long fork, swap storm or slow command, until
   * resume(); the test decides when it ends instead of guessing a duration (CLIENT PAUSE ALL in Redis 7.0 also
   * holds the UNPAUSE that would end it early).
   */
  pause(): Promise<void>;
  resume(): void;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts redis-server on `port` (a free one by default) and resolves once it accepts connections. */
export async function startRedisServer(options: { port?: number; cluster?: boolean } = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'rta-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  if (options.cluster) args.push('--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf');
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server on port ${port} not ready in 10 s:\n${output}`)), 10_000);
    child.stdout!.on('data', (data: Buffer) => {
      output += data.toString();
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.stderr!.on('data', (data: Buffer) => (output += data.toString()));
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start redis-server: ${error.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited with ${code}:\n${output}`));
    });
  });
  await ready;
  let paused = false;
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      // A stopped process keeps a SIGTERM pending until it runs again.
      if (paused) child.kill('SIGCONT');
      await once(child, 'exit');
    }
    running.delete(child);
    rmSync(dir, { recursive: true, force: true });
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: () => end('SIGKILL'),
    async pause() {
      child.kill('SIGSTOP');
      paused = true;
      // The kernel stops the process on its own time; until then it may still answer a command.
      while (!/^\d+ \(.*\) T/.test(readFileSync(`/proc/${child.pid}/stat`, 'utf8'))) await new Promise((resolve) => setTimeout(resolve, 1));
    },
    resume() {
      child.kill('SIGCONT');
      paused = false;
    },
    stop: () => end('SIGTERM'),
  };
}

export interface RedisClusterServers {
  nodes: RedisServer[];
  /** host:port of every node. */
  addresses: string[];
  stop(): Promise<void>;
}

/** A Redis Cluster of `size` masters (no replicas) sharing the 16384 slots in even ranges. */
export async function startRedisCluster(size = 3): Promise<RedisClusterServers> {
  const nodes: RedisServer[] = [];
  for (let i = 0; i < size; i++) nodes.push(await startRedisServer({ cluster: true }));
  const admins = nodes.map((node) => new Redis(node.port, '127.0.0.1'));
  try {
    const perNode = Math.ceil(16384 / size);
    for (let i = 0; i < size; i++) {
      await admins[i]!.call('CLUSTER', 'ADDSLOTSRANGE', i * perNode, Math.min(16383, (i + 1) * perNode - 1));
      if (i > 0) await admins[0]!.call('CLUSTER', 'MEET', '127.0.0.1', nodes[i]!.port);
    }
    const deadline = Date.now() + 20_000;
    for (;;) {
      const states = await Promise.all(admins.map(async (admin) => String(await admin.call('CLUSTER', 'INFO'))));
      if (states.every((info) => info.includes('cluster_state:ok'))) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok in 20 s:\n${states.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    for (const admin of admins) admin.disconnect();
  }
  return {
    nodes,
    addresses: nodes.map((node) => `127.0.0.1:${node.port}`),
    stop: async () => {
      await Promise.all(nodes.map((node) => node.stop()));
    },
  };
}
