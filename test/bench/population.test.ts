import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { loadDemoPopulation } from '../../bench/lib/population.js';
import { loadConfig } from '../../src/config.js';
import { DeviceIdKind } from '../../src/engine/types.js';
import { DEVICE_KEY_BYTES, parseDeviceKeyHex } from '../../src/store/device-key.js';
import { loadProfileSchema } from '../../src/store/profile-schema.js';
import { loadSnapshot } from '../../src/store/snapshot.js';

const config = loadConfig({ env: {} });
const haveDemo = existsSync(config.store.snapshot);
if (!haveDemo) console.warn(`SKIPPING population tests: ${config.store.snapshot} is missing (npm test makes it: node dist/tools/demo-data.js)`);

describe.skipIf(!haveDemo)('loadDemoPopulation', () => {
  test('replays known devices that are in the snapshot, with their platform id kinds, and unknown ones that are not', () => {
    const population = loadDemoPopulation({
      snapshotPath: config.store.snapshot,
      profileSchemaPath: config.store.profileSchema,
      knownDevices: 4000,
      unknownDevices: 2000,
    });
    const { store } = loadSnapshot(config.store.snapshot, loadProfileSchema(config.store.profileSchema));
    const key = new Uint8Array(DEVICE_KEY_BYTES);
    const stored = (md5: string) => parseDeviceKeyHex(md5, key) && store.find(key, 0) >= 0;
    const known = [...population.known.android, ...population.known.ios];
    const unknown = [...population.unknown.android, ...population.unknown.ios];
    expect(known.length).toBeGreaterThanOrEqual(3996);
    expect(unknown.length).toBe(2000);
    for (const device of known) expect(device.ids.every((id) => stored(id.md5))).toBe(true);
    for (const device of unknown) expect(device.ids.some((id) => stored(id.md5))).toBe(false);
    const iosKinds = new Set<number>([DeviceIdKind.IDFA_MD5, DeviceIdKind.CAID_MD5]);
    for (const device of [...known, ...unknown]) for (const id of device.ids) expect(iosKinds.has(id.kind)).toBe(device.os === 'ios');
    // The demo spec: 75 % Android.
    expect(Math.abs(population.known.android.length / known.length - 0.75)).toBeLessThan(0.03);
  });
});
