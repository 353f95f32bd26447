import type { BidParams, Experiment } from './schema.js';

/**
 * Our own A/B experiments. A device falls in one of 10,000 buckets per experiment, from a hash of the experiment's
 * salt and the device key, so the same device always sees the same arm (across requests, regions and engine nodes)
 * and a new salt reshuffles everyone.
 */
export const BUCKETS = 10_000;

export interface CompiledArm {
  name: string;
  tag: number;
  /** Bid parameters per strategy in this experiment, with the arm's overrides applied. */
  bidByStrategy: ReadonlyMap<string, BidParams>;
}

export interface CompiledExperiment {
  id: string;
  strategies: ReadonlySet<string>;
  /** Arm of the device whose key is key[offset .. offset+16). */
  armFor(key: Uint8Array, offset: number): CompiledArm;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

function fnv1a(state: number, bytes: Uint8Array, from: number, to: number): number {
  let h = state;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  return h >>> 0;
}

/** Bucket 0..9999 of a device key under a salt. Exposed so tools and tests can predict a device's arm. */
export function experimentBucket(salt: string, key: Uint8Array, offset = 0): number {
  const saltBytes = new TextEncoder().encode(salt);
  return finishBucket(fnv1a(fnv1a(FNV_OFFSET, saltBytes, 0, saltBytes.length), key, offset, offset + 16));
}

/** FNV-1a alone is weak in its low bits; a final avalanche (murmur3 fmix) makes the modulo fair. */
function finishBucket(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) % BUCKETS;
}

export function compileExperiment(experiment: Experiment, baseBid: (strategyId: string) => BidParams): CompiledExperiment {
  const saltBytes = new TextEncoder().encode(experiment.salt);
  const saltState = fnv1a(FNV_OFFSET, saltBytes, 0, saltBytes.length);
  const armByBucket: CompiledArm[] = [];
  for (const arm of experiment.arms) {
    const bidByStrategy = new Map<string, BidParams>();
    for (const strategyId of experiment.strategies) bidByStrategy.set(strategyId, { ...baseBid(strategyId), ...arm.overrides[strategyId] });
    const compiled: CompiledArm = { name: arm.name, tag: arm.tag, bidByStrategy };
    const buckets = Math.round(arm.percent * 100);
    for (let i = 0; i < buckets; i++) armByBucket.push(compiled);
  }
  return {
    id: experiment.id,
    strategies: new Set(experiment.strategies),
    armFor: (key, offset) => armByBucket[finishBucket(fnv1a(saltState, key, offset, offset + 16))]!,
  };
}
