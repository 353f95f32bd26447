import { seededRandom } from '../test/support/seeded-random.js';

/** Seeded choices for the mutators: every input is reproducible from the run's seed and its own index. */
export type Rng = () => number;

/** The generator of input `index` of a run: independent of the other inputs, so any one can be replayed alone. */
export function inputRandom(seed: number, index: number): Rng {
  // murmur3's finaliser spreads neighbouring (seed, index) pairs over the whole 32-bit state space.
  let h = (Math.imul(seed ^ 0x9e37_79b9, 0x85eb_ca6b) ^ index) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85eb_ca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2_ae35);
  return seededRandom((h ^ (h >>> 16)) >>> 0);
}

/** 0 <= n < below. */
export function int(r: Rng, below: number): number {
  return Math.floor(r() * below);
}

export function pick<T>(r: Rng, items: readonly T[]): T {
  return items[int(r, items.length)]!;
}

export function chance(r: Rng, probability: number): boolean {
  return r() < probability;
}

export function randomBytes(r: Rng, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = int(r, 256);
  return bytes;
}
