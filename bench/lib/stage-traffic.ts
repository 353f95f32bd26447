import { DeviceIdKind } from '../../src/engine/types.js';
import { tencentClient } from '../../src/media/tencent/client.js';
import { SLOT_BYTES, type EmbeddedDeviceStore } from '../../src/store/embedded.js';

/**
 * The in-process benchmarks' Tencent requests: `count` bodies over the store's key table, 70 % stored devices and
 * 30 % unknown, a quarter iOS, each in a platform experiment bucket. The same for every in-process stage benchmark,
 * so their figures compare.
 */
export function stageTraffic(store: EmbeddedDeviceStore, count: number): Uint8Array[] {
  const slots = store.tableBytes.length / SLOT_BYTES;
  const bodies: Uint8Array[] = [];
  for (let i = 0; bodies.length < count; i++) {
    const slot = ((i * 2_654_435_761) >>> 0) % slots;
    const key = store.tableBytes.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + 16);
    const known = store.find(key, 0) >= 0;
    if (i % 10 < 3 ? known : !known) continue;
    bodies.push(
      tencentClient.encodeRequest({
        requestId: `bench-${i}`,
        os: i % 4 === 0 ? 'ios' : 'android',
        ids: [{ kind: i % 4 === 0 ? DeviceIdKind.IDFA_MD5 : DeviceIdKind.OAID_MD5, md5: Buffer.from(key).toString('hex') }],
        platformExperimentIds: [1024 + (i % 7), 32768],
        isPing: false,
        isTest: false,
        secondRequest: false,
        ads: [],
      }).body,
    );
  }
  return bodies;
}
