import type { DeviceIdKind } from '../engine/types.js';

/**
 * A request as a media platform would send it, before any wire format: what the simulator, the load benchmark and
 * the warm-up build, and each media's client encodes.
 */
export interface SimulatedRequest {
  requestId: string;
  os: 'android' | 'ios';
  /** Hashed the way the platform hashes (see hashRawDeviceId); `raw` too where a media sends raw ids (Ocean). */
  ids: { kind: DeviceIdKind; md5: string; raw?: string }[];
  platformExperimentIds: number[];
  isPing: boolean;
  isTest: boolean;
  secondRequest: boolean;
  ads: SimulatedAd[];
  /** The strategies asked about, by their ids on the media, for protocols that name them (Ocean's rta_ids). */
  askedStrategyIds?: string[];
}

export interface SimulatedAd {
  /** Decimal strings: uint64 on the wire. */
  adGroupId: string;
  /** The strategy id the ad is bound to on the media; '' when not bound. */
  strategyId: string;
  creatives: { creativeId: string; templateId: number }[];
}

/** The media's side of one protocol: how it encodes requests and reads our replies. */
export interface MediaClient {
  readonly name: string;
  readonly path: string;
  encodeRequest(request: SimulatedRequest, options?: { json?: boolean }): { body: Uint8Array; contentType: string };
  /** The reply as a plain object with the protocol's own field names, for people and tests. */
  decodeReply(body: Uint8Array, contentType: string): Record<string, unknown>;
  /** What the reply says, in the same words for every media: for the contract suite, the simulator and tools. */
  readAnswer(body: Uint8Array, contentType: string): MediaAnswer;
}

/** A reply as the media acts on it. */
export interface MediaAnswer {
  /** As echoed; null where the protocol may leave it out and did. */
  requestId: string | null;
  /** Whether any strategy takes the device. */
  taken: boolean;
  /** The media's decline code or status where the protocol has one (Tencent's `code`), else null. */
  code: number | null;
  /** Seconds the media may cache the answer; null where the protocol has no such field. */
  cacheSeconds: number | null;
  /** The strategies that take the device, by their ids on the media, in reply order. */
  strategies: Array<{ id: string; coefficient: number | null; cpcPriceFen: number; cpaPriceFen: number }>;
  /** Strategies the reply names without taking the device (Tencent SP's "no" votes, Ocean's not-interested ids). */
  declined: string[];
}

/** A float32 from the wire as the decimal that was written: seven significant digits round-trip any float32. */
export function fromFloat32(value: number): number {
  return Number(value.toPrecision(7));
}
