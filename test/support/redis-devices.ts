import { Redis } from 'ioredis';
import { loadProfileSchema } from '../../src/store/profile-schema.js';
import { layoutStampKey, layoutStampOf } from '../../src/store/redis-client.js';
import { loadSnapshot } from '../../src/store/snapshot.js';
import { REPO_ROOT } from './engine-process.js';
import type { RedisServer } from './redis-server.js';
import { loadPersonas, type PersonaName } from './rta-client.js';

/**
 * A device base in Redis for the engine's Redis store: the persona devices' records copied from the demo snapshot,
 * under the engine's default key prefix, with the layout stamp the store checks at start. Only a few devices, so
 * telling stored devices from unknown ones is cheap and a restarted server can be refilled in milliseconds.
 */
export const DEVICE_KEY_PREFIX = 'rta:dev:';

export interface DeviceBase {
  /** Redis key (prefix + 16 key bytes) and profile record, one per device id. */
  entries: Array<[Buffer, Buffer]>;
  layoutStamp: string;
}

export function personaDeviceBase(names: readonly PersonaName[]): DeviceBase {
  const profile = loadProfileSchema(`${REPO_ROOT}data/profile-schema.json`);
  const { store } = loadSnapshot(`${REPO_ROOT}data/generated/devices.snapshot`, profile);
  const personas = loadPersonas();
  const entries: Array<[Buffer, Buffer]> = [];
  for (const name of names) {
    for (const device of personas[name]) {
      for (const id of device.ids) {
        const key = Buffer.from(id.md5, 'hex');
        const offset = store.find(key, 0);
        if (offset < 0) throw new Error(`${name} ${id.md5} is not in the demo snapshot`);
        entries.push([Buffer.concat([Buffer.from(DEVICE_KEY_PREFIX), key]), Buffer.from(store.records.subarray(offset, offset + store.recordBytes))]);
      }
    }
  }
  return { entries, layoutStamp: JSON.stringify(layoutStampOf(profile)) };
}

export async function writeDeviceBase(server: RedisServer, base: DeviceBase): Promise<void> {
  const client = new Redis({ port: server.port, host: '127.0.0.1' });
  try {
    const pipeline = client.pipeline();
    for (const [key, record] of base.entries) pipeline.set(key, record);
    pipeline.set(layoutStampKey(DEVICE_KEY_PREFIX), base.layoutStamp);
    const failed = (await pipeline.exec())?.find(([error]) => error !== null);
    if (failed) throw failed[0];
  } finally {
    client.disconnect();
  }
}
