import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

/**
 * Runs the built engine (dist/server/main.js) as its own process on free loopback ports, the way it runs in
 * production: real uWebSockets.js, real worker threads, the demo data.
 */
export const REPO_ROOT = new URL('../../', import.meta.url).pathname;
const MAIN = `${REPO_ROOT}dist/server/main.js`;

/**
 * For tests of decisions rather than latency: a deadline far above any scoring time and no load shedding, so a busy
 * machine cannot turn a decision into a fallback or a shed reply (deadline.test.ts and shedding.test.ts test those).
 */
export const DECISIONS_ENV = { RTA_SCORE_DEADLINE_MICROS: '50000', RTA_SHED_AFTER_MICROS: '0' } as const;

export interface EngineProcess {
  mediaUrl: string;
  adminUrl: string;
  child: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The built engine on free loopback ports, its stdout and stderr collected together. */
function spawnEngine(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` (npm test does it first)`);
  const child = spawn(process.execPath, [MAIN], {
    cwd: REPO_ROOT,
    // Each engine logs its decisions, keeps its book history and its joined events in folders of its own: tests never write into the
    // repository's data/.
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      ADMIN_PORT: '0',
      RTA_DECISION_LOG_DIR: mkdtempSync(join(tmpdir(), 'rta-decisions-')),
      RTA_STRATEGY_HISTORY: mkdtempSync(join(tmpdir(), 'rta-book-history-')),
      RTA_ATTRIBUTION_DIR: mkdtempSync(join(tmpdir(), 'rta-attribution-')),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

export async function startEngine(env: Record<string, string> = {}): Promise<EngineProcess> {
  const { child, output: collected } = spawnEngine(env);
  const listening = await new Promise<{ media: string; admin: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine did not start in 30 s:\n${collected()}`)), 30_000);
    const check = () => {
      const line = collected().split('\n').find((l) => l.includes('"event":"listening"'));
      if (line) {
        clearTimeout(timer);
        resolve(JSON.parse(line) as { media: string; admin: string });
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`engine exited with ${code} before listening:\n${collected()}`));
    });
  });
  return {
    mediaUrl: listening.media,
    adminUrl: listening.admin,
    child,
    output: collected,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
}

/** Runs the engine expecting it to refuse to start; resolves with its exit code and output. */
export async function runEngineExpectingFailure(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const { child, output } = spawnEngine(env);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, output: output() };
}
