/**
 * What strategies see of one request: the device's profile record (if known), its OS, the platform's experiment
 * buckets, and, once scoring is done, the model scores. The engine fills one of these per request.
 */
export interface DeviceView {
  os: number;
  known: boolean;
  /** Valid when known: the record is records[recordOffset .. recordOffset + recordBytes). */
  records: Uint8Array;
  recordOffset: number;
  /** The profile's flag bits, read once per request (0 for an unknown device). */
  flags: number;
  platformExperimentIds: number[];
  /** Valid in the score stage: model scores at scores[scoresOffset + modelIndex]. */
  scores: Float32Array;
  scoresOffset: number;
}
