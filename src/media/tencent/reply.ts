import { DecisionCode, mediaIdOf, type BidContext, type Decision, type StrategyDecision } from '../../engine/types.js';
import { ProtoWriter, ReplyScratch, Utf8Cache } from '../proto-writer.js';

/**
 * RtaResponse (proto/tencent/rta.proto) written byte by byte: the same bytes protobufjs's encoder writes for the
 * same fields (fields in number order, an optional field written when it is set), which the fixtures and protoc
 * check, at a fraction of the cost (no message objects, no operation list, strategy ids and names copied as
 * cached UTF-8).
 */

const enum Field {
  REQUEST_ID = 1,
  CODE = 2,
  PROCESSING_TIME_MS = 4,
  RESPONSE_CACHE_TIME = 7,
  DSP_TAG = 8,
  OUT_TARGET_ID = 10,
  TARGET_INFOS = 12,
  AD_RESULTS = 14,
  DSP_TAG_STR = 17,
}

const enum TargetInfoField {
  OUT_TARGET_ID = 1,
  CPC_PRICE = 3,
  CPA_PRICE = 5,
  USER_WEIGHT_FACTOR = 6,
  DSP_TAG = 9,
  DSP_TAG_STR = 10,
  PCVR = 11,
}

const enum AdResultField {
  ADGROUP_ID = 1,
  CREATIVE_RESULTS = 2,
  IGNORE = 4,
}

const enum CreativeResultField {
  CREATIVE_ID = 1,
  OUT_RAISE_FACTOR = 3,
}

const MAX_INT32 = 0x7fff_ffff;
/** Tags, lengths and numbers of a reply's fixed fields, or of one target info or ad besides its strings. */
const FIXED_BYTES = 64;
const PER_CREATIVE_BYTES = 24;

const names = new Utf8Cache();
const scratch = new ReplyScratch();
/** The taken strategies' ids as the media knows them, UTF-8, for this reply: each is written twice. */
const ids: Uint8Array[] = [];

export function encodeReply(context: BidContext, decision: Decision): Uint8Array {
  ids.length = 0;
  if (decision.code === DecisionCode.TAKE) for (const strategy of decision.strategies) ids.push(names.of(mediaIdOf(decision, strategy)));
  const w = scratch.writer(replyBound(context, decision));
  if (context.requestIdBytes !== null) w.setBytes(Field.REQUEST_ID, context.requestIdBytes);
  else w.setString(Field.REQUEST_ID, context.requestId);
  if (context.isPing) {
    w.setUint(Field.CODE, DecisionCode.TAKE);
    return scratch.reply();
  }
  w.setUint(Field.CODE, decision.code);
  w.setUint(Field.PROCESSING_TIME_MS, processingTimeMs(decision.processingTimeUs));
  w.setUint(Field.RESPONSE_CACHE_TIME, decision.cacheTtlSeconds);
  if (decision.experimentTag !== 0) w.setUint(Field.DSP_TAG, decision.experimentTag);
  if (decision.code === DecisionCode.TAKE) {
    for (const id of ids) w.setBytes(Field.OUT_TARGET_ID, id);
    for (let i = 0; i < ids.length; i++) writeTargetInfo(w, ids[i]!, decision.strategies[i]!);
    if (context.secondRequest) writeAdResults(w, decision);
  }
  if (decision.experimentTagName !== '') w.setBytes(Field.DSP_TAG_STR, names.of(decision.experimentTagName));
  return scratch.reply();
}

/** Non-finite floats are left out: the platform reads an absent factor as neutral, a NaN as who knows what. */
function writeTargetInfo(w: ProtoWriter, id: Uint8Array, strategy: StrategyDecision): void {
  const info = w.beginField(Field.TARGET_INFOS);
  w.setBytes(TargetInfoField.OUT_TARGET_ID, id);
  if (strategy.cpcPriceFen > 0) w.setUint(TargetInfoField.CPC_PRICE, strategy.cpcPriceFen);
  if (strategy.cpaPriceFen > 0) w.setUint(TargetInfoField.CPA_PRICE, strategy.cpaPriceFen);
  if (Number.isFinite(strategy.coefficient)) w.setFloat32(TargetInfoField.USER_WEIGHT_FACTOR, strategy.coefficient);
  if (strategy.experimentTag !== 0) w.setUint(TargetInfoField.DSP_TAG, strategy.experimentTag);
  if (strategy.experimentTagName !== '') w.setBytes(TargetInfoField.DSP_TAG_STR, names.of(strategy.experimentTagName));
  if (strategy.pcvr > 0 && Number.isFinite(strategy.pcvr)) w.setFloat32(TargetInfoField.PCVR, strategy.pcvr);
  w.end(info);
}

function writeAdResults(w: ProtoWriter, decision: Decision): void {
  for (const ad of decision.adResults) {
    const result = w.beginField(Field.AD_RESULTS);
    w.setUint(AdResultField.ADGROUP_ID, ad.adGroupId);
    for (const creative of ad.creatives) {
      const entry = w.beginField(AdResultField.CREATIVE_RESULTS);
      w.setUint(CreativeResultField.CREATIVE_ID, creative.creativeId);
      if (Number.isFinite(creative.raiseFactor)) w.setFloat32(CreativeResultField.OUT_RAISE_FACTOR, creative.raiseFactor);
      w.end(entry);
    }
    if (ad.ignore) w.setUint(AdResultField.IGNORE, 1);
    w.end(result);
  }
}

/** Rounded up so that a fast answer never reads as 0 ms; clamped to the int32 the field is. */
function processingTimeMs(processingTimeUs: number): number {
  return processingTimeUs > 0 ? Math.min(MAX_INT32, Math.ceil(processingTimeUs / 1000)) : 0;
}

/** At most 3 bytes of UTF-8 per UTF-16 unit of a string; the ids are bytes already. */
function replyBound(context: BidContext, decision: Decision): number {
  let bytes = FIXED_BYTES + 3 * (context.requestId.length + decision.experimentTagName.length) + (context.requestIdBytes?.length ?? 0);
  for (const id of ids) bytes += FIXED_BYTES + 2 * id.length;
  for (const strategy of decision.strategies) bytes += 3 * strategy.experimentTagName.length;
  for (const ad of decision.adResults) bytes += FIXED_BYTES + PER_CREATIVE_BYTES * ad.creatives.length;
  return bytes;
}
