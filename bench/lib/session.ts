import { cpus, release, totalmem } from 'node:os';
import { runClosedLoop, type ClosedLoopResult } from './closed-loop.js';
import { ServerObservation, type ServerWindow } from './observe.js';
import { OpenLoopClient, type OpenLoopPlan, type OpenLoopResult } from './open-loop.js';
import type { RunningServer, ServerKind } from './servers.js';
import type { EncodedRequest } from './traffic.js';

/**
 * One measured window against one server, with what the server said about it. The machine is shared: a window in
 * which other processes took more than `maxBackgroundCores` is measured again, up to `retries` times, and the run
 * says so.
 */

export interface QuietPolicy {
  maxBackgroundCores: number;
  retries: number;
}

interface Measured {
  server: ServerWindow;
  /** Windows measured to get this one (1 = the first was quiet enough). */
  attempts: number;
  /** Other processes still took more than the policy allows in the window kept. */
  noisy: boolean;
}

export interface ClosedRun extends Measured {
  load: ClosedLoopResult;
}

export interface OpenRun extends Measured {
  load: OpenLoopResult;
}

async function untilQuiet<T extends { server: ServerWindow }>(
  policy: QuietPolicy,
  what: string,
  measure: () => Promise<T>,
): Promise<T & Measured> {
  for (let attempt = 1; ; attempt++) {
    const result = await measure();
    const background = result.server.cpu.background;
    const noisy = background > policy.maxBackgroundCores;
    if (!noisy || attempt > policy.retries) return { ...result, attempts: attempt, noisy };
    log(`${what}: other processes used ${background.toFixed(2)} cores in the window, measuring it again`);
  }
}

export function measureClosedLoop(
  server: RunningServer,
  requests: readonly EncodedRequest[],
  options: { connections: number; durationSeconds: number },
  policy: QuietPolicy,
): Promise<ClosedRun> {
  return untilQuiet(policy, `closed loop on ${server.kind}`, async () => {
    const observation = await ServerObservation.begin(server);
    const load = await runClosedLoop({ url: server.mediaUrl, requests, ...options });
    return { load, server: await observation.end(load.generatorCpuSeconds) };
  });
}

/** Fixed-rate load through persistent connections per server; the warm-up runs at the same rate and is not kept. */
export class OpenLoopSession {
  private readonly clients = new Map<ServerKind, OpenLoopClient>();

  constructor(
    private readonly requests: readonly EncodedRequest[],
    private readonly connections: number,
    private readonly policy: QuietPolicy,
  ) {}

  async measure(server: RunningServer, plan: OpenLoopPlan, warmupSeconds: number): Promise<OpenRun> {
    let client = this.clients.get(server.kind);
    if (!client) {
      client = new OpenLoopClient(server.host, server.port, this.connections, this.requests);
      this.clients.set(server.kind, client);
    }
    if (warmupSeconds > 0) await client.runAt({ ...plan, durationSeconds: warmupSeconds, seed: plan.seed ^ 0x5a5a5a5a }, false);
    const measuring = client;
    return untilQuiet(this.policy, `${plan.rate} req/s on ${server.kind}`, async () => {
      const observation = await ServerObservation.begin(server);
      const load = await measuring.runAt(plan, true);
      return { load, server: await observation.end() };
    });
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}

export interface MachineDescription {
  cpuModel: string;
  logicalCpus: number;
  memoryGiB: number;
  node: string;
  kernel: string;
}

export function describeMachine(): MachineDescription {
  const list = cpus();
  return {
    cpuModel: list[0]?.model ?? 'unknown',
    logicalCpus: list.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
  };
}

export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
