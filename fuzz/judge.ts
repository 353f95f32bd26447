import type { MediaClient } from '../src/media/simulated-request.js';
import { MEDIA_MODULES, mediaModule } from '../src/media/registry.js';
import { strategyIdsInFile } from '../src/strategy/book.js';
import type { RawReply } from '../test/support/raw-http.js';
import { loadStrategyFile } from '../test/support/rta-client.js';
import { Malformed, parseMessage, PROTOBUF_SPECS, type Decoder, type Expected, type ProtobufDecoder } from './reference.js';

/**
 * Holds one reply against the reference's prediction and the invariants every answer keeps (README, "Reading the
 * answer"). A prediction may name several acceptable outcomes; the reply must match one of them.
 */

export interface Verdict {
  /** For counting: "200 code 0", "200 ping", "400 malformed_protobuf", "no reply (timeout)"... */
  outcome: string;
  problems: string[];
}

const REFUSAL_REASONS = new Set(['malformed_protobuf', 'id_out_of_range', 'invalid_json', 'invalid_request', 'body_too_large']);
const REASON_BY_CODE = ['take', 'no_strategy_wants', 'existing_borrower', 'blacklisted', 'high_risk', 'no_usable_device_id'];
const MIN_CACHE_SECONDS = 3600;
const MAX_CACHE_SECONDS = 604_800;
/** Coefficients and raise factors travel as float32: 0.2 comes back as 0.200000003. */
const MIN_FACTOR = 0.2 - 1e-6;
const MAX_FACTOR = 5.0 + 1e-6;

const { strategies } = loadStrategyFile();
const bidStrategyIds = new Set(strategies.filter((s) => s.kind === 'bid' && s.enabled !== false).map((s) => s.id));
/** The media a decoder serves: the native route decodes JSON too. */
const moduleOf = (decoder: Decoder) => mediaModule(decoder === 'native-json' ? 'native' : decoder);
/** The book's strategies on each media, by their ids there. */
const idsOn = new Map(MEDIA_MODULES.map((m) => [m.name, new Set(strategyIdsInFile(strategies, m))]));
/** Protocols without a decline code, whose replies vote on (SP) or answer (Ocean) each strategy. */
const byStrategy = (decoder: Decoder) => moduleOf(decoder).speaks.declinesByStrategy;

function clientFor(path: string): MediaClient {
  const client = MEDIA_MODULES.find((m) => m.path === path)?.client;
  if (!client) throw new Error(`no media client serves ${path}`);
  return client;
}

export function describeExpected(expected: Expected): string {
  if (expected.status !== 200) return `${expected.status} ${expected.reason}`;
  return expected.ping ? '200 ping' : '200 decision';
}

/** `failure` says why there is no reply: the connection closed first, or nothing came within the timeout. */
export function judge(path: string, decoder: Decoder, predicted: Expected[], reply: RawReply | null, failure: string | null): Verdict {
  if (reply === null) return { outcome: `no reply (${failure})`, problems: [`no reply: ${failure}`] };
  const text = reply.body.toString('utf8');
  if (reply.status !== 200) {
    const reason = /^([a-z_]+): /.exec(text)?.[1] ?? '?';
    const outcome = `${reply.status} ${reason}`;
    const problems: string[] = [];
    if (!predicted.some((e) => e.status === reply.status && e.status !== 200 && e.reason === reason)) {
      problems.push(`expected ${predicted.map(describeExpected).join(' or ')}, got ${reply.status}: ${text.trim().slice(0, 200)}`);
    }
    if (!REFUSAL_REASONS.has(reason)) problems.push(`refusal reason "${reason}" is not one the README documents`);
    if (!/^[a-z_]+: [^\n]*\n$/.test(text)) problems.push(`refusal body is not one "reason: message" line: ${JSON.stringify(text.slice(0, 200))}`);
    if (reply.headers.get('content-type') !== 'text/plain') problems.push(`refusal Content-Type ${reply.headers.get('content-type')}`);
    return { outcome, problems };
  }
  const expected = predicted.find((e) => e.status === 200);
  if (expected === undefined || expected.status !== 200) {
    return { outcome: '200 to a refusal', problems: [`expected ${predicted.map(describeExpected).join(' or ')}, got 200`] };
  }
  return judgeAnswer(path, decoder, expected, reply);
}

/** The fields every media's reply has, read from what its client decodes. */
interface Answer {
  requestId: string;
  /** 0 where the protocol has no decline code (SP); Ocean's is its status. */
  code: number;
  reason: string | undefined;
  cacheSeconds: number | undefined;
  strategies: Array<{ id: string; coefficient: number | undefined }>;
  adResults: Array<{ group: string; ignore: boolean; creatives: Array<{ id: string; factor: number | undefined }> }>;
  /** Strategies named without taking the device (SP's no votes, Ocean's not interested). */
  declined: string[];
}

function judgeAnswer(path: string, decoder: Decoder, expected: Extract<Expected, { status: 200 }>, reply: RawReply): Verdict {
  const problems: string[] = [];
  const contentType = reply.headers.get('content-type') ?? '';
  const wantedType = decoder === 'native-json' ? 'application/json' : 'application/x-protobuf';
  if (contentType !== wantedType) problems.push(`reply Content-Type ${contentType}, expected ${wantedType}`);
  let answer: Answer;
  try {
    answer = readAnswer(decoder, clientFor(path), reply.body, contentType);
  } catch (error) {
    return { outcome: '200 undecodable', problems: [...problems, `the media client cannot decode the reply: ${(error as Error).message}`] };
  }
  const echo = echoProblem(decoder, expected.requestId, reply.body, answer.requestId);
  if (echo !== null) problems.push(echo);
  let outcome: string;
  if (expected.ping) {
    outcome = '200 ping';
    if (answer.code !== 0 || answer.cacheSeconds !== undefined || answer.strategies.length > 0 || answer.adResults.length > 0) {
      problems.push(`a ping must get code 0 and nothing else: ${JSON.stringify(answer)}`);
    }
  } else {
    outcome = `200 code ${answer.code}`;
    problems.push(...decisionProblems(decoder, answer, expected));
  }
  return { outcome, problems };
}

function readAnswer(decoder: Decoder, client: MediaClient, body: Uint8Array, contentType: string): Answer {
  if (byStrategy(decoder)) {
    const answer = client.readAnswer(body, contentType);
    return {
      requestId: answer.requestId ?? '',
      code: answer.code ?? 0,
      reason: undefined,
      cacheSeconds: answer.cacheSeconds ?? undefined,
      strategies: answer.strategies.map((s) => ({ id: s.id, coefficient: s.coefficient ?? undefined })),
      adResults: [],
      declined: answer.declined,
    };
  }
  const reply = client.decodeReply(body, contentType) as Record<string, any>;
  if (decoder === 'tencent') {
    const infos: any[] = reply.target_infos ?? [];
    const ids: string[] = reply.out_target_id ?? [];
    if (ids.join(',') !== infos.map((t) => t.out_target_id).join(',')) throw new Error(`out_target_id ${ids} does not list the target_infos`);
    return {
      requestId: reply.request_id ?? '',
      code: reply.code ?? 0,
      reason: undefined,
      cacheSeconds: reply.response_cache_time,
      strategies: infos.map((t) => ({ id: t.out_target_id, coefficient: t.user_weight_factor })),
      adResults: (reply.ad_results ?? []).map((ad: any) => ({
        group: ad.adgroup_id ?? '0',
        ignore: ad.ignore === true,
        creatives: (ad.creative_results ?? []).map((c: any) => ({ id: c.creative_id ?? '0', factor: c.out_raise_factor })),
      })),
      declined: [],
    };
  }
  const json = decoder === 'native-json';
  const name = (snake: string, camel: string) => (json ? camel : snake);
  return {
    requestId: reply[name('request_id', 'requestId')] ?? '',
    code: reply.code ?? 0,
    reason: reply.reason,
    cacheSeconds: reply[name('cache_ttl_seconds', 'cacheTtlSeconds')],
    strategies: (reply.decisions ?? []).map((d: any) => ({ id: d[name('strategy_id', 'strategyId')], coefficient: d.coefficient })),
    adResults: (reply[name('ad_results', 'adResults')] ?? []).map((ad: any) => ({
      group: ad[name('ad_group_id', 'adGroupId')] ?? '0',
      ignore: ad.ignore === true,
      creatives: (ad.creatives ?? []).map((c: any) => ({ id: c[name('creative_id', 'creativeId')] ?? '0', factor: c[name('raise_factor', 'raiseFactor')] })),
    })),
    declined: [],
  };
}

/** The reply's request id must be the request's, byte for byte: Tencent's proto2 ids need not even be UTF-8. */
function echoProblem(decoder: Decoder, requestId: Uint8Array | string, replyBody: Uint8Array, answerId: string): string | null {
  if (typeof requestId === 'string') {
    return answerId === requestId ? null : `request id ${JSON.stringify(requestId.slice(0, 80))} came back as ${JSON.stringify(answerId.slice(0, 80))}`;
  }
  // Only proto2 ids come as bytes (the reference gives proto3 and JSON ids as text).
  const spec = PROTOBUF_SPECS[decoder as ProtobufDecoder];
  let replyId: Uint8Array;
  try {
    const value = parseMessage(spec.response, replyBody, spec.syntax)[spec.replyRequestIdField];
    replyId = value instanceof Uint8Array ? value : new Uint8Array(0);
  } catch (error) {
    if (!(error instanceof Malformed)) throw error;
    return `the reply is not well-formed ${spec.response.name}: ${error.message}`;
  }
  if (Buffer.from(replyId).equals(Buffer.from(requestId))) return null;
  return `request id ${Buffer.from(requestId).toString('hex').slice(0, 80)} (hex) came back as ${Buffer.from(replyId).toString('hex').slice(0, 80)}`;
}

function decisionProblems(decoder: Decoder, answer: Answer, expected: Extract<Expected, { status: 200 }>): string[] {
  const problems: string[] = [];
  const { code } = answer;
  if (code === 6) problems.push('code 6: with the scoring deadline and shedding off only a throw while deciding answers the fallback');
  else if (!(code >= 0 && code < REASON_BY_CODE.length)) problems.push(`code ${code} is not a documented code`);
  else if (answer.reason !== undefined && answer.reason !== REASON_BY_CODE[code]) problems.push(`code ${code} with reason ${answer.reason}`);
  // SP has no cache time to send.
  const noCacheTime = decoder === 'tencent-sp' && answer.cacheSeconds === undefined;
  if (!noCacheTime && (answer.cacheSeconds === undefined || answer.cacheSeconds < MIN_CACHE_SECONDS || answer.cacheSeconds > MAX_CACHE_SECONDS)) {
    problems.push(`cache time ${answer.cacheSeconds} outside ${MIN_CACHE_SECONDS}..${MAX_CACHE_SECONDS}`);
  }
  if (!byStrategy(decoder) && (code === 0) !== answer.strategies.length > 0) problems.push(`code ${code} with ${answer.strategies.length} strategies`);
  if (decoder === 'tencent-sp') {
    const voted = [...answer.strategies.map((s) => s.id), ...answer.declined].sort();
    if (voted.join(',') !== [...idsOn.get('tencent-sp')!].sort().join(',')) problems.push(`SP votes on ${voted.join(', ')}, not on every strategy of the book`);
  }
  const seen = new Set<string>();
  for (const strategy of answer.strategies) {
    if (!idsOn.get(moduleOf(decoder).name)!.has(strategy.id)) problems.push(`strategy ${strategy.id} is not a bidding strategy of the book on this media`);
    if (seen.has(strategy.id)) problems.push(`strategy ${strategy.id} answered twice`);
    seen.add(strategy.id);
    if (!inFactorRange(strategy.coefficient)) problems.push(`strategy ${strategy.id}: coefficient ${strategy.coefficient} outside 0.2..5.0`);
  }
  problems.push(...adResultProblems(decoder, answer, expected));
  return problems;
}

/**
 * A take answers the candidate ads (Tencent: of a second request only) one by one, in order: `ignore` for an ad
 * bound to a strategy not ours, otherwise a raise factor for each of the ad's own creatives.
 */
function adResultProblems(decoder: Decoder, answer: Answer, expected: Extract<Expected, { status: 200 }>): string[] {
  const due = answer.code === 0 && (decoder !== 'tencent' || expected.secondRequest) ? expected.ads : [];
  if (answer.adResults.length !== due.length) return [`${answer.adResults.length} ad results for ${due.length} candidate ads due an answer`];
  const problems: string[] = [];
  due.forEach((ad, i) => {
    const result = answer.adResults[i]!;
    const ignore = ad.strategy !== '' && !bidStrategyIds.has(ad.strategy);
    const creatives = ignore ? [] : ad.creatives;
    if (result.group !== ad.group) problems.push(`ad result ${i} is for ad group ${result.group}, the ad is ${ad.group}`);
    if (result.ignore !== ignore) problems.push(`ad ${i} (strategy "${ad.strategy}"): ignore ${result.ignore}`);
    if (result.creatives.map((c) => c.id).join(',') !== creatives.join(',')) {
      problems.push(`ad ${i}: creatives ${result.creatives.map((c) => c.id).join(',').slice(0, 100)}, the ad carried ${creatives.join(',').slice(0, 100)}`);
    }
    for (const creative of result.creatives) {
      if (!inFactorRange(creative.factor)) problems.push(`ad ${i}: raise factor ${creative.factor} of creative ${creative.id} outside 0.2..5.0`);
    }
  });
  return problems;
}

function inFactorRange(value: number | undefined): boolean {
  return value !== undefined && value >= MIN_FACTOR && value <= MAX_FACTOR;
}
