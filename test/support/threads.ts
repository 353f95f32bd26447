import { readdirSync, readFileSync } from 'node:fs';

/** A thread of a process as /proc sees it (Linux): its id, the CPU it has used (clock ticks) and its nice value. */
export interface ThreadStat {
  tid: number;
  cpuTicks: number;
  nice: number;
}

/** Every thread of `pid` ('self' for this process). Fields after the command name, counted from the state (3). */
export function threadsOf(pid: number | 'self'): ThreadStat[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { tid: Number(tid), cpuTicks: Number(fields[11]) + Number(fields[12]), nice: Number(fields[16]) };
  });
}
