/**
 * The taken decisions of the attribution window, by media and trace id, in this process: a ring of `capacity`
 * slots in typed arrays (strategy ids, arms and book versions as numbers from one name table) and, per media, a
 * Map from trace id to slot. Bounded twice: a decision is forgotten once older than the window, and the oldest is forgotten
 * when the ring is full (the window is then shorter than configured; `oldestTimeMs` says by how much). The log is
 * read in the order it was written, so the oldest slot is always the next to go.
 */

/** Takes kept in a decision's own slot; a reply with more strategies keeps the rest beside the ring. */
const INLINE_TAKES = 2;

export interface NewTake {
  strategyId: string;
  arm: string;
  creativeId: number;
}

export type ForgetReason = 'expired' | 'full';

/** The device a decision was for, as its record had it: the online learner looks its profile up by the key. */
export interface DecidedDevice {
  /** 16 bytes at `at`; the key bytes are the memory's own, valid until the next decision is remembered. */
  keys: Uint8Array;
  at: number;
  known: boolean;
  os: number;
}

const DEVICE_KEY_BYTES = 16;
const HAS_KEY = 1;
const KNOWN = 2;

export class DecisionMemory {
  readonly names = new Names();
  /** Per media, trace id -> sequence number. */
  private readonly index = new Map<string, Map<string, number>>();
  private readonly medias: string[];
  private readonly traceIds: (string | undefined)[];
  private readonly timeMs: Float64Array;
  private readonly risk: Float32Array;
  private readonly deviceKeys: Uint8Array;
  /** HAS_KEY and KNOWN bits, the OS number above them. */
  private readonly deviceBits: Uint8Array;
  private readonly book: Uint32Array;
  private readonly takeCount: Uint8Array;
  private readonly strategy: Uint32Array;
  private readonly arm: Uint32Array;
  private readonly creative: Float64Array;
  /** Bit k of a take: an event of EVENT_KINDS[k] was joined to it (8 kinds, 8 bits). */
  private readonly seen: Uint8Array;
  private readonly extraTakes = new Map<number, { strategy: number; arm: number; creative: number; seen: number }[]>();
  /** Sequence numbers: the oldest remembered decision, and the next one. Slot = sequence % capacity. */
  private oldest = 0;
  private next = 0;

  constructor(
    private readonly capacity: number,
    private readonly windowMs: number,
    private readonly onForget: (reason: ForgetReason, count: number) => void,
  ) {
    this.medias = new Array<string>(capacity);
    this.traceIds = new Array<string | undefined>(capacity);
    this.timeMs = new Float64Array(capacity);
    this.risk = new Float32Array(capacity);
    this.deviceKeys = new Uint8Array(capacity * DEVICE_KEY_BYTES);
    this.deviceBits = new Uint8Array(capacity);
    this.book = new Uint32Array(capacity);
    this.takeCount = new Uint8Array(capacity);
    this.strategy = new Uint32Array(capacity * INLINE_TAKES);
    this.arm = new Uint32Array(capacity * INLINE_TAKES);
    this.creative = new Float64Array(capacity * INLINE_TAKES);
    this.seen = new Uint8Array(capacity * INLINE_TAKES);
  }

  /**
   * A second decision under the same trace id (a media retry) replaces the first: its answer is the one the media
   * used. Events already joined to a strategy's take stay joined, so re-posting them is still a duplicate.
   */
  remember(media: string, traceId: string, timeMs: number, risk: number, bookVersion: string, takes: readonly NewTake[], device: DecidedDevice | null): void {
    const traceIds = this.index.get(media) ?? this.index.set(media, new Map()).get(media)!;
    const replaced = traceIds.get(traceId) ?? -1;
    if (this.next - this.oldest === this.capacity) {
      this.forgetOldest();
      this.onForget('full', 1);
    }
    const sequence = this.next++;
    const slot = sequence % this.capacity;
    this.medias[slot] = media;
    this.traceIds[slot] = traceId;
    this.timeMs[slot] = timeMs;
    this.risk[slot] = risk;
    this.deviceBits[slot] = device === null ? 0 : HAS_KEY | (device.known ? KNOWN : 0) | (device.os << 2);
    if (device !== null) for (let i = 0; i < DEVICE_KEY_BYTES; i++) this.deviceKeys[slot * DEVICE_KEY_BYTES + i] = device.keys[device.at + i]!;
    this.book[slot] = this.names.id(bookVersion);
    const count = Math.min(takes.length, 255);
    this.takeCount[slot] = count;
    for (let t = 0; t < count; t++) {
      const take = takes[t]!;
      if (t < INLINE_TAKES) {
        const at = slot * INLINE_TAKES + t;
        this.strategy[at] = this.names.id(take.strategyId);
        this.arm[at] = this.names.id(take.arm);
        this.creative[at] = take.creativeId;
        this.seen[at] = 0;
      } else {
        const extra = this.extraTakes.get(sequence) ?? [];
        extra.push({ strategy: this.names.id(take.strategyId), arm: this.names.id(take.arm), creative: take.creativeId, seen: 0 });
        this.extraTakes.set(sequence, extra);
      }
    }
    if (replaced >= 0 && replaced >= this.oldest) this.carrySeen(replaced, sequence);
    traceIds.set(traceId, sequence);
  }

  private carrySeen(from: number, to: number): void {
    for (let t = 0; t < this.takesOf(to); t++) {
      const strategyId = this.take(to, t).strategyId;
      for (let u = 0; u < this.takesOf(from); u++) {
        if (this.take(from, u).strategyId !== strategyId) continue;
        for (let kind = 0; kind < 8; kind++) if (this.hasSeen(from, u, kind)) this.markSeen(to, t, kind);
      }
    }
  }

  private hasSeen(sequence: number, t: number, kind: number): boolean {
    const bit = 1 << kind;
    if (t >= INLINE_TAKES) return (this.extraTakes.get(sequence)![t - INLINE_TAKES]!.seen & bit) !== 0;
    return (this.seen[(sequence % this.capacity) * INLINE_TAKES + t]! & bit) !== 0;
  }

  /** The decision's sequence number, or -1 when none is remembered under this media and trace id. */
  find(media: string, traceId: string): number {
    return this.index.get(media)?.get(traceId) ?? -1;
  }

  forgetOlderThan(nowMs: number): void {
    let forgotten = 0;
    while (this.oldest < this.next && this.timeMs[this.oldest % this.capacity]! < nowMs - this.windowMs) {
      this.forgetOldest();
      forgotten++;
    }
    if (forgotten > 0) this.onForget('expired', forgotten);
  }

  timeOf(sequence: number): number {
    return this.timeMs[sequence % this.capacity]!;
  }

  riskOf(sequence: number): number {
    return this.risk[sequence % this.capacity]!;
  }

  deviceOf(sequence: number): DecidedDevice | null {
    const slot = sequence % this.capacity;
    const bits = this.deviceBits[slot]!;
    if ((bits & HAS_KEY) === 0) return null;
    return { keys: this.deviceKeys, at: slot * DEVICE_KEY_BYTES, known: (bits & KNOWN) !== 0, os: bits >> 2 };
  }

  bookOf(sequence: number): string {
    return this.names.name(this.book[sequence % this.capacity]!);
  }

  takesOf(sequence: number): number {
    return this.takeCount[sequence % this.capacity]!;
  }

  take(sequence: number, t: number): { strategyId: string; arm: string; creativeId: number } {
    if (t >= INLINE_TAKES) {
      const extra = this.extraTakes.get(sequence)![t - INLINE_TAKES]!;
      return { strategyId: this.names.name(extra.strategy), arm: this.names.name(extra.arm), creativeId: extra.creative };
    }
    const at = (sequence % this.capacity) * INLINE_TAKES + t;
    return { strategyId: this.names.name(this.strategy[at]!), arm: this.names.name(this.arm[at]!), creativeId: this.creative[at]! };
  }

  /** Marks take t as having had an event of kind `kind`; false when it already had one (a duplicate). */
  markSeen(sequence: number, t: number, kind: number): boolean {
    const bit = 1 << kind;
    if (t >= INLINE_TAKES) {
      const extra = this.extraTakes.get(sequence)![t - INLINE_TAKES]!;
      if (extra.seen & bit) return false;
      extra.seen |= bit;
      return true;
    }
    const at = (sequence % this.capacity) * INLINE_TAKES + t;
    if (this.seen[at]! & bit) return false;
    this.seen[at] = this.seen[at]! | bit;
    return true;
  }

  get size(): number {
    return this.next - this.oldest;
  }

  /** The oldest decision still remembered; null when none is. */
  get oldestTimeMs(): number | null {
    return this.size === 0 ? null : this.timeMs[this.oldest % this.capacity]!;
  }

  private forgetOldest(): void {
    const sequence = this.oldest++;
    const slot = sequence % this.capacity;
    const traceIds = this.index.get(this.medias[slot]!)!;
    const traceId = this.traceIds[slot]!;
    // Replaced by a later decision under the same trace id: that one stays.
    if (traceIds.get(traceId) === sequence) traceIds.delete(traceId);
    this.traceIds[slot] = undefined;
    this.extraTakes.delete(sequence);
  }
}

/** Strategy ids, arms and book versions as small numbers; few and long-lived, so never forgotten. */
class Names {
  private readonly ids = new Map<string, number>();
  private readonly names: string[] = [];

  id(name: string): number {
    let id = this.ids.get(name);
    if (id === undefined) {
      id = this.names.push(name) - 1;
      this.ids.set(name, id);
    }
    return id;
  }

  name(id: number): string {
    return this.names[id]!;
  }
}
