import type { DeviceIdKind } from '../engine/types.js';

/**
 * A request as a media platform would send it, before any wire format: what the simulator, the load benchmark and
 * the warm-up build, and each media's client encodes.
 */
export interface SimulatedRequest {
  requestId: string;
  os: 'android' | 'ios';
  /** Already hashed the way the platform hashes (see hashRawDeviceId). */
  ids: { kind: DeviceIdKind; md5: string }[];
  platformExperimentIds: number[];
  isPing: boolean;
  isTest: boolean;
  secondRequest: boolean;
  ads: SimulatedAd[];
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
}
