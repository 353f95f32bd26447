import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EncodedRequest } from './traffic.js';

/**
 * Closed-loop maximum throughput with wrk (Debian `wrk`, C and LuaJIT): every connection sends its next request
 * as soon as the previous one is answered, rotating through the pre-encoded traffic. A JavaScript generator on one
 * core saturated before the bare server did (autocannon drove it to 14-19k req/s where wrk reached 49-60k),
 * so the ceiling it measured was its own. wrk's CPU is measured with GNU time and reported beside every run;
 * only its request rate and failure counts are used as figures.
 */

export interface ClosedLoopResult {
  /** Responses below 400 per second. */
  requestsPerSecond: number;
  responses: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  seconds: number;
  /** CPU seconds wrk used (user + system). */
  generatorCpuSeconds: number;
  /** wrk's own latency figures (send to last byte, every reply), in microseconds; with `latency: true` only. */
  latency?: { p50: number; p99: number; max: number };
}

export function wrkAvailable(): string | null {
  if (spawnSync('wrk', ['--version'], { encoding: 'utf8' }).error) return 'wrk is not installed (Debian package wrk)';
  if (spawnSync('/usr/bin/time', ['-f', '', 'true'], { encoding: 'utf8' }).status !== 0) return 'GNU time is not installed (Debian package time)';
  return null;
}

const ROTATE_SCRIPT = new URL('./wrk/rotate.lua', import.meta.url).pathname;

export async function runClosedLoop(options: {
  url: string;
  requests: readonly EncodedRequest[];
  connections: number;
  durationSeconds: number;
  latency?: boolean;
}): Promise<ClosedLoopResult> {
  const directory = mkdtempSync(join(tmpdir(), 'rta-wrk-'));
  const requestsFile = join(directory, 'requests.txt');
  writeFileSync(requestsFile, options.requests.map((r) => `${r.path} ${r.contentType} ${r.body.toString('hex')}\n`).join(''));
  try {
    const argv = ['-f', 'generator-cpu %U %S', 'wrk', '-t1', `-c${options.connections}`, `-d${options.durationSeconds}s`, '--timeout', '10s'];
    if (options.latency) argv.push('--latency');
    argv.push('-s', ROTATE_SCRIPT, options.url, '--', requestsFile);
    return parseWrk(await run('/usr/bin/time', argv));
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function run(command: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`wrk exited with ${code}:\n${output}`))));
  });
}

/** Reads wrk's summary (and GNU time's line). wrk counts statuses above 399 as "Non-2xx or 3xx responses". */
export function parseWrk(output: string): ClosedLoopResult {
  const total = /(\d+) requests in ([\d.]+)(m?s)/.exec(output);
  const cpu = /generator-cpu ([\d.]+) ([\d.]+)/.exec(output);
  if (!total || !cpu) throw new Error(`cannot read wrk's output:\n${output}`);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const responses = Number(total[1]);
  const seconds = Number(total[2]) / (total[3] === 'ms' ? 1000 : 1);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)$/m.exec(output);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)$/m.exec(output);
  const max = /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/m.exec(output);
  const micros = (m: RegExpExecArray) => Number(m[1]) * { us: 1, ms: 1000, s: 1_000_000 }[m[2] as 'us' | 'ms' | 's'];
  return {
    ...(p50 && p99 && max ? { latency: { p50: micros(p50), p99: micros(p99), max: micros(max) } } : {}),
    requestsPerSecond: (responses - non2xx) / seconds,
    responses,
    non2xx,
    errors: socket ? Number(socket[1]) + Number(socket[2]) + Number(socket[3]) : 0,
    timeouts: socket ? Number(socket[4]) : 0,
    seconds,
    generatorCpuSeconds: Number(cpu[1]) + Number(cpu[2]),
  };
}
