import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import type { DeviceIdKind } from '../../src/engine/types.js';
import { DEMO_GENERATOR_VERSION, DemoRandom, drawDemoDevice, drawDemoRawIds } from '../../src/store/demo-population.js';
import { DEVICE_KEY_BYTES, hashRawDeviceId, parseDeviceKeyHex } from '../../src/store/device-key.js';
import { loadProfileSchema } from '../../src/store/profile-schema.js';
import { loadSnapshot } from '../../src/store/snapshot.js';

/**
 * The devices the benchmark sends: the first N devices of the demo population, redrawn from the seed recorded in
 * personas.json (so each comes with its platform and its real id kinds) and checked against the snapshot the engine
 * serves; and devices the store has never seen, drawn from another stream and checked to be absent.
 */

export interface BenchDevice {
  os: 'android' | 'ios';
  ids: { kind: DeviceIdKind; md5: string }[];
}

export interface DevicePopulation {
  known: Record<BenchDevice['os'], BenchDevice[]>;
  unknown: Record<BenchDevice['os'], BenchDevice[]>;
}

const personasHeader = z.object({
  generatedWith: z.object({ generatorVersion: z.number(), devices: z.number().int(), seed: z.number().int() }),
});

/** The stream unknown devices are drawn from: any seed other than the population's own. */
const UNKNOWN_STREAM_OFFSET = 0x6d2b79f5;
/** Demo data redraws an id that clashes with an earlier one; that makes a replayed device differ now and then. */
const TOLERATED_REPLAY_MISSES = 0.001;

export function loadDemoPopulation(options: {
  snapshotPath: string;
  profileSchemaPath: string;
  knownDevices: number;
  unknownDevices: number;
}): DevicePopulation {
  const personasPath = join(dirname(options.snapshotPath), 'personas.json');
  let header: z.infer<typeof personasHeader>;
  try {
    header = personasHeader.parse(JSON.parse(readFileSync(personasPath, 'utf8')));
  } catch (err) {
    throw new Error(`${personasPath}: cannot read how the demo population was made (${(err as Error).message}); run \`node dist/tools/demo-data.js\``);
  }
  const { generatorVersion, devices, seed } = header.generatedWith;
  if (generatorVersion !== DEMO_GENERATOR_VERSION)
    throw new Error(`${personasPath}: demo generator version ${generatorVersion}, this code replays version ${DEMO_GENERATOR_VERSION}; regenerate the demo data`);
  if (options.knownDevices > devices)
    throw new Error(`asked for ${options.knownDevices} known devices, but the demo population has only ${devices}`);

  const { store } = loadSnapshot(options.snapshotPath, loadProfileSchema(options.profileSchemaPath));
  const key = new Uint8Array(DEVICE_KEY_BYTES);
  const stored = (md5: string) => parseDeviceKeyHex(md5, key) && store.find(key, 0) >= 0;

  const population: DevicePopulation = { known: { android: [], ios: [] }, unknown: { android: [], ios: [] } };
  const replay = new DemoRandom(seed);
  let misses = 0;
  for (let i = 0; i < options.knownDevices; i++) {
    const drawn = drawDemoDevice(replay);
    const device: BenchDevice = { os: drawn.os, ids: drawn.rawIds.map(({ kind, raw }) => ({ kind, md5: hashRawDeviceId(kind, raw) })) };
    if (device.ids.every(({ md5 }) => stored(md5))) population.known[device.os].push(device);
    else misses++;
  }
  if (misses > options.knownDevices * TOLERATED_REPLAY_MISSES)
    throw new Error(
      `${misses} of the first ${options.knownDevices} demo devices (seed ${seed}) are not in ${options.snapshotPath}: ` +
        'the snapshot was not made by demo-data from personas.json; regenerate both with `node dist/tools/demo-data.js`',
    );

  const fresh = new DemoRandom((seed + UNKNOWN_STREAM_OFFSET) >>> 0);
  for (let i = 0; i < options.unknownDevices; i++) {
    const os = fresh.chance(0.75) ? 'android' : 'ios';
    const device: BenchDevice = { os, ids: drawDemoRawIds(fresh, os).map(({ kind, raw }) => ({ kind, md5: hashRawDeviceId(kind, raw) })) };
    if (!device.ids.some(({ md5 }) => stored(md5))) population.unknown[os].push(device);
  }
  return population;
}
