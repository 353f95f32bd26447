import type { Cluster } from 'ioredis';

/**
 * Redis Cluster hash slots, so one micro-batch can be split into one pipeline per node. Keys are binary (prefix +
 * 16 raw MD5 bytes), and Redis's hash-tag rule applies to them byte for byte: when the key holds a `{` followed
 * later by a `}` with at least one byte between, only those bytes are hashed. A raw key byte may well be `{`; the
 * rule is applied exactly as the server does, so the grouping agrees with it (checked against CLUSTER KEYSLOT in
 * the tests). Device keys spread over all slots on purpose: no hash tags, so the base spreads over every node.
 */
export const CLUSTER_SLOTS = 16384;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/** CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum Redis Cluster uses. */
const CRC16_TABLE = new Uint16Array(256);
for (let byte = 0; byte < 256; byte++) {
  let crc = byte << 8;
  for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  CRC16_TABLE[byte] = crc;
}

function crc16(bytes: Uint8Array, from: number, to: number): number {
  let crc = 0;
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

export function keySlot(key: Uint8Array): number {
  const open = key.indexOf(OPEN_BRACE);
  if (open >= 0) {
    const close = key.indexOf(CLOSE_BRACE, open + 1);
    if (close > open + 1) return crc16(key, open + 1, close) & (CLUSTER_SLOTS - 1);
  }
  return crc16(key, 0, key.length) & (CLUSTER_SLOTS - 1);
}

/**
 * Splits keys into groups served by the same nodes (master and replicas, as ioredis requires of a pipeline).
 * Returns, per group, the positions of its keys; undefined when the client has no slot map yet (not connected).
 */
export function groupKeysByNode(cluster: Cluster, keys: readonly Uint8Array[]): number[][] | undefined {
  const groups = new Map<string, number[]>();
  for (let position = 0; position < keys.length; position++) {
    const nodes = cluster.slots[keySlot(keys[position]!)];
    if (nodes === undefined || nodes.length === 0) return undefined;
    const name = nodes.join(';');
    let group = groups.get(name);
    if (group === undefined) groups.set(name, (group = []));
    group.push(position);
  }
  return [...groups.values()];
}
