import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import protobuf from 'protobufjs';
import { loadProto } from '../../media/protobuf.js';
import { hasCoefficient, hasValue, VERDICT_NAMES } from '../../strategy/book.js';
import { DECISION_LOG_FILE, DECISION_LOG_MAGIC } from './files.js';

/**
 * Reads decision log files back for people and tools (rta log, dry runs, experiment reports). Off the request path, so
 * protobufjs decodes them; a file's last record may be cut short while its thread is still writing it, or when a
 * process died mid-block: reading stops there and says so.
 */
const root = loadProto(new URL('../../../proto/log/decision_log.proto', import.meta.url));
const DecisionRecordType = root.lookupType('rta.log.DecisionRecord');

export interface StrategyVerdictEntry {
  strategyId: string;
  verdict: (typeof VERDICT_NAMES)[number];
  valueFen: number | null;
  rawCoefficient: number | null;
  coefficient: number | null;
  creativeId: number;
  creativeRule: number;
  armTag: number;
  armName: string;
  cpaPriceFen: number;
  cpcPriceFen: number;
}

/** A DecisionRecord in the reader's terms: ids as text, times as ISO strings, absent numbers as null. */
export interface DecisionEntry {
  time: string;
  timeMs: number;
  media: string;
  traceId: string;
  deviceKey: string;
  deviceIdKind: number;
  os: number;
  platformExperimentIds: number[];
  known: boolean;
  test: boolean;
  secondRequest: boolean;
  code: number;
  reason: string;
  cacheTtlSeconds: number;
  requestTag: number;
  requestTagName: string;
  bookVersion: string;
  modelVersion: string;
  storeVersion: string;
  processingTimeUs: number;
  excludedBy: string;
  strategies: StrategyVerdictEntry[];
  notCandidates: number;
  scores: number[];
  thread: number;
  requestBytes: Uint8Array | null;
  replyBytes: Uint8Array | null;
  contentType: string;
  arms: { layer: string; experiment: string; arm: string; tag: number }[];
}

/** The log files under `paths` (folders are listed, files taken as given), oldest first. */
export function decisionLogFiles(paths: readonly string[]): string[] {
  const files: string[] = [];
  for (const path of paths) {
    if (statSync(path).isDirectory()) files.push(...readdirSync(path).filter((name) => DECISION_LOG_FILE.test(name)).map((name) => join(path, name)));
    else files.push(path);
  }
  // Names start with the file's start time, then its sequence number: their order is the order they were written.
  return files.sort((a, b) => basename(a).localeCompare(basename(b)));
}

export interface FileRead {
  entries: DecisionEntry[];
  /** Bytes at the end that did not decode as a whole record (a block still being written, or a crash). */
  truncatedBytes: number;
}

export function readDecisionLogFile(path: string): FileRead {
  const bytes = readFileSync(path);
  if (bytes.length < DECISION_LOG_MAGIC.length || !bytes.subarray(0, DECISION_LOG_MAGIC.length).equals(DECISION_LOG_MAGIC))
    throw new Error(`${path}: not a decision log file (it does not start with "RTALOG1\\n")`);
  const reader = protobuf.Reader.create(bytes.subarray(DECISION_LOG_MAGIC.length));
  const entries: DecisionEntry[] = [];
  let last = 0;
  try {
    while (reader.pos < reader.len) {
      entries.push(toEntry(DecisionRecordType.decodeDelimited(reader) as unknown as RecordMessage));
      last = reader.pos;
    }
  } catch {
    return { entries, truncatedBytes: reader.len - last };
  }
  return { entries, truncatedBytes: 0 };
}

/** Every record under `paths`, oldest file first, in the order each thread wrote them. */
export function* readDecisionLog(paths: readonly string[], onTruncated: (file: string, bytes: number) => void = () => {}): Generator<DecisionEntry> {
  for (const file of decisionLogFiles(paths)) {
    const { entries, truncatedBytes } = readDecisionLogFile(file);
    if (truncatedBytes > 0) onTruncated(file, truncatedBytes);
    yield* entries;
  }
}

type Long = { toNumber(): number } | number;
interface RecordMessage {
  time_ms: Long;
  media: string;
  trace_id: Uint8Array;
  device_key: Uint8Array;
  device_id_kind: number;
  os: number;
  platform_experiment_ids: number[];
  known: boolean;
  test: boolean;
  second_request: boolean;
  code: number;
  reason: string;
  cache_ttl_seconds: number;
  request_tag: Long;
  request_tag_name: string;
  book_version: string;
  model_version: string;
  store_version: string;
  processing_time_us: number;
  excluded_by: string;
  strategies: VerdictMessage[];
  not_candidates: number;
  scores: number[];
  thread: number;
  request_bytes: Uint8Array;
  reply_bytes: Uint8Array;
  content_type: string;
  arms: { layer: string; experiment: string; arm: string; tag: Long }[];
}
interface VerdictMessage {
  strategy_id: string;
  verdict: number;
  value_fen: number;
  raw_coefficient: number;
  coefficient: number;
  creative_id: Long;
  creative_rule: number;
  arm_tag: Long;
  arm_name: string;
  cpa_price_fen: number;
  cpc_price_fen: number;
}

const TEXT = new TextDecoder('utf-8', { fatal: true });
const num = (value: Long): number => (typeof value === 'number' ? value : value.toNumber());
/** A float32 read back shows the digits it holds, not those of its double: 0.583, not 0.5830000042915344. */
const float32 = (value: number): number => Number(value.toPrecision(7));
/** A float the writer left out (see ProtoWriter.float32) decodes as 0: unknown, unless the verdict implies it. */
const orNull = (value: number, present: boolean): number | null => (present ? value : null);

function toEntry(m: RecordMessage): DecisionEntry {
  const timeMs = num(m.time_ms);
  let traceId: string;
  try {
    traceId = TEXT.decode(m.trace_id);
  } catch {
    traceId = `hex:${Buffer.from(m.trace_id).toString('hex')}`;
  }
  return {
    time: new Date(timeMs).toISOString(),
    timeMs,
    media: m.media,
    traceId,
    deviceKey: Buffer.from(m.device_key).toString('hex'),
    deviceIdKind: m.device_id_kind,
    os: m.os,
    platformExperimentIds: m.platform_experiment_ids,
    known: m.known,
    test: m.test,
    secondRequest: m.second_request,
    code: m.code,
    reason: m.reason,
    cacheTtlSeconds: m.cache_ttl_seconds,
    requestTag: num(m.request_tag),
    requestTagName: m.request_tag_name,
    bookVersion: m.book_version,
    modelVersion: m.model_version,
    storeVersion: m.store_version,
    processingTimeUs: m.processing_time_us,
    excludedBy: m.excluded_by,
    strategies: m.strategies.map((s) => {
      const verdict = VERDICT_NAMES[s.verdict] ?? 'not_candidate';
      return {
        strategyId: s.strategy_id,
        verdict,
        valueFen: orNull(float32(s.value_fen), hasValue(s.verdict)),
        rawCoefficient: orNull(float32(s.raw_coefficient), hasCoefficient(s.verdict)),
        // Sent with three decimals (book.ts roundCoefficient); the float32 on disk is only near it.
        coefficient: orNull(Math.round(s.coefficient * 1000) / 1000, s.coefficient !== 0),
        creativeId: num(s.creative_id),
        creativeRule: s.creative_rule,
        armTag: num(s.arm_tag),
        armName: s.arm_name,
        cpaPriceFen: s.cpa_price_fen,
        cpcPriceFen: s.cpc_price_fen,
      };
    }),
    notCandidates: m.not_candidates,
    scores: m.scores.map(float32),
    thread: m.thread,
    requestBytes: m.request_bytes.length > 0 ? m.request_bytes : null,
    replyBytes: m.reply_bytes.length > 0 ? m.reply_bytes : null,
    contentType: m.content_type,
    arms: m.arms.map((a) => ({ layer: a.layer, experiment: a.experiment, arm: a.arm, tag: num(a.tag) })),
  };
}
