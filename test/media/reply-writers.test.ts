import protobuf from 'protobufjs';
import { describe, expect, test } from 'vitest';
import { DecisionCode, Os, type BidContext, type Decision, type StrategyDecision } from '../../src/engine/types.js';
import { loadProto } from '../../src/media/protobuf.js';
import { encodeReply as encodeNativeReply } from '../../src/media/native/reply.js';
import { encodeReply } from '../../src/media/tencent/reply.js';
import { seededRandom } from '../support/seeded-random.js';

/**
 * The reply writers write bytes by hand: they must write exactly what protobufjs's encoder writes for the same
 * fields, on every shape of decision (takes and rejects, pings, second requests, odd floats, non-ASCII names,
 * long ids whose length needs two bytes). The reference messages below are built the way the adapters built
 * them before they wrote bytes.
 */

const tencentRoot = loadProto(new URL('../../proto/tencent/rta.proto', import.meta.url));
const RtaResponse = tencentRoot.lookupType('tencent.ad.rta.RtaResponse');
const NativeResponse = loadProto(new URL('../../proto/rta/v1/native.proto', import.meta.url)).lookupType('rta.v1.NativeResponse');

const NAMES = ['control', 'treatment_b', '实验组', '', 'x'.repeat(140)];
const FLOATS = [1, 0.2, 5, 1.18, 0, Number.NaN, Number.POSITIVE_INFINITY, 3.4e38, 1e-9];

function randomCase(random: () => number): { context: BidContext; decision: Decision } {
  const pick = <T>(values: readonly T[]) => values[Math.floor(random() * values.length)]!;
  const strategies: StrategyDecision[] = Array.from({ length: Math.floor(random() * 5) }, (_, i) => ({
    strategyId: pick([`acq_${i}`, `策略_${i}`, `s${i}`.repeat(30)]),
    coefficient: pick(FLOATS),
    creativeId: Math.floor(random() * 1e6),
    cpaPriceFen: pick([0, 1, 300, 2 ** 31]),
    cpcPriceFen: pick([0, 10, 127, 128, 16_384]),
    experimentTag: pick([0, 1, 480_001, 2 ** 40]),
    experimentTagName: pick(NAMES),
    pcvr: pick([...FLOATS, -0.1]),
  }));
  const secondRequest = random() < 0.4;
  const mediaStrategyIds = new Map(strategies.filter(() => random() < 0.5).map((s) => [s.strategyId, `7${Math.floor(random() * 1000)}`]));
  const context: BidContext = {
    media: 'tencent',
    requestId: pick(['', '0000002a0001e2405f3a9c7be1d04c2f', 'ü'.repeat(70)]),
    requestIdBytes: random() < 0.2 ? new Uint8Array([0xff, 0xfe, 0x41]) : null,
    isPing: random() < 0.1,
    isTest: false,
    os: Os.ANDROID,
    deviceIds: [],
    refusedDeviceIds: 0,
    platformExperimentIds: [],
    secondRequest,
    candidateAds: [],
    askedStrategyIds: null,
    wantsJson: false,
  };
  const decision: Decision = {
    code: pick([DecisionCode.TAKE, DecisionCode.TAKE, DecisionCode.DEADLINE_FALLBACK, 1]),
    reason: 'take',
    strategies,
    adResults: secondRequest
      ? Array.from({ length: Math.floor(random() * 3) }, () => ({
          adGroupId: pick([1, 2 ** 35, 127]),
          ignore: random() < 0.3,
          creatives: Array.from({ length: Math.floor(random() * 3) }, () => ({ creativeId: Math.floor(random() * 2 ** 40), raiseFactor: pick(FLOATS) })),
        }))
      : [],
    cacheTtlSeconds: pick([0, 3600, 604_800]),
    experimentTag: pick([0, 480_001, 2 ** 45]),
    experimentTagName: pick(NAMES),
    processingTimeUs: pick([0, 1, 999, 1001, 2 ** 45]),
    modelVersion: 'm@1',
    bookVersion: 'b',
    mediaStrategyIds,
    facts: null,
  };
  return { context, decision };
}

/** What the Tencent adapter handed protobufjs before it wrote bytes itself. */
function tencentReference({ context, decision }: { context: BidContext; decision: Decision }): Uint8Array {
  const message: Record<string, unknown> = { request_id: context.requestIdBytes === null ? context.requestId : undefined };
  if (context.isPing) message.code = DecisionCode.TAKE;
  else {
    message.code = decision.code;
    message.processing_time_ms = decision.processingTimeUs > 0 ? Math.min(0x7fff_ffff, Math.ceil(decision.processingTimeUs / 1000)) : 0;
    message.response_cache_time = decision.cacheTtlSeconds;
    if (decision.experimentTag !== 0) message.dsp_tag = decision.experimentTag;
    if (decision.experimentTagName !== '') message.dsp_tag_str = decision.experimentTagName;
    if (decision.code === DecisionCode.TAKE) {
      const ids = decision.strategies.map((s) => decision.mediaStrategyIds.get(s.strategyId) ?? s.strategyId);
      message.out_target_id = ids;
      message.target_infos = decision.strategies.map((s, i) => {
        const info: Record<string, unknown> = { out_target_id: ids[i] };
        if (Number.isFinite(s.coefficient)) info.user_weight_factor = s.coefficient;
        if (s.cpaPriceFen > 0) info.cpa_price = s.cpaPriceFen;
        if (s.cpcPriceFen > 0) info.cpc_price = s.cpcPriceFen;
        if (s.experimentTag !== 0) info.dsp_tag = s.experimentTag;
        if (s.experimentTagName !== '') info.dsp_tag_str = s.experimentTagName;
        if (s.pcvr > 0 && Number.isFinite(s.pcvr)) info.pcvr = s.pcvr;
        return info;
      });
      if (context.secondRequest)
        message.ad_results = decision.adResults.map((ad) => ({
          adgroup_id: ad.adGroupId,
          ...(ad.ignore ? { ignore: true } : {}),
          creative_results: ad.creatives.map((c) => (Number.isFinite(c.raiseFactor) ? { creative_id: c.creativeId, out_raise_factor: c.raiseFactor } : { creative_id: c.creativeId })),
        }));
    }
  }
  const body = RtaResponse.encode(message).finish();
  if (context.requestIdBytes === null) return body;
  const id = protobuf.Writer.create().uint32((1 << 3) | 2).bytes(context.requestIdBytes).finish();
  return Buffer.concat([id, body]);
}

describe('Tencent reply writer', () => {
  test('writes the bytes protobufjs writes, on 5,000 seeded decisions', () => {
    const random = seededRandom(20261203);
    for (let i = 0; i < 5000; i++) {
      const c = randomCase(random);
      const written = encodeReply(c.context, c.decision);
      expect(Buffer.from(written).toString('hex'), `case ${i}`).toBe(Buffer.from(tencentReference(c)).toString('hex'));
    }
  });

  test('a reply stays as written after the next one (the scratch buffer is not handed out)', () => {
    const random = seededRandom(7);
    const first = randomCase(random);
    const bytes = encodeReply(first.context, first.decision);
    const before = Buffer.from(bytes).toString('hex');
    for (let i = 0; i < 10; i++) {
      const next = randomCase(random);
      encodeReply(next.context, next.decision);
    }
    expect(Buffer.from(bytes).toString('hex')).toBe(before);
  });

  test('a reply larger than the scratch buffer grows it rather than writing past its end', () => {
    const random = seededRandom(11);
    const big = randomCase(random);
    big.context.isPing = false;
    big.decision.code = DecisionCode.TAKE;
    big.decision.strategies = Array.from({ length: 400 }, (_, i) => ({
      strategyId: `strategy_${i}_${'y'.repeat(20)}`,
      coefficient: 1.5,
      creativeId: i,
      cpaPriceFen: 0,
      cpcPriceFen: 20,
      experimentTag: i,
      experimentTagName: 'arm',
      pcvr: 0.01,
    }));
    const written = encodeReply(big.context, big.decision);
    expect(written.length).toBeGreaterThan(4096);
    expect(Buffer.from(written).toString('hex')).toBe(Buffer.from(tencentReference(big)).toString('hex'));
  });
});

/** What the native adapter handed protobufjs before it wrote bytes itself. */
function nativeReference({ context, decision }: { context: BidContext; decision: Decision }): Uint8Array {
  const finite = (v: number) => (Number.isFinite(v) ? v : 0);
  if (context.isPing) return NativeResponse.encode({ request_id: context.requestId, code: 0 }).finish();
  return NativeResponse.encode({
    request_id: context.requestId,
    code: decision.code,
    reason: decision.reason,
    decisions: decision.strategies.map((s) => ({
      strategy_id: decision.mediaStrategyIds.get(s.strategyId) ?? s.strategyId,
      coefficient: finite(s.coefficient),
      creative_id: s.creativeId,
      cpa_price_fen: s.cpaPriceFen,
      cpc_price_fen: s.cpcPriceFen,
      experiment_tag: s.experimentTag,
      experiment_tag_name: s.experimentTagName,
      pcvr: finite(s.pcvr),
    })),
    ad_results: decision.adResults.map((ad) => ({
      ad_group_id: ad.adGroupId,
      ignore: ad.ignore,
      creatives: ad.creatives.map((c) => ({ creative_id: c.creativeId, raise_factor: finite(c.raiseFactor) })),
    })),
    cache_ttl_seconds: decision.cacheTtlSeconds,
    processing_time_us: decision.processingTimeUs > 0 ? Math.min(0xffff_ffff, Math.ceil(decision.processingTimeUs)) : 0,
    model_version: decision.modelVersion,
    experiment_tag: decision.experimentTag,
    experiment_tag_name: decision.experimentTagName,
    book_version: decision.bookVersion,
  }).finish();
}

describe('native reply writer', () => {
  test('writes the bytes protobufjs writes, on 5,000 seeded decisions', () => {
    const random = seededRandom(20261204);
    for (let i = 0; i < 5000; i++) {
      const c = randomCase(random);
      c.context.media = 'native';
      c.context.requestIdBytes = null;
      c.decision.reason = ['take', 'existing_borrower', '', 'ü'.repeat(50)][i % 4]!;
      c.decision.modelVersion = ['apply@1,approve@1,risk@1,ltv@1', ''][i % 2]!;
      c.decision.bookVersion = ['3f9a1c2b7d4e', ''][i % 2]!;
      expect(Buffer.from(encodeNativeReply(c.context, c.decision)).toString('hex'), `case ${i}`).toBe(Buffer.from(nativeReference(c)).toString('hex'));
    }
  });
});
