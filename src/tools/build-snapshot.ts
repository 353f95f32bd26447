import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { DEVICE_KEY_BYTES, deviceKeyToHex } from '../store/device-key.js';
import { DeviceRowEncoder } from '../store/device-rows.js';
import { DuplicateDeviceKeyError, EmbeddedDeviceStore } from '../store/embedded.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, type ProfileSchema } from '../store/profile-schema.js';
import { writeSnapshot, type SnapshotHeader } from '../store/snapshot.js';
import { parseCommandLine } from './command-line.js';

/**
 * Builds a device snapshot from JSON Lines or CSV device rows (format: data/README.md). Bad rows are never dropped
 * silently: each is counted with its line number and reason, and the build writes nothing unless their number is
 * within --max-bad-rows. A device key already seen on an earlier row makes the later row bad (the first one wins).
 */
export type DeviceRowFormat = 'jsonl' | 'csv';

export interface BuildSnapshotOptions {
  input: string;
  output: string;
  /** Default: from the input's extension (.jsonl/.ndjson -> jsonl, .csv -> csv). */
  format?: DeviceRowFormat;
  /** Bad rows tolerated before the build is refused. Default 0. */
  maxBadRows?: number;
  schema?: ProfileSchema;
  /** Progress bar on stderr. Default false. */
  progress?: boolean;
}

export interface BadRow {
  line: number;
  reason: string;
}

export interface BuildSnapshotReport {
  devices: number;
  keys: number;
  badRowCount: number;
  /** The first MAX_LISTED_BAD_ROWS bad rows, in input order. */
  badRows: BadRow[];
  /** The written snapshot's header; undefined when too many rows were bad and nothing was written. */
  snapshot: SnapshotHeader | undefined;
  millis: number;
}

export const MAX_LISTED_BAD_ROWS = 20;
const PROGRESS_EVERY_LINES = 10_000;

export async function buildSnapshot(options: BuildSnapshotOptions): Promise<BuildSnapshotReport> {
  const started = process.hrtime.bigint();
  const format = options.format ?? formatFromExtension(options.input);
  const maxBadRows = options.maxBadRows ?? 0;
  const schema = options.schema ?? loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
  const encoder = new DeviceRowEncoder(schema);
  const store = EmbeddedDeviceStore.create(schema);
  let lineOfDevice: Uint32Array = new Uint32Array(1024);
  const badRows: BadRow[] = [];
  let badRowCount = 0;
  const refuse = (line: number, reason: string): void => {
    badRowCount++;
    if (badRows.length < MAX_LISTED_BAD_ROWS) badRows.push({ line, reason });
  };

  const inputBytes = inputSize(options.input);
  const stream = createReadStream(options.input);
  const bar = new cliProgress.SingleBar({
    format: 'building {bar} {percentage}% | {devices} devices | {bad} bad rows | {eta_formatted} left',
    hideCursor: true,
  });
  if (options.progress) bar.start(inputBytes, 0, { devices: 0, bad: 0 });
  let line = 0;
  let headerSeen = format === 'jsonl';
  try {
    for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
      line++;
      if (options.progress && line % PROGRESS_EVERY_LINES === 0)
        bar.update(stream.bytesRead, { devices: store.deviceCount, bad: badRowCount });
      if (text.trim() === '') continue;
      if (!headerSeen) {
        try {
          encoder.useCsvHeader(text);
        } catch (error) {
          throw new Error(`${options.input}:${line}: ${(error as Error).message}`);
        }
        headerSeen = true;
        continue;
      }
      const problem = format === 'jsonl' ? encoder.encodeJson(text) : encoder.encodeCsv(text);
      if (problem) {
        refuse(line, problem);
        continue;
      }
      try {
        const index = store.addDevice(encoder.record, encoder.keys);
        if (index >= lineOfDevice.length) lineOfDevice = grow(lineOfDevice);
        lineOfDevice[index] = line;
      } catch (error) {
        if (!(error instanceof DuplicateDeviceKeyError)) throw error;
        const column = encoder.keyColumns[error.keyIndex]!;
        const hex = deviceKeyToHex(encoder.keys, error.keyIndex * DEVICE_KEY_BYTES);
        refuse(
          line,
          error.existingRecordIndex < 0
            ? `${column} ${hex} repeats another device key of the same row`
            : `${column} ${hex} already belongs to the device on line ${lineOfDevice[error.existingRecordIndex]}`,
        );
      }
    }
  } finally {
    if (options.progress) {
      bar.update(inputBytes, { devices: store.deviceCount, bad: badRowCount });
      bar.stop();
    }
  }

  const report = { devices: store.deviceCount, keys: store.keyCount, badRowCount, badRows };
  if (badRowCount > maxBadRows) return { ...report, snapshot: undefined, millis: elapsedMillis(started) };
  if (store.deviceCount === 0) throw new Error(`${options.input}: no valid device rows, nothing to build`);
  const { header } = writeSnapshot(store, options.output);
  return { ...report, snapshot: header, millis: elapsedMillis(started) };
}

function formatFromExtension(path: string): DeviceRowFormat {
  if (/\.(jsonl|ndjson)$/i.test(path)) return 'jsonl';
  if (/\.csv$/i.test(path)) return 'csv';
  throw new Error(`cannot tell the format of ${path} from its extension (.jsonl, .ndjson or .csv); pass --format jsonl|csv`);
}

function inputSize(path: string): number {
  try {
    return statSync(path).size;
  } catch (error) {
    throw new Error(`cannot read input ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

function grow(lines: Uint32Array): Uint32Array {
  const grown = new Uint32Array(lines.length * 2);
  grown.set(lines);
  return grown;
}

function elapsedMillis(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const USAGE = `usage: build-snapshot --input devices.jsonl|devices.csv --output devices.snapshot
                      [--format jsonl|csv] [--max-bad-rows N] [--schema profile-schema.json]
Builds an embedded device store snapshot from device rows (format: data/README.md).`;

async function main(argv: string[]): Promise<number> {
  const values = parseCommandLine(
    argv,
    {
      input: { type: 'string' },
      output: { type: 'string' },
      format: { type: 'string' },
      'max-bad-rows': { type: 'string', default: '0' },
      schema: { type: 'string', default: DEFAULT_PROFILE_SCHEMA_PATH },
    },
    USAGE,
  );
  if (typeof values === 'number') return values;
  const maxBadRows = Number(values['max-bad-rows']);
  const problem = !values.input
    ? '--input is required'
    : !values.output
      ? '--output is required'
      : values.format !== undefined && values.format !== 'jsonl' && values.format !== 'csv'
        ? `--format must be jsonl or csv, got "${values.format}"`
        : !Number.isSafeInteger(maxBadRows) || maxBadRows < 0
          ? `--max-bad-rows must be a whole number >= 0, got "${values['max-bad-rows']}"`
          : undefined;
  if (problem) {
    console.error(`${problem}\n${USAGE}`);
    return 2;
  }

  let report: BuildSnapshotReport;
  try {
    report = await buildSnapshot({
      input: values.input!,
      output: values.output!,
      format: values.format as DeviceRowFormat | undefined,
      maxBadRows,
      schema: loadProfileSchema(values.schema),
      progress: true,
    });
  } catch (error) {
    console.error(`build-snapshot: ${(error as Error).message}`);
    return 1;
  }
  for (const bad of report.badRows) console.error(`${values.input}:${bad.line}: ${bad.reason}`);
  if (report.badRowCount > report.badRows.length)
    console.error(`... and ${report.badRowCount - report.badRows.length} more bad rows`);
  if (!report.snapshot) {
    console.error(
      `build-snapshot: ${report.badRowCount} bad rows (--max-bad-rows ${maxBadRows}); nothing written to ${values.output}`,
    );
    return 1;
  }
  const { deviceCount, keyCount, fileBytes, tableCapacity } = report.snapshot;
  console.log(
    `wrote ${values.output}: ${deviceCount} devices, ${keyCount} keys (${tableCapacity}-slot table), ` +
      `${(fileBytes / 2 ** 20).toFixed(1)} MiB, ${report.badRowCount} bad rows skipped, in ${(report.millis / 1000).toFixed(1)} s`,
  );
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
