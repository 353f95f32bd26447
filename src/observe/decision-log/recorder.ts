import type { Config } from '../../config.js';
import type { BidContext, Decision } from '../../engine/types.js';
import type { EngineParts } from '../../engine/engine.js';
import { decidedVerdict, hasCoefficient, hasValue, Verdict, type StrategyBook } from '../../strategy/book.js';
import type { HotCounter } from '../hot-metrics.js';
import { DecisionLogFiles } from './files.js';
import { ProtoWriter, Utf8Cache } from '../../media/proto-writer.js';

/**
 * One serving thread's side of the decision log (proto/log/decision_log.proto): each decision is encoded straight
 * into the current block of a fixed ring of blocks; full blocks (or, every flushMillis, the current one) go to
 * the thread's file through libuv's thread pool, so the request path never waits on a disk. When every block is
 * still waiting for the disk, records are dropped and counted: the log never slows or grows the engine.
 */
export type DecisionLogConfig = Config['decisionLog'];

/** Outcome labels of rta_decision_log_records_total. */
export type RecordResult = 'logged' | 'dropped_ring_full' | 'dropped_too_large';


export interface RawBytes {
  request: Uint8Array;
  reply: Uint8Array;
  contentType: string;
}

/** Largest StrategyVerdict: a 64-byte id, three floats, creative id and rule, arm tag and 20-byte name, two prices. */
const STRATEGY_VERDICT_BYTES = 160;
/** Largest Arm: layer and experiment ids of 32 bytes, a 20-byte name, a tag. */
const ARM_BYTES = 112;
/** Every number and flag of a record at its widest, with tags and lengths. */
const FIXED_BYTES = 256;

/**
 * An upper bound of a record's size, so it is only written where it fits: no field is measured twice, and no
 * store ever lands past a block's end (see ProtoWriter).
 */
function recordBound(context: BidContext, decision: Decision, raw: RawBytes | null): number {
  let bytes = FIXED_BYTES + 3 * (context.requestId.length + context.media.length + decision.reason.length + decision.experimentTagName.length + decision.modelVersion.length);
  bytes += (context.requestIdBytes?.length ?? 0) + 6 * context.platformExperimentIds.length;
  const facts = decision.facts;
  if (facts !== null) {
    const { book, store, scorer } = facts.parts;
    bytes += 3 * (book.version.length + store.version.length + (facts.excludedBy?.length ?? 0)) + 4 * scorer.modelNames.length;
    bytes += facts.candidates * STRATEGY_VERDICT_BYTES + book.layerCount * ARM_BYTES;
  }
  if (raw !== null) bytes += raw.request.length + raw.reply.length + 3 * raw.contentType.length + 24;
  return bytes;
}

interface ConstantFields {
  modelVersion: string;
  parts: EngineParts | null;
  bytes: Uint8Array;
}

export class DecisionLogRecorder {
  private readonly free: Buffer[] = [];
  private block: Buffer | null;
  private writer: ProtoWriter;
  private readonly slots: Record<RecordResult, number>;
  /** Per book: its strategy ids' UTF-8, so a record copies bytes instead of encoding strings. */
  private book: StrategyBook | null = null;
  private strategyIds: Uint8Array[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly utf8 = new Utf8Cache();
  /**
   * Per media (a handful), its records' constant fields for the few combinations that alternate from record to
   * record: without parts (refusals) or with them, without a model version (excluded before scoring) or with one.
   */
  private readonly constants = new Map<string, ConstantFields[]>();

  constructor(
    private readonly config: DecisionLogConfig,
    private readonly files: DecisionLogFiles,
    private readonly thread: number,
    private readonly counter: HotCounter<'result'>,
  ) {
    for (let i = 0; i < config.blocks; i++) this.free.push(Buffer.alloc(config.blockBytes));
    this.block = this.free.pop()!;
    this.writer = new ProtoWriter(this.block);
    this.slots = {
      logged: counter.slot({ result: 'logged' }),
      dropped_ring_full: counter.slot({ result: 'dropped_ring_full' }),
      dropped_too_large: counter.slot({ result: 'dropped_too_large' }),
    };
    this.timer = setInterval(() => this.flush(), config.flushMillis).unref();
  }

  static async open(config: DecisionLogConfig, thread: number, counter: HotCounter<'result'>, onWriteError: (error: Error) => void): Promise<DecisionLogRecorder> {
    return new DecisionLogRecorder(config, await DecisionLogFiles.open(config, thread, onWriteError), thread, counter);
  }

  /** Whether this decision keeps its raw request and reply bytes. */
  sampleRaw(): boolean {
    return this.config.rawSampleRate > 0 && Math.random() < this.config.rawSampleRate;
  }

  /**
   * Records one decision; call it while the decision is delivered (its facts are valid only then). `raw` is the
   * request body when sampleRaw() said so.
   */
  record(context: BidContext, decision: Decision, timeMs: number, raw: RawBytes | null): void {
    const need = recordBound(context, decision, raw);
    if (need > this.config.blockBytes) {
      this.counter.add(this.slots.dropped_too_large);
      return;
    }
    if (this.block !== null && this.writer.free < need) this.ship();
    if (this.block === null && !this.nextBlock()) {
      this.counter.add(this.slots.dropped_ring_full);
      return;
    }
    this.encode(this.writer, context, decision, timeMs, raw);
    this.counter.add(this.slots.logged);
  }

  /** Writes what the current block holds; resolves once everything shipped so far is on disk (for a drain). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    await this.files.close();
  }

  private flush(): void {
    if (this.block !== null && this.writer.pos > 0) this.ship();
  }

  private ship(): void {
    const block = this.block!;
    const length = this.writer.pos;
    this.block = null;
    this.files.write(block, length, () => this.free.push(block));
    this.nextBlock();
  }

  private nextBlock(): boolean {
    const block = this.free.pop();
    if (block === undefined) return false;
    this.block = block;
    this.writer = new ProtoWriter(block);
    return true;
  }

  /** One length-delimited DecisionRecord. Field numbers are those of proto/log/decision_log.proto. */
  private encode(w: ProtoWriter, context: BidContext, decision: Decision, timeMs: number, raw: RawBytes | null): void {
    const record = w.begin();
    w.uint(1, timeMs);
    w.append(this.constantFields(context.media, decision.modelVersion, decision.facts?.parts ?? null));
    if (context.requestIdBytes !== null) w.bytesField(3, context.requestIdBytes);
    else w.string(3, context.requestId);
    const facts = decision.facts;
    if (facts !== null) {
      w.bytesField(4, facts.deviceKey);
      for (const id of context.deviceIds) if (id.key === facts.deviceKey) w.uint(5, id.kind);
    }
    w.uint(6, context.os);
    w.packedUints(7, context.platformExperimentIds);
    w.bool(9, context.isTest);
    w.bool(10, context.secondRequest);
    w.uint(11, decision.code);
    w.bytesField(12, this.utf8.of(decision.reason));
    w.uint(13, decision.cacheTtlSeconds);
    w.uint(14, decision.experimentTag);
    w.bytesField(15, this.utf8.of(decision.experimentTagName));
    w.uint(19, decision.processingTimeUs);
    if (facts !== null) {
      const { book } = facts.parts;
      w.bool(8, facts.records !== null);
      const decided = facts.excludedBy === null && decision.modelVersion !== '';
      if (facts.excludedBy !== null) w.bytesField(20, this.utf8.of(facts.excludedBy));
      else this.encodeVerdicts(w, book, facts.mask, decision);
      if (decided)
        for (const arm of book.armsOfLastDecision()) {
          const entry = w.beginField(28);
          w.bytesField(1, this.utf8.of(arm.layer));
          w.bytesField(2, this.utf8.of(arm.experiment));
          w.bytesField(3, this.utf8.of(arm.name));
          w.uint(4, arm.tag);
          w.end(entry);
        }
      if (decision.modelVersion !== '') w.packedFloats(23, facts.scores, facts.scoresOffset, facts.parts.scorer.modelNames.length);
    }
    if (raw !== null) {
      w.bytesField(25, raw.request);
      w.bytesField(26, raw.reply);
      w.bytesField(27, this.utf8.of(raw.contentType));
    }
    w.end(record);
  }

  /**
   * The fields every record of a media shares while the parts stay: media (2), model version (17), thread (24),
   * book and store versions (16, 18). Written once per change and copied as one run of bytes: a field's place in
   * a message does not matter to a reader.
   */
  private constantFields(media: string, modelVersion: string, parts: EngineParts | null): Uint8Array {
    let known = this.constants.get(media);
    if (known === undefined) this.constants.set(media, (known = []));
    for (const entry of known) if (entry.modelVersion === modelVersion && entry.parts === parts) return entry.bytes;
    const strings = [media, modelVersion, parts?.book.version ?? '', parts?.store.version ?? ''];
    const w = new ProtoWriter(Buffer.alloc(16 + 3 * strings.reduce((sum, text) => sum + text.length, 0)));
    w.bytesField(2, this.utf8.of(media));
    w.bytesField(17, this.utf8.of(modelVersion));
    w.uint(24, this.thread);
    if (parts !== null) {
      w.bytesField(16, this.utf8.of(parts.book.version));
      w.bytesField(18, this.utf8.of(parts.store.version));
    }
    const bytes = new Uint8Array(w.bytes.subarray(0, w.pos));
    // After a reload the old parts' entries are never asked for again: the oldest goes once there are four.
    if (known.length === 4) known.shift();
    known.push({ modelVersion, parts, bytes });
    return bytes;
  }

  private encodeVerdicts(w: ProtoWriter, book: StrategyBook, mask: Uint8Array, decision: Decision): void {
    if (book !== this.book) {
      this.book = book;
      this.strategyIds = book.bidStrategyIds.map((id) => this.utf8.of(id));
    }
    const { scratch } = book;
    const taken = decision.strategies;
    let next = 0;
    let notCandidates = 0;
    for (let i = 0; i < mask.length; i++) {
      const verdict = mask[i]!;
      if (verdict === Verdict.NOT_CANDIDATE) {
        notCandidates++;
        continue;
      }
      const message = w.beginField(21);
      w.bytesField(1, this.strategyIds[i]!);
      w.uint(2, verdict);
      if (hasValue(verdict)) w.float32(3, scratch.valueFen[i]!);
      const strategy = next < taken.length && taken[next]!.strategyId === book.bidStrategyIds[i] ? taken[next++]! : null;
      const arm = decidedVerdict(verdict) ? scratch.arm[i]! : null;
      if (arm !== null) {
        w.uint(8, arm.tag);
        w.bytesField(9, this.utf8.of(arm.name));
      }
      if (hasCoefficient(verdict)) {
        // Taken, or what a capped or shadow strategy would have sent.
        w.float32(4, scratch.rawCoefficient[i]!);
        w.uint(7, scratch.creativeRule[i]!);
        w.float32(5, scratch.coefficient[i]!);
        w.uint(6, scratch.creativeId[i]!);
      } else if (strategy !== null) {
        // The neutral fallback: coefficient 1 and the default creative, no verdict of decide's.
        w.float32(5, strategy.coefficient);
        w.uint(6, strategy.creativeId);
      }
      if (strategy !== null) {
        if (arm === null) {
          w.uint(8, strategy.experimentTag);
          w.bytesField(9, this.utf8.of(strategy.experimentTagName));
        }
        w.uint(10, strategy.cpaPriceFen);
        w.uint(11, strategy.cpcPriceFen);
      }
      w.end(message);
    }
    w.uint(22, notCandidates);
  }
}
