import type { DecisionFacts } from './engine.js';

/**
 * The protocol-free vocabulary of the pipeline:
 * media bytes -> BidContext -> Profile -> Scores -> Decision -> media bytes.
 * Adapters translate to and from these; nothing past the adapter knows about any wire format.
 */

/** Which hashed device id a media sent. Numbers are stable: config (lookup order) and the native protocol use them. */
export const DeviceIdKind = {
  OAID_MD5: 1,
  IMEI_MD5: 2,
  IDFA_MD5: 3,
  ANDROID_ID_MD5: 4,
  MAC_MD5: 5,
  CAID_MD5: 6,
} as const;
export type DeviceIdKind = (typeof DeviceIdKind)[keyof typeof DeviceIdKind];
export const DEVICE_ID_KIND_NAMES: Record<DeviceIdKind, string> = {
  1: 'oaid_md5',
  2: 'imei_md5',
  3: 'idfa_md5',
  4: 'android_id_md5',
  5: 'mac_md5',
  6: 'caid_md5',
};

export const Os = { UNKNOWN: 0, IOS: 1, ANDROID: 2, OTHER: 3 } as const;
export type Os = (typeof Os)[keyof typeof Os];

/** A device key: the 16 raw bytes of the lowercase-hex MD5 the media sent. Raw ids never reach the engine. */
export interface DeviceId {
  kind: DeviceIdKind;
  key: Uint8Array;
}

export interface CandidateCreative {
  creativeId: number;
  templateId: number;
}

export interface CandidateAd {
  adGroupId: number;
  advertiserId: number;
  /** The strategy id this ad is bound to on the media (Tencent AdInfo.out_target_id); empty when not bound. */
  outTargetId: string;
  creatives: CandidateCreative[];
}

export interface BidContext {
  /** Adapter name, used as the `media` metric label. */
  media: string;
  /** For logs and traces; not valid UTF-8 on the wire, it holds replacement characters (see `requestIdBytes`). */
  requestId: string;
  /**
   * The request id's own bytes when they were not valid UTF-8 (proto2 does not require it), so the reply echoes
   * them exactly; null otherwise, and always for protocols whose ids are text.
   */
  requestIdBytes: Uint8Array | null;
  /** Latency probe: answer at once, no decision logic. */
  isPing: boolean;
  /** Joint-debugging traffic: decided normally, counted apart, never learned from. */
  isTest: boolean;
  os: Os;
  /** Usable device ids in the order the media sent them; doubtful and malformed ids are already dropped. */
  deviceIds: DeviceId[];
  /** How many ids the adapter refused (doubtful per the media, or not a 32-char hex MD5). */
  refusedDeviceIds: number;
  /** Platform-side experiment bucket ids (may be empty). */
  platformExperimentIds: number[];
  /** Tencent "second request" (ADLIST_REQUEST) or the native equivalent: re-price the candidate creatives. */
  secondRequest: boolean;
  candidateAds: CandidateAd[];
  /**
   * The strategies the request asks about, by their ids on this media (Ocean's rta_ids); null: every strategy.
   * Others are not looked at (verdict not_asked).
   */
  askedStrategyIds: string[] | null;
  /** The reply should be JSON rather than protobuf (native route, Content-Type: application/json). */
  wantsJson: boolean;
}

/** The outcome of a request answered unscored because its serving thread was overloaded (see Engine.shed). */
export const SHED_REASON = 'shed';

/** Why a device was not taken. The numbers go on the wire as `code` and are documented in the README. */
export const DecisionCode = {
  TAKE: 0,
  NO_STRATEGY_WANTS: 1,
  EXISTING_BORROWER: 2,
  BLACKLISTED: 3,
  HIGH_RISK: 4,
  NO_USABLE_DEVICE_ID: 5,
  DEADLINE_FALLBACK: 6,
} as const;
export type DecisionCode = (typeof DecisionCode)[keyof typeof DecisionCode];

export interface StrategyDecision {
  /** The id registered with the media (Tencent out_target_id). Only configured ids ever appear here. */
  strategyId: string;
  /** Multiplier on the media's eCPM, always within 0.2..5.0. */
  coefficient: number;
  /** Our best creative for this device under this strategy; 0 = no preference. */
  creativeId: number;
  /** Replacement prices in fen; 0 = not set. */
  cpaPriceFen: number;
  cpcPriceFen: number;
  /** Our experiment bucket for this strategy (numeric and text form, text at most 20 bytes). */
  experimentTag: number;
  experimentTagName: string;
  /** Predicted conversion rate reported to the media. */
  pcvr: number;
}

export interface CreativeAdjustment {
  creativeId: number;
  /** Our boost (>1) or damping (<1) for this creative, within 0.2..5.0. */
  raiseFactor: number;
}

export interface AdAdjustment {
  adGroupId: number;
  /** Let the media price this ad itself. */
  ignore: boolean;
  creatives: CreativeAdjustment[];
}

export interface Decision {
  code: DecisionCode;
  /** Short machine-readable reason, e.g. "existing_borrower"; also the metric label. */
  reason: string;
  strategies: StrategyDecision[];
  /** Second request only: one entry per candidate ad, naming only creatives the request carried. */
  adResults: AdAdjustment[];
  cacheTtlSeconds: number;
  experimentTag: number;
  experimentTagName: string;
  /** Our own processing time, filled in by the engine just before encoding. */
  processingTimeUs: number;
  /** Versions of the models that produced the scores, e.g. "apply@3,risk@7"; empty when no model ran. */
  modelVersion: string;
  /** The strategy book's version id (its content hash, see strategy/versions.ts) that made the decision. */
  bookVersion: string;
  /**
   * Every bidding strategy of the book that serves this request's media, our id -> its id on the media (the same
   * unless the book's `mediaIds` says otherwise): for replies that name strategies not taken (Tencent SP votes no).
   */
  mediaStrategyIds: ReadonlyMap<string, string>;
  /** How the engine got there, for the decision log and explain; null where nothing was looked at (ping, no id, shed). */
  facts: DecisionFacts | null;
}

/** The id the media knows a taken strategy by. */
export function mediaIdOf(decision: Decision, strategy: StrategyDecision): string {
  return decision.mediaStrategyIds.get(strategy.strategyId) ?? strategy.strategyId;
}

/** How a media's protocol plugs into the pipeline; its folder's MediaModule (media/module.ts) carries it. */
export interface MediaAdapter {
  readonly name: string;
  /** Throws InputError for anything that is not a valid request. */
  decode(body: Uint8Array, contentType: string): BidContext;
  encode(context: BidContext, decision: Decision): EncodedReply;
  /**
   * Under overload: the media's well-formed decline for this body (the request id echoed, a ping still a ping,
   * `cacheTtlSeconds` as the cache time), made without decoding the request; null when the protocol needs a decode
   * for that (then the engine's shed decision is encoded as usual). Throws InputError for bytes that are no request.
   */
  shed(body: Uint8Array, contentType: string, cacheTtlSeconds: number): EncodedReply | null;
}

export interface EncodedReply {
  body: Uint8Array | string;
  contentType: string;
}
