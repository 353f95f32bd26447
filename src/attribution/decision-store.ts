import type { DecidedDevice, DecisionMemory, NewTake } from './memory.js';

/**
 * Where taken decisions wait for their events: this process's ring (memory.ts), or Redis when several engine nodes
 * share the work (redis-decisions.ts), so an event posted to any node joins the decision of whichever node made it.
 * Both answer a whole batch at once, since Redis answers over the network.
 */

export interface Decision {
  timeMs: number;
  /** The risk model's score at decision time. */
  risk: number;
  book: string;
  takes: readonly NewTake[];
  /** Its key bytes are valid while the batch is joined (the ring's own, or Redis's answer). */
  device: DecidedDevice | null;
  /** Where the store found it, for the claims that follow (the ring's sequence number; unused by Redis). */
  ref: number;
}

/** An event's claim on one take's funnel stage: the first claim is joined, any later one is a duplicate. */
export interface Claim {
  /** The decision's ref, from find. */
  ref: number;
  media: string;
  traceId: string;
  take: number;
  strategyId: string;
  kind: number;
}

export interface DecisionStore {
  /** Keeps a taken decision for the window (a second one under the same trace id replaces the first). */
  remember(media: string, traceId: string, decision: Omit<Decision, 'ref'>): void;
  /** Writes what remember kept, where it is not written at once. */
  flush(): Promise<void>;
  find(keys: readonly { media: string; traceId: string }[]): Promise<(Decision | null)[]>;
  /** True for each claim that is the first on its take and stage. */
  claim(claims: readonly Claim[]): Promise<boolean[]>;
  forgetOlderThan(nowMs: number): void;
  /** Decisions held, and the oldest one's time; null where the store cannot tell cheaply (Redis). */
  readonly size: number | null;
  readonly oldestTimeMs: number | null;
}

/** The in-process ring behind the DecisionStore interface. */
export class LocalDecisions implements DecisionStore {
  constructor(private readonly memory: DecisionMemory) {}

  remember(media: string, traceId: string, decision: Omit<Decision, 'ref'>): void {
    this.memory.remember(media, traceId, decision.timeMs, decision.risk, decision.book, decision.takes, decision.device);
  }

  async flush(): Promise<void> {}

  async find(keys: readonly { media: string; traceId: string }[]): Promise<(Decision | null)[]> {
    return keys.map(({ media, traceId }) => {
      const sequence = this.memory.find(media, traceId);
      if (sequence < 0) return null;
      return {
        timeMs: this.memory.timeOf(sequence),
        risk: this.memory.riskOf(sequence),
        book: this.memory.bookOf(sequence),
        takes: Array.from({ length: this.memory.takesOf(sequence) }, (_, t) => this.memory.take(sequence, t)),
        device: this.memory.deviceOf(sequence),
        ref: sequence,
      };
    });
  }

  /**
   * By the sequence numbers find gave: find and claim answer at once, so only microtasks run between them and no
   * decision can have been remembered (or forgotten) in between.
   */
  async claim(claims: readonly Claim[]): Promise<boolean[]> {
    return claims.map((c) => this.memory.markSeen(c.ref, c.take, c.kind));
  }

  forgetOlderThan(nowMs: number): void {
    this.memory.forgetOlderThan(nowMs);
  }

  get size(): number {
    return this.memory.size;
  }

  get oldestTimeMs(): number | null {
    return this.memory.oldestTimeMs;
  }
}
