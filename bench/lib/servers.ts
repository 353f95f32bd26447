import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The servers under test, each in its own process on free loopback ports: the bare uWebSockets.js ceiling, the
 * engine exactly as deployed (node dist/server/main.js), and the same engine behind node:http. Optionally pinned to
 * CPUs with taskset so the load generator does not compete with them for a core.
 */

export type ServerKind = 'bare' | 'engine' | 'node-http';
export const SERVER_KINDS: readonly ServerKind[] = ['bare', 'engine', 'node-http'];
export const SERVER_LABELS: Record<ServerKind, string> = {
  bare: 'bare uWebSockets.js (fixed bytes)',
  engine: 'engine (uWebSockets.js)',
  'node-http': 'engine behind node:http',
};

export const REPO_ROOT = new URL('../../', import.meta.url).pathname;

export interface RunningServer {
  kind: ServerKind;
  pid: number;
  host: string;
  port: number;
  mediaUrl: string;
  /** The Prometheus admin port; null for the bare server, which has none. */
  adminUrl: string | null;
  /** The server's listening line, as JSON. */
  listening: Record<string, unknown>;
  output(): string;
  stop(): Promise<void>;
}

export interface ServerOptions {
  /** taskset CPU list ("0") or null for no pinning. */
  cpus: string | null;
  /** Extra environment for the server (RTA_* overrides, which the bare server ignores). */
  engineEnv: Record<string, string>;
  /** Directory for `node --cpu-prof` profiles of the engine, or null. */
  cpuProfileDir: string | null;
  /** The checkout whose build is served (another revision's worktree for a side-by-side count); default this one. */
  root?: string;
  /** Flags for node itself (`--predictable` while counting instructions). */
  nodeFlags?: string[];
  /** Runs the server inside another command (valgrind); gets and returns the whole argv. */
  wrap?: (argv: string[]) => string[];
}

const START_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 15_000;

function command(kind: ServerKind, options: ServerOptions): string[] {
  const node = [process.execPath, ...(options.nodeFlags ?? [])];
  if (kind === 'engine' && options.cpuProfileDir) node.push('--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir);
  if (kind === 'engine') {
    const main = join(options.root ?? REPO_ROOT, 'dist/server/main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first (npm run bench does)`);
    return [...node, main];
  }
  return [...node, '--import', 'tsx', `${REPO_ROOT}bench/servers/${kind === 'bare' ? 'bare-uws' : 'node-http-engine'}.ts`];
}

export async function startServer(kind: ServerKind, options: ServerOptions): Promise<RunningServer> {
  let argv = command(kind, options);
  if (options.wrap) argv = options.wrap(argv);
  if (options.cpus !== null) argv.unshift('taskset', '-c', options.cpus);
  // The decision log and attribution stay on, as in production, but write to folders of the run's own, never the
  // checkout's data/.
  const decisionLogDir = mkdtempSync(join(tmpdir(), 'rta-bench-decisions-'));
  const attributionDir = mkdtempSync(join(tmpdir(), 'rta-bench-attribution-'));
  const env = {
    ...process.env,
    HOST: '127.0.0.1',
    PORT: '0',
    ADMIN_PORT: '0',
    RTA_DECISION_LOG_DIR: decisionLogDir,
    RTA_ATTRIBUTION_DIR: attributionDir,
    ...options.engineEnv,
  };
  const child = spawn(argv[0]!, argv.slice(1), { cwd: options.root ?? REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.once('exit', () => {
    live.delete(child);
    rmSync(decisionLogDir, { recursive: true, force: true });
    rmSync(attributionDir, { recursive: true, force: true });
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} server did not start in ${START_TIMEOUT_MS / 1000} s:\n${output.slice(-4000)}`)), START_TIMEOUT_MS);
    const check = () => {
      const line = output.split('\n').find((l) => l.includes('"event":"listening"'));
      if (!line) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      resolve(JSON.parse(line) as Record<string, unknown>);
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${kind} server exited with code ${code} before listening:\n${output.slice(-4000)}`));
    });
  });
  const media = new URL(String(listening.media));
  return {
    kind,
    pid: child.pid!,
    host: media.hostname,
    port: Number(media.port),
    mediaUrl: media.origin,
    adminUrl: typeof listening.admin === 'string' ? listening.admin : null,
    listening,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Children still running; killed if the benchmark itself dies, so no server outlives it. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface Pinning {
  /** CPUs for the servers, or null when not pinned. */
  serverCpus: string | null;
  /** CPUs this process (the load generator) was pinned to, or null. */
  generatorCpus: string | null;
  note: string;
}

/**
 * With two or more cores and taskset available, servers go on CPU 0 and this process (the load generator) on CPU 1,
 * every thread of it, so neither steals the other's core. The servers then see one core: the engine sizes its
 * default thread count from that.
 */
export function pinProcesses(wanted: boolean): Pinning {
  const cores = availableParallelism();
  if (!wanted) return { serverCpus: null, generatorCpus: null, note: 'not pinned (--pin off): servers and load generator share all cores' };
  if (cores < 2) return { serverCpus: null, generatorCpus: null, note: `not pinned: only ${cores} core` };
  const result = spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { encoding: 'utf8' });
  if (result.status !== 0) return { serverCpus: null, generatorCpus: null, note: `not pinned: taskset failed (${(result.error?.message ?? result.stderr).trim()})` };
  return { serverCpus: '0', generatorCpus: '1', note: 'pinned with taskset: servers on CPU 0, load generator on CPU 1' };
}
