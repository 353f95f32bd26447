import { createHash } from 'node:crypto';
import { DeviceIdKind } from '../engine/types.js';

/** Device keys are 16 raw MD5 bytes; media send them as 32 hex characters. */
export const DEVICE_KEY_BYTES = 16;

const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX_VALUE[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX_VALUE[65 + i] = 10 + i;
  HEX_VALUE[97 + i] = 10 + i;
}

/**
 * Parses a 32-character hex MD5 into 16 bytes at out[offset]. Returns false (and leaves garbage in out) when the
 * text is not exactly 32 hex digits, so a malformed id can be refused instead of becoming a wrong lookup key.
 */
export function parseDeviceKeyHex(hex: string, out: Uint8Array, offset = 0): boolean {
  if (hex.length !== 32) return false;
  for (let i = 0; i < 16; i++) {
    const hi = hex.charCodeAt(2 * i);
    const lo = hex.charCodeAt(2 * i + 1);
    if (hi > 127 || lo > 127) return false;
    const h = HEX_VALUE[hi]!;
    const l = HEX_VALUE[lo]!;
    if (h < 0 || l < 0) return false;
    out[offset + i] = (h << 4) | l;
  }
  return true;
}

/** parseDeviceKeyHex for 32 bytes of ASCII hex at buf[start]. */
export function parseDeviceKeyHexBytes(buf: Uint8Array, start: number, out: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) {
    const hi = buf[start + 2 * i]!;
    const lo = buf[start + 2 * i + 1]!;
    if (hi > 127 || lo > 127) return false;
    const h = HEX_VALUE[hi]!;
    const l = HEX_VALUE[lo]!;
    if (h < 0 || l < 0) return false;
    out[i] = (h << 4) | l;
  }
  return true;
}

export function deviceKeyToHex(key: Uint8Array, offset = 0): string {
  return Buffer.from(key.buffer, key.byteOffset + offset, DEVICE_KEY_BYTES).toString('hex');
}

/**
 * Keys that platforms send for "no real id" (MD5 of the empty string, of "0", of an all-zero IDFA...). They match
 * millions of unrelated devices, so they are never used for lookup even when the media did not flag them doubtful.
 */
export const PLACEHOLDER_KEYS_HEX: ReadonlySet<string> = new Set(
  ['', '0', '00000000-0000-0000-0000-000000000000', '00000000000000000000000000000000', 'null', 'unknown'].map(
    (raw) => createHash('md5').update(raw).digest('hex'),
  ),
);

const PLACEHOLDER_KEYS = [...PLACEHOLDER_KEYS_HEX].map((hex) => Buffer.from(hex, 'hex'));

/** Whether 16 key bytes are a placeholder's: on the bytes, since a lower-cased copy of the hex costs a string per id. */
export function isPlaceholderKey(key: Uint8Array): boolean {
  for (const placeholder of PLACEHOLDER_KEYS) {
    let i = 0;
    while (i < DEVICE_KEY_BYTES && key[i] === placeholder[i]) i++;
    if (i === DEVICE_KEY_BYTES) return true;
  }
  return false;
}

/**
 * The platforms' hashing rules (Tencent RTA protocol page): IDFA is upper-cased, IMEI lower-cased, the rest hashed
 * as sent. Only tools and the demo data use raw ids; the engine never sees one.
 */
export function hashRawDeviceId(kind: DeviceIdKind, raw: string): string {
  const normalised =
    kind === DeviceIdKind.IDFA_MD5 ? raw.toUpperCase() : kind === DeviceIdKind.IMEI_MD5 ? raw.toLowerCase() : raw;
  return createHash('md5').update(normalised).digest('hex');
}
