import { describe, expect, test } from 'vitest';
import { DeviceIdKind, type DeviceId } from '../../src/engine/types.js';
import { addDeviceId } from '../../src/media/device-ids.js';
import { PLACEHOLDER_KEYS_HEX } from '../../src/store/device-key.js';

describe('addDeviceId', () => {
  test('refuses every placeholder hash, in either case, and appends nothing', () => {
    expect(PLACEHOLDER_KEYS_HEX.size).toBeGreaterThan(3);
    const ids: DeviceId[] = [];
    for (const hex of PLACEHOLDER_KEYS_HEX) {
      expect(addDeviceId(ids, DeviceIdKind.OAID_MD5, hex)).toBe(false);
      expect(addDeviceId(ids, DeviceIdKind.OAID_MD5, hex.toUpperCase())).toBe(false);
    }
    expect(ids).toEqual([]);
  });

  test('takes a hash one byte away from a placeholder, as its 16 bytes', () => {
    const ids: DeviceId[] = [];
    for (const hex of PLACEHOLDER_KEYS_HEX) {
      const near = `${hex.slice(0, 30)}${hex.slice(30) === 'ff' ? '00' : 'ff'}`;
      expect(addDeviceId(ids, DeviceIdKind.IMEI_MD5, near)).toBe(true);
      expect(Buffer.from(ids.at(-1)!.key).toString('hex')).toBe(near);
    }
    expect(ids).toHaveLength(PLACEHOLDER_KEYS_HEX.size);
  });

  test('refuses what is not 32 hex digits', () => {
    const ids: DeviceId[] = [];
    for (const hex of ['', 'abc', `${'a'.repeat(31)}g`, 'a'.repeat(33), `${'a'.repeat(31)}é`]) expect(addDeviceId(ids, DeviceIdKind.OAID_MD5, hex)).toBe(false);
    expect(ids).toEqual([]);
  });
});
