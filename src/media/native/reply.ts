import { mediaIdOf, type BidContext, type Decision, type StrategyDecision } from '../../engine/types.js';
import { ProtoWriter, ReplyScratch, Utf8Cache } from '../proto-writer.js';

/**
 * NativeResponse (proto/rta/v1/native.proto) written byte by byte: the bytes protobufjs's encoder writes for the
 * message the adapter used to hand it (proto3: zeros and empty strings left out, fields in number order),
 * checked against protobufjs by test/media/reply-writers.test.ts.
 */

const enum Field {
  REQUEST_ID = 1,
  CODE = 2,
  REASON = 3,
  DECISIONS = 4,
  AD_RESULTS = 5,
  CACHE_TTL_SECONDS = 6,
  PROCESSING_TIME_US = 7,
  MODEL_VERSION = 8,
  EXPERIMENT_TAG = 9,
  EXPERIMENT_TAG_NAME = 10,
  BOOK_VERSION = 11,
}

const enum StrategyField {
  STRATEGY_ID = 1,
  COEFFICIENT = 2,
  CREATIVE_ID = 3,
  CPA_PRICE_FEN = 4,
  CPC_PRICE_FEN = 5,
  EXPERIMENT_TAG = 6,
  EXPERIMENT_TAG_NAME = 7,
  PCVR = 8,
}

const enum AdResultField {
  AD_GROUP_ID = 1,
  IGNORE = 2,
  CREATIVES = 3,
}

const enum CreativeField {
  CREATIVE_ID = 1,
  RAISE_FACTOR = 2,
}

/** Tags, lengths and numbers of a reply's fixed fields, or of one strategy or ad besides its strings. */
const FIXED_BYTES = 64;
const PER_CREATIVE_BYTES = 24;

const names = new Utf8Cache();
const scratch = new ReplyScratch();

export function encodeReply(context: BidContext, decision: Decision): Uint8Array {
  const w = scratch.writer(replyBound(context, decision));
  w.string(Field.REQUEST_ID, context.requestId);
  w.uint(Field.CODE, context.isPing ? 0 : decision.code);
  if (context.isPing) return scratch.reply();
  w.bytesField(Field.REASON, names.of(decision.reason));
  for (const strategy of decision.strategies) writeStrategy(w, decision, strategy);
  for (const ad of decision.adResults) {
    const result = w.beginField(Field.AD_RESULTS);
    w.uint(AdResultField.AD_GROUP_ID, ad.adGroupId);
    w.bool(AdResultField.IGNORE, ad.ignore);
    for (const creative of ad.creatives) {
      const entry = w.beginField(AdResultField.CREATIVES);
      w.uint(CreativeField.CREATIVE_ID, creative.creativeId);
      w.float32(CreativeField.RAISE_FACTOR, finiteOr0(creative.raiseFactor));
      w.end(entry);
    }
    w.end(result);
  }
  w.uint(Field.CACHE_TTL_SECONDS, decision.cacheTtlSeconds);
  w.uint(Field.PROCESSING_TIME_US, wholeMicroseconds(decision.processingTimeUs));
  w.bytesField(Field.MODEL_VERSION, names.of(decision.modelVersion));
  w.uint(Field.EXPERIMENT_TAG, decision.experimentTag);
  w.bytesField(Field.EXPERIMENT_TAG_NAME, names.of(decision.experimentTagName));
  w.bytesField(Field.BOOK_VERSION, names.of(decision.bookVersion));
  return scratch.reply();
}

function writeStrategy(w: ProtoWriter, decision: Decision, strategy: StrategyDecision): void {
  const message = w.beginField(Field.DECISIONS);
  w.bytesField(StrategyField.STRATEGY_ID, names.of(mediaIdOf(decision, strategy)));
  w.float32(StrategyField.COEFFICIENT, finiteOr0(strategy.coefficient));
  w.uint(StrategyField.CREATIVE_ID, strategy.creativeId);
  w.uint(StrategyField.CPA_PRICE_FEN, strategy.cpaPriceFen);
  w.uint(StrategyField.CPC_PRICE_FEN, strategy.cpcPriceFen);
  w.uint(StrategyField.EXPERIMENT_TAG, strategy.experimentTag);
  w.bytesField(StrategyField.EXPERIMENT_TAG_NAME, names.of(strategy.experimentTagName));
  w.float32(StrategyField.PCVR, finiteOr0(strategy.pcvr));
  w.end(message);
}

export function finiteOr0(value: number): number {
  return Number.isFinite(value) ? value : 0;
}

/** processing_time_us is a uint32: rounded up so that a fast answer never reads as 0. */
export function wholeMicroseconds(processingTimeUs: number): number {
  return processingTimeUs > 0 ? Math.min(0xffff_ffff, Math.ceil(processingTimeUs)) : 0;
}

/** At most 3 bytes of UTF-8 per UTF-16 unit of a string. */
function replyBound(context: BidContext, decision: Decision): number {
  let bytes =
    FIXED_BYTES + 3 * (context.requestId.length + decision.reason.length + decision.modelVersion.length + decision.experimentTagName.length + decision.bookVersion.length);
  for (const strategy of decision.strategies) bytes += FIXED_BYTES + 3 * (mediaIdOf(decision, strategy).length + strategy.experimentTagName.length);
  for (const ad of decision.adResults) bytes += FIXED_BYTES + PER_CREATIVE_BYTES * ad.creatives.length;
  return bytes;
}
