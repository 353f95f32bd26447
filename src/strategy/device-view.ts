/**
 * What strategies see of one request: the device's profile record (if known), its OS, the platform's experiment
 * buckets, and, once scoring is done, the model scores. The engine fills one of these per request.
 */
export interface DeviceView {
  /** The registered media's name (tencent, ocean, ...): a strategy may bid on some media only. */
  media: string;
  os: number;
  /** The record is records[recordOffset .. recordOffset + recordBytes); null for an unknown device. */
  records: Uint8Array | null;
  recordOffset: number;
  /** The profile's flag bits, read once per request (0 for an unknown device). */
  flags: number;
  platformExperimentIds: number[];
  /** The strategies the media asks about, by their ids on it; null: all (see BidContext). */
  askedStrategyIds: string[] | null;
  /** Valid in the score stage: model scores at scores[scoresOffset + modelIndex]. */
  scores: Float32Array;
  scoresOffset: number;
}
