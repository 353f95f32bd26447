import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A server process under valgrind's callgrind, steered from outside through vgdb monitor commands: started with
 * instrumentation off (start-up runs at a few times native speed instead of fifty, and nothing is counted),
 * switched on after warm-up, counters zeroed before a window and dumped after it. Instructions are guest
 * user-space instructions of every thread, the same count on any machine speed for the same work; the kernel's
 * side of syscalls is not counted.
 *
 * Code V8 generates at run time has no symbols, so callgrind names it by address. A process run with node's
 * `--perf-basic-prof` writes where each piece of code lies to /tmp/perf-<pid>.map; a dump reads that map and names
 * such code by its JavaScript function and source position ("JS:*decode file:///.../adapter.js:24:11").
 */

export function callgrindAvailable(): string | null {
  for (const tool of ['valgrind', 'vgdb', 'callgrind_annotate']) {
    if (spawnSync(tool, ['--version'], { encoding: 'utf8' }).error) return `${tool} is not installed (Debian package valgrind)`;
  }
  return null;
}

export class CallgrindSession {
  /** vgdb finds the process by a FIFO name built from this prefix, the pid, USER and HOST: all pinned here. */
  readonly directory = mkdtempSync(join(tmpdir(), 'rta-callgrind-'));
  private readonly prefix = join(this.directory, 'vgdb');
  private pid = 0;

  /** `keep`: a folder that keeps every dump, named by window, and the perf map (bench/instruction-profile.ts reads them). */
  constructor(private readonly keep: string | null = null) {
    if (keep !== null) mkdirSync(keep, { recursive: true });
  }

  /** The argv prefix that runs a command under callgrind, and the environment both sides must share. */
  wrap(argv: string[]): string[] {
    return [
      'valgrind',
      '--tool=callgrind',
      '--instr-atstart=no',
      '--vgdb=yes',
      `--vgdb-prefix=${this.prefix}`,
      `--callgrind-out-file=${join(this.directory, 'callgrind.out.%p')}`,
      ...argv,
    ];
  }

  /** HOST doubles as the engine's listen address, so it is the loopback one. */
  static readonly ENV = { USER: 'callgrind', LOGNAME: 'callgrind', HOST: '127.0.0.1' };

  attach(pid: number): void {
    this.pid = pid;
  }

  instrumentation(on: boolean): void {
    this.monitor(`instrumentation ${on ? 'on' : 'off'}`);
  }

  zero(): void {
    this.monitor('zero');
  }

  /** Dumps the counters since the last zero: every instruction, and the inclusive count of every function. */
  dump(window: string): WindowCount {
    this.monitor('dump');
    // Each dump is read and removed at once, so exactly one numbered file is there.
    const files = readdirSync(this.directory).filter((f) => f.startsWith(`callgrind.out.${this.pid}.`));
    if (files.length !== 1) throw new Error(`expected one callgrind dump in ${this.directory}, found ${files.length}`);
    const file = join(this.directory, files[0]!);
    const annotated = spawnSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
    if (this.keep !== null) {
      copyFileSync(file, join(this.keep, `${window}.callgrind`));
      if (existsSync(this.jitMapPath())) copyFileSync(this.jitMapPath(), join(this.keep, 'perf.map'));
    }
    rmSync(file);
    if (annotated.status !== 0) throw new Error(`callgrind_annotate failed: ${annotated.stderr.trim()}`);
    return readWindow(annotated.stdout, JitCodeMap.read(this.jitMapPath()));
  }

  close(): void {
    rmSync(this.directory, { recursive: true, force: true });
    if (this.pid) rmSync(this.jitMapPath(), { force: true });
  }

  private jitMapPath(): string {
    return `/tmp/perf-${this.pid}.map`;
  }

  private monitor(command: string): void {
    const result = spawnSync('vgdb', [`--pid=${this.pid}`, `--vgdb-prefix=${this.prefix}`, ...command.split(' ')], {
      encoding: 'utf8',
      env: { ...process.env, ...CallgrindSession.ENV },
      timeout: 60_000,
    });
    if (result.status !== 0) throw new Error(`vgdb ${command} failed (${result.status}): ${(result.stderr || result.error?.message || '').trim()}`);
  }
}

/**
 * Work that is not the request's own and lands in whichever window it happens to fall: V8 compiling (tiering up
 * runs synchronously under --predictable), garbage collection (one scavenge is millions of instructions, due every
 * thousand requests or so) and timers (they fire by wall-clock time, and under valgrind a request takes longer).
 * Each group is the inclusive count of its entry points, which do not call one another.
 */
const GROUPS = {
  compile: ['v8::internal::Compiler::CompileOptimized(', 'v8::internal::Compiler::Compile(', 'v8::internal::Compiler::CompileBaseline('],
  gc: ['v8::internal::Heap::CollectGarbage(', 'v8::internal::IncrementalMarking::AdvanceOnAllocation(', 'v8::internal::Heap::StartIncrementalMarking('],
  timers: ['uv__run_timers '],
} as const;

export interface WindowCount {
  total: number;
  compile: number;
  gc: number;
  timers: number;
  /** Inclusive instructions by function name, JIT code named by the map; same-named pieces of code summed. */
  functions: Map<string, number>;
}

/** Where V8 put each piece of generated code: the lines of a perf map, "start size name", hex numbers. */
export class JitCodeMap {
  private constructor(private readonly starts: number[], private readonly ends: number[], private readonly names: string[]) {}

  static read(path: string): JitCodeMap | null {
    if (!existsSync(path)) return null;
    const entries = readFileSync(path, 'utf8')
      .split('\n')
      .map((line) => /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line))
      .filter((m) => m !== null)
      .map((m) => ({ start: parseInt(m[1]!, 16), size: parseInt(m[2]!, 16), name: m[3]! }))
      .sort((a, b) => a.start - b.start);
    return new JitCodeMap(
      entries.map((e) => e.start),
      entries.map((e) => e.start + e.size),
      entries.map((e) => e.name),
    );
  }

  nameOf(address: number): string | null {
    let low = 0;
    let high = this.starts.length - 1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (this.starts[mid]! <= address) low = mid + 1;
      else high = mid - 1;
    }
    return high >= 0 && address < this.ends[high]! ? this.names[high]! : null;
  }
}

/**
 * Reads callgrind_annotate --inclusive=yes output: the program total, the groups' entry points, every function.
 * Given --inclusive=no output (`self`), a recursive call's own instructions are added to its function's instead.
 */
export function readWindow(annotated: string, jit: JitCodeMap | null = null, self = false): WindowCount {
  const total = /^\s*([\d,]+) \([^)]*\)\s+PROGRAM TOTALS/m.exec(annotated);
  if (!total) throw new Error('callgrind_annotate printed no PROGRAM TOTALS line');
  const count: WindowCount = { total: Number(total[1]!.replaceAll(',', '')), compile: 0, gc: 0, timers: 0, functions: new Map() };
  for (const line of annotated.split('\n')) {
    const match = /^\s*([\d,]+) \([^)]*\)\s+\S*?:(.*)$/.exec(line);
    if (!match) continue;
    // Recursive calls show as "name'2": counting them again would count their instructions twice.
    const recursive = /'\d+( \[|$)/;
    if (!self && recursive.test(match[2]!)) continue;
    const instructions = Number(match[1]!.replaceAll(',', ''));
    const listed = match[2]!.replace(recursive, '$1');
    const address = /^0x([0-9a-f]+) \[\?\?\?\]$/.exec(listed);
    const name = (address && jit?.nameOf(parseInt(address[1]!, 16))) || listed;
    count.functions.set(name, (count.functions.get(name) ?? 0) + instructions);
    for (const [group, entries] of Object.entries(GROUPS) as [keyof typeof GROUPS, readonly string[]][]) {
      if (entries.some((entry) => name.startsWith(entry))) count[group] += instructions;
    }
  }
  return count;
}
