import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import cliProgress from 'cli-progress';
import { z } from 'zod';
import { DEVICE_ID_KIND_NAMES } from '../engine/types.js';
import {
  DEMO_GENERATOR_VERSION,
  DemoRandom,
  drawDemoDevice,
  drawDemoRawIds,
  type DemoDevice,
  type DemoSegment,
} from '../store/demo-population.js';
import { DEVICE_KEY_BYTES, hashRawDeviceId, parseDeviceKeyHex } from '../store/device-key.js';
import { DuplicateDeviceKeyError, EmbeddedDeviceStore } from '../store/embedded.js';
import { profileLayoutFingerprint } from '../store/layout-fingerprint.js';
import { ProfileRecordWriter } from '../store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, type ProfileSchema } from '../store/profile-schema.js';
import { readSnapshotHeader, SnapshotError, writeSnapshot } from '../store/snapshot.js';
import { parseCommandLine } from './command-line.js';

/**
 * Writes the demo device population (src/store/demo-population.ts) as a snapshot, plus personas.json: for each
 * persona a few example devices with their raw ids, so the README and the media simulator can send them.
 * Deterministic: the same --seed and --devices give byte-identical files.
 */
export const DEFAULT_DEMO_DEVICES = 1_000_000;
export const DEFAULT_DEMO_SEED = 42;
export const DEFAULT_DEMO_DIR = fileURLToPath(new URL('../../data/generated/', import.meta.url));
export const DEMO_SNAPSHOT_FILE = 'devices.snapshot';
export const DEMO_PERSONAS_FILE = 'personas.json';
const EXAMPLES_PER_OS = { android: 2, ios: 1 } as const;
const PROGRESS_EVERY_DEVICES = 10_000;
const JSONL_FLUSH_ROWS = 2_000;

export type PersonaName = 'prime_prospect' | 'dormant_approved' | 'active_borrower' | 'blacklisted' | 'high_risk' | 'unknown';

interface PersonaRule {
  name: Exclude<PersonaName, 'unknown'>;
  description: string;
  matches(device: DemoDevice): boolean;
}

/** Chosen so the expected answer is not borderline: each example sits deep inside its case. */
const PERSONA_RULES: PersonaRule[] = [
  {
    name: 'prime_prospect',
    description: 'new prospect with strong features: credit band 1-2, no other lender, many finance apps, high income',
    matches: ({ segment, values: v }) =>
      segment === 'prospect' && v.credit_band! <= 2 && v.multi_lender_count === 0 && v.finance_app_count! >= 8 && v.income_score! >= 0.7,
  },
  {
    name: 'dormant_approved',
    description: 'approved before, inactive 90+ days, repaid well, at most one other lender: worth re-activating',
    matches: ({ segment, values: v }) =>
      segment === 'dormant_approved' && v.repay_score! >= 0.7 && v.multi_lender_count! <= 1 && v.credit_band! <= 3,
  },
  {
    name: 'active_borrower',
    description: 'current borrower: never spend acquisition budget on them',
    matches: ({ segment }) => segment === 'active_borrower',
  },
  {
    name: 'blacklisted',
    description: 'blacklisted: always rejected',
    matches: ({ segment }) => segment === 'blacklisted',
  },
  {
    name: 'high_risk',
    description: 'recent overdue and 8+ other lenders: rejected as high risk',
    matches: ({ segment, values: v }) => segment === 'high_risk' && v.multi_lender_count! >= 8,
  },
];

export interface PersonaDevice {
  os: DemoDevice['os'];
  /** `kind` is the key name (DEVICE_ID_KIND_NAMES); `md5` = hashRawDeviceId(kind, raw), as media send it. */
  ids: { kind: string; raw: string; md5: string }[];
  segment: DemoSegment | 'not_in_store';
  /** Profile values, null = missing; absent for unknown devices. */
  profile?: Record<string, number | string[] | null>;
}

const generatedWithSchema = z.object({
  generatorVersion: z.number(),
  devices: z.number(),
  seed: z.number(),
  profileSchemaVersion: z.number(),
  layoutFingerprint: z.string(),
  snapshotChecksum: z.string(),
  jsonl: z.object({ file: z.string(), bytes: z.number() }).nullable(),
});
type GeneratedWith = z.infer<typeof generatedWithSchema>;

export interface DemoDataOptions {
  devices?: number;
  seed?: number;
  outputDir?: string;
  /** Also write the rows as JSON Lines in build-snapshot's input format. */
  jsonl?: string;
  /** Do nothing when the output already matches these parameters. */
  ifMissing?: boolean;
  schema?: ProfileSchema;
  progress?: boolean;
}

export interface DemoDataReport {
  /** False when --if-missing found matching files and nothing was written. */
  generated: boolean;
  snapshotPath: string;
  personasPath: string;
  devices: number;
  keys: number;
  millis: number;
  /** Personas for which no device of the population qualified (too few devices). */
  missingPersonas: PersonaName[];
}

export function generateDemoData(options: DemoDataOptions = {}): DemoDataReport {
  const started = process.hrtime.bigint();
  const devices = options.devices ?? DEFAULT_DEMO_DEVICES;
  const seed = options.seed ?? DEFAULT_DEMO_SEED;
  const outputDir = resolve(options.outputDir ?? DEFAULT_DEMO_DIR);
  const schema = options.schema ?? loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
  const snapshotPath = join(outputDir, DEMO_SNAPSHOT_FILE);
  const personasPath = join(outputDir, DEMO_PERSONAS_FILE);
  const jsonlPath = options.jsonl === undefined ? undefined : resolve(options.jsonl);
  const wanted = { generatorVersion: DEMO_GENERATOR_VERSION, devices, seed, profileSchemaVersion: schema.version, layoutFingerprint: profileLayoutFingerprint(schema) };

  if (options.ifMissing) {
    const existing = existingOutput(snapshotPath, personasPath);
    if (existing && sameParameters(existing.generatedWith, wanted, jsonlPath)) {
      return { generated: false, snapshotPath, personasPath, devices, keys: existing.keys, millis: elapsedMillis(started), missingPersonas: [] };
    }
  }

  mkdirSync(outputDir, { recursive: true });
  const random = new DemoRandom(seed);
  const writer = new ProfileRecordWriter(schema);
  const store = EmbeddedDeviceStore.create(schema, { devices, keys: devices });
  const keys = new Uint8Array(4 * DEVICE_KEY_BYTES);
  const examples = new Map<PersonaName, PersonaDevice[]>(PERSONA_RULES.map((rule) => [rule.name, []]));
  const jsonl = jsonlPath === undefined ? undefined : { fd: openSync(`${jsonlPath}.tmp`, 'w'), rows: [] as string[] };
  const bar = new cliProgress.SingleBar({ format: 'demo devices {bar} {percentage}% | {value}/{total} | {eta_formatted} left', hideCursor: true });
  if (options.progress) bar.start(devices, 0);

  for (let i = 0; i < devices; i++) {
    if (options.progress && i % PROGRESS_EVERY_DEVICES === 0) bar.update(i);
    const device = drawDemoDevice(random);
    fillRecord(writer, schema, device);
    // A repeated raw id (a 1-in-10^12 IMEI clash) is redrawn rather than merged, keeping one id per device.
    let hexKeys: string[];
    for (;;) {
      hexKeys = device.rawIds.map(({ kind, raw }) => hashRawDeviceId(kind, raw));
      try {
        store.addDevice(writer.record, keyBytes(hexKeys, keys));
        break;
      } catch (error) {
        if (!(error instanceof DuplicateDeviceKeyError)) throw error;
        device.rawIds = drawDemoRawIds(random, device.os);
      }
    }
    for (const rule of PERSONA_RULES) {
      const found = examples.get(rule.name)!;
      if (wantsExample(found, device.os) && rule.matches(device)) found.push(personaDevice(device, schema));
    }
    if (jsonl) {
      jsonl.rows.push(jsonRow(device, hexKeys, schema));
      if (jsonl.rows.length === JSONL_FLUSH_ROWS) flushRows(jsonl);
    }
  }
  if (options.progress) {
    bar.update(devices);
    bar.stop();
  }
  examples.set('unknown', unknownDevices(random, store));

  const { header } = writeSnapshot(store, snapshotPath);
  let jsonlRecord: GeneratedWith['jsonl'] = null;
  if (jsonl && jsonlPath) {
    flushRows(jsonl);
    closeSync(jsonl.fd);
    renameSync(`${jsonlPath}.tmp`, jsonlPath);
    jsonlRecord = { file: jsonlPath, bytes: statSync(jsonlPath).size };
  }
  const generatedWith: GeneratedWith = { ...wanted, snapshotChecksum: header.checksum, jsonl: jsonlRecord };
  const personas = Object.fromEntries(
    [...examples].map(([name, found]) => [name, { description: describePersona(name), devices: found }]),
  );
  const document = {
    note: 'Synthetic demo devices from src/tools/demo-data.ts (seeded PRNG). No real person, device or id.',
    generatedWith,
    personas,
  };
  writeFileSync(`${personasPath}.tmp`, `${JSON.stringify(document, null, 2)}\n`);
  renameSync(`${personasPath}.tmp`, personasPath);
  return {
    generated: true,
    snapshotPath,
    personasPath,
    devices: store.deviceCount,
    keys: store.keyCount,
    millis: elapsedMillis(started),
    missingPersonas: [...examples].filter(([, found]) => found.length === 0).map(([name]) => name),
  };
}

function fillRecord(writer: ProfileRecordWriter, schema: ProfileSchema, device: DemoDevice): void {
  writer.clear();
  const problem = writer.writeFlags(schema.field('flags'), device.flags);
  if (problem) throw new Error(`demo population: ${problem}`);
  for (const [name, value] of Object.entries(device.values)) {
    if (Number.isNaN(value)) continue;
    const problem = writer.write(schema.field(name), value);
    if (problem) throw new Error(`demo population: ${problem}`);
  }
}

function keyBytes(hexKeys: string[], keys: Uint8Array): Uint8Array {
  hexKeys.forEach((hex, i) => parseDeviceKeyHex(hex, keys, i * DEVICE_KEY_BYTES));
  return keys.subarray(0, hexKeys.length * DEVICE_KEY_BYTES);
}

function wantsExample(found: PersonaDevice[], os: DemoDevice['os']): boolean {
  return found.filter((example) => example.os === os).length < EXAMPLES_PER_OS[os];
}

function personaDevice(device: DemoDevice, schema: ProfileSchema): PersonaDevice {
  const profile: Record<string, number | string[] | null> = {};
  for (const field of schema.fields) {
    if (field.bits) profile[field.name] = device.flags;
    else profile[field.name] = Number.isNaN(device.values[field.name]) ? null : device.values[field.name]!;
  }
  return { os: device.os, ids: describeIds(device.rawIds), segment: device.segment, profile };
}

/** Raw ids drawn after the population, kept only when none of their keys is in the store. */
function unknownDevices(random: DemoRandom, store: EmbeddedDeviceStore): PersonaDevice[] {
  const found: PersonaDevice[] = [];
  const key = new Uint8Array(DEVICE_KEY_BYTES);
  for (const os of ['android', 'android', 'ios'] as const) {
    for (;;) {
      const rawIds = drawDemoRawIds(random, os);
      const ids = describeIds(rawIds);
      const known = ids.some(({ md5 }) => parseDeviceKeyHex(md5, key) && store.find(key, 0) >= 0);
      if (known) continue;
      found.push({ os, ids, segment: 'not_in_store' });
      break;
    }
  }
  return found;
}

function describeIds(rawIds: DemoDevice['rawIds']): PersonaDevice['ids'] {
  return rawIds.map(({ kind, raw }) => ({ kind: DEVICE_ID_KIND_NAMES[kind], raw, md5: hashRawDeviceId(kind, raw) }));
}

function describePersona(name: PersonaName): string {
  return PERSONA_RULES.find((rule) => rule.name === name)?.description ?? 'raw ids that are not in the store: answered without a profile';
}

/** A row in build-snapshot's JSON Lines input format. */
function jsonRow(device: DemoDevice, hexKeys: string[], schema: ProfileSchema): string {
  const row: Record<string, string | number | string[] | null> = {};
  device.rawIds.forEach(({ kind }, i) => (row[DEVICE_ID_KIND_NAMES[kind]] = hexKeys[i]!));
  for (const field of schema.fields) {
    if (field.bits) row[field.name] = device.flags;
    else row[field.name] = Number.isNaN(device.values[field.name]) ? null : device.values[field.name]!;
  }
  return JSON.stringify(row);
}

function flushRows(jsonl: { fd: number; rows: string[] }): void {
  if (jsonl.rows.length === 0) return;
  writeSync(jsonl.fd, `${jsonl.rows.join('\n')}\n`);
  jsonl.rows.length = 0;
}

function existingOutput(snapshotPath: string, personasPath: string): { generatedWith: GeneratedWith; keys: number } | undefined {
  if (!existsSync(snapshotPath) || !existsSync(personasPath)) return undefined;
  try {
    const document = z.object({ generatedWith: generatedWithSchema }).safeParse(JSON.parse(readFileSync(personasPath, 'utf8')));
    if (!document.success) return undefined;
    const header = readSnapshotHeader(snapshotPath);
    if (header.checksum !== document.data.generatedWith.snapshotChecksum) return undefined;
    return { generatedWith: document.data.generatedWith, keys: header.keyCount };
  } catch (error) {
    // An unreadable or foreign file is simply regenerated.
    if (error instanceof SnapshotError || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

function sameParameters(existing: GeneratedWith, wanted: Omit<GeneratedWith, 'snapshotChecksum' | 'jsonl'>, jsonlPath: string | undefined): boolean {
  const sameRun = (Object.keys(wanted) as (keyof typeof wanted)[]).every((name) => existing[name] === wanted[name]);
  if (!sameRun || jsonlPath === undefined) return sameRun;
  return existing.jsonl?.file === jsonlPath && existsSync(jsonlPath) && statSync(jsonlPath).size === existing.jsonl.bytes;
}

function elapsedMillis(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

const USAGE = `usage: demo-data [--devices N] [--seed S] [--output-dir DIR] [--jsonl FILE] [--if-missing]
Writes DIR/${DEMO_SNAPSHOT_FILE} and DIR/${DEMO_PERSONAS_FILE} (default DIR: data/generated, ${DEFAULT_DEMO_DEVICES} devices, seed ${DEFAULT_DEMO_SEED}).
--jsonl also writes the rows in build-snapshot's input format; --if-missing skips the work when the files already match.`;

function main(argv: string[]): number {
  const values = parseCommandLine(
    argv,
    {
      devices: { type: 'string', default: String(DEFAULT_DEMO_DEVICES) },
      seed: { type: 'string', default: String(DEFAULT_DEMO_SEED) },
      'output-dir': { type: 'string', default: DEFAULT_DEMO_DIR },
      jsonl: { type: 'string' },
      'if-missing': { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (typeof values === 'number') return values;
  const devices = Number(values.devices);
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(devices) || devices < 1) {
    console.error(`--devices must be a whole number >= 1, got "${values.devices}"\n${USAGE}`);
    return 2;
  }
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) {
    console.error(`--seed must be a whole number in 0..4294967295, got "${values.seed}"\n${USAGE}`);
    return 2;
  }
  let report: DemoDataReport;
  try {
    report = generateDemoData({
      devices,
      seed,
      outputDir: values['output-dir'],
      jsonl: values.jsonl,
      ifMissing: values['if-missing'],
      progress: true,
    });
  } catch (error) {
    console.error(`demo-data: ${(error as Error).message}`);
    return 1;
  }
  if (!report.generated) {
    console.log(`demo data up to date: ${report.snapshotPath} (${devices} devices, seed ${seed})`);
    return 0;
  }
  for (const name of report.missingPersonas)
    console.warn(`warning: no device among ${devices} qualifies as persona "${name}"; use more --devices`);
  console.log(
    `wrote ${report.snapshotPath} (${report.devices} devices, ${report.keys} keys) and ${report.personasPath} in ${(report.millis / 1000).toFixed(1)} s`,
  );
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
