import type { DeviceId, DeviceIdKind } from '../engine/types.js';
import { DEVICE_KEY_BYTES, isPlaceholderKey, parseDeviceKeyHex, parseDeviceKeyHexBytes } from '../store/device-key.js';

/**
 * Appends a media's hex MD5 to `ids` as a device key. Returns false, appending nothing, when it must not be used as
 * one: not 32 hex characters, or a placeholder hash (md5 of "", of "0"...) that would match millions of devices.
 */
export function addDeviceId(ids: DeviceId[], kind: DeviceIdKind, hex: string): boolean {
  const key = new Uint8Array(DEVICE_KEY_BYTES);
  if (!parseDeviceKeyHex(hex, key) || isPlaceholderKey(key)) return false;
  ids.push({ kind, key });
  return true;
}

/** addDeviceId for hex that is still bytes of the request, buf[start, end): no string is made of it. */
export function addDeviceIdHex(ids: DeviceId[], kind: DeviceIdKind, buf: Uint8Array, start: number, end: number): boolean {
  const key = new Uint8Array(DEVICE_KEY_BYTES);
  if (end - start !== 2 * DEVICE_KEY_BYTES || !parseDeviceKeyHexBytes(buf, start, key) || isPlaceholderKey(key)) return false;
  ids.push({ kind, key });
  return true;
}
