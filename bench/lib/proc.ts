import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * CPU time and peak memory of another process, from Linux /proc: utime+stime of every thread (field 14 and 15 of
 * /proc/PID/stat, in clock ticks) and VmHWM (peak resident set) of /proc/PID/status. Writing 5 to
 * /proc/PID/clear_refs resets VmHWM, which turns the process-lifetime peak into a per-run peak.
 */

const CLOCK_TICKS_PER_SECOND = readClockTicks();

function readClockTicks(): number {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const ticks = Number(result.stdout?.trim());
  return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
}

/** User + system CPU seconds the process has used so far, all threads included. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses; the fields after its closing parenthesis do not.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** Starts a new peak-RSS window; false when the kernel does not allow it (the peak then covers the process's life). */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function peakRssBytes(pid: number): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`/proc/${pid}/status has no VmHWM line`);
  return Number(match[1]) * 1024;
}

/** CPU use over one window, in cores (CPU seconds per wall second: 1.0 = one core fully busy). */
export interface CpuShares {
  server: number;
  /** The load generator: this process, plus a generator it ran as a child (wrk). */
  generator: number;
  /** Everything else on the machine: other processes competing for the same cores. */
  background: number;
}

export class CpuWindow {
  private readonly wallAtStart = performance.now();
  private readonly serverAtStart: number;
  private readonly generatorAtStart = process.cpuUsage();
  private readonly machineAtStart = machineBusySeconds();

  constructor(private readonly serverPid: number) {
    this.serverAtStart = cpuSeconds(serverPid);
  }

  /** `childGeneratorSeconds`: CPU of a generator process that ran inside the window (wrk), measured by the caller. */
  stop(childGeneratorSeconds = 0): CpuShares {
    const wallSeconds = (performance.now() - this.wallAtStart) / 1000;
    const own = process.cpuUsage(this.generatorAtStart);
    const server = (cpuSeconds(this.serverPid) - this.serverAtStart) / wallSeconds;
    const generator = ((own.user + own.system) / 1e6 + childGeneratorSeconds) / wallSeconds;
    const machine = (machineBusySeconds() - this.machineAtStart) / wallSeconds;
    return { server, generator, background: Math.max(0, machine - server - generator) };
  }
}

/** CPU seconds the whole machine has been busy (every core, every process), from the first line of /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const busy = ticks[0]! + ticks[1]! + ticks[2]! + ticks[5]! + ticks[6]! + ticks[7]!;
  return busy / CLOCK_TICKS_PER_SECOND;
}
