import type { RedisClient } from '../store/redis-client.js';
import type { Claim, Decision, DecisionStore } from './decision-store.js';

/**
 * Taken decisions in Redis, shared by every engine node: each node writes the decisions of its own log, and any node
 * joins an event against any node's decision. A decision is one string key that expires a window after it was
 * made; each take's funnel stage is claimed by its own key (SET NX, expiring with the decision), so a duplicate
 * posted to another node is still a duplicate, and a media retry's second decision keeps the first one's claims.
 * Keys carry the media and trace id in a hash tag, so a decision and its claims share a Redis Cluster slot.
 * Redis's memory is the bound: every key expires with the window, and `maxmemory` is the operator's limit.
 */
export class RedisDecisions implements DecisionStore {
  private queued: { key: string; value: string; ttlMs: number }[] = [];
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly client: RedisClient,
    private readonly keyPrefix: string,
    private readonly windowMs: number,
    /** Counts a failed command batch; the batch's decisions are lost (their events come back unmatched). */
    private readonly onError: (op: 'remember' | 'find' | 'claim', error: Error) => void,
  ) {}

  remember(media: string, traceId: string, decision: Omit<Decision, 'ref'>): void {
    const ttlMs = Math.round(decision.timeMs + this.windowMs - Date.now());
    if (ttlMs <= 0) return;
    const device = decision.device && {
      key: Buffer.from(decision.device.keys.subarray(decision.device.at, decision.device.at + 16)).toString('hex'),
      known: decision.device.known,
      os: decision.device.os,
    };
    this.queued.push({ key: this.decisionKey(media, traceId), value: JSON.stringify({ t: decision.timeMs, r: decision.risk, b: decision.book, k: decision.takes, d: device }), ttlMs });
  }

  /** Chained: a flush returns once every decision remembered before it is written, a tick's own included. */
  flush(): Promise<void> {
    const batch = this.queued;
    this.queued = [];
    this.writing = this.writing.then(() => this.write(batch));
    return this.writing;
  }

  private async write(batch: RedisDecisions['queued']): Promise<void> {
    if (batch.length === 0) return;
    try {
      await Promise.all(batch.map(({ key, value, ttlMs }) => this.client.set(key, value, 'PX', ttlMs)));
    } catch (error) {
      this.onError('remember', error as Error);
    }
  }

  async find(keys: readonly { media: string; traceId: string }[]): Promise<(Decision | null)[]> {
    let values: (string | null)[];
    try {
      values = await Promise.all(keys.map(({ media, traceId }) => this.client.get(this.decisionKey(media, traceId))));
    } catch (error) {
      this.onError('find', error as Error);
      throw new Error(`the shared decision memory (Redis) did not answer: ${(error as Error).message}; send the batch again`);
    }
    return values.map((value) => {
      if (value === null) return null;
      const stored = JSON.parse(value) as { t: number; r: number | null; b: string; k: Decision['takes']; d: { key: string; known: boolean; os: number } | null };
      const device = stored.d && { keys: Buffer.from(stored.d.key, 'hex'), at: 0, known: stored.d.known, os: stored.d.os };
      // JSON has no NaN: a decision without a risk score comes back null.
      return { timeMs: stored.t, risk: stored.r ?? NaN, book: stored.b, takes: stored.k, device, ref: -1 };
    });
  }

  async claim(claims: readonly Claim[]): Promise<boolean[]> {
    try {
      // Expiring with the window from now: at least as long as the decision can still be found.
      const answers = await Promise.all(claims.map((c) => this.client.set(`${this.keyPrefix}seen:{${c.media}:${c.traceId}}:${c.strategyId}:${c.kind}`, '1', 'PX', this.windowMs, 'NX')));
      return answers.map((answer) => answer === 'OK');
    } catch (error) {
      this.onError('claim', error as Error);
      throw new Error(`the shared decision memory (Redis) did not answer: ${(error as Error).message}; send the batch again`);
    }
  }

  /** Redis expires them. */
  forgetOlderThan(): void {}

  get size(): null {
    return null;
  }

  get oldestTimeMs(): null {
    return null;
  }

  private decisionKey(media: string, traceId: string): string {
    return `${this.keyPrefix}decision:{${media}:${traceId}}`;
  }
}
