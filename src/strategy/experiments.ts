import type { BidParams } from './schema.js';

/**
 * Our own A/B experiments, in layers. A device falls in one of 10,000 buckets per layer, from a hash of the layer's
 * salt and the device key, so it always sees the same arm (across requests, regions and engine nodes) and a new
 * salt reshuffles everyone. The experiments of one layer share its buckets out (in file order, each its `percent`),
 * so they exclude each other; experiments in different layers are independent, and a strategy may be in one
 * experiment per layer. A media's own experiment ids can be mapped to arms: a request carrying one of them is in
 * that arm whatever its bucket.
 */
export const BUCKETS = 10_000;

export interface CompiledArm {
  experiment: string;
  layer: string;
  name: string;
  tag: number;
  /** The arm's bid changes per strategy: only the fields it names. */
  overrides: ReadonlyMap<string, Partial<BidParams>>;
  /** A creative the arm imposes per strategy. */
  creatives: ReadonlyMap<string, number>;
}

export interface CompiledLayer {
  id: string;
  /** Every arm of the layer's experiments, in file order. */
  arms: readonly CompiledArm[];
  /** The device's arm in this layer, or null where no experiment of the layer covers its bucket. */
  armFor(key: Uint8Array, offset: number, platformExperimentIds: readonly number[]): CompiledArm | null;
}

/** What compileLayers needs of the strategy file. */
export interface LayerInput {
  id: string;
  salt: string;
}
export interface ExperimentInput {
  id: string;
  layer?: string | undefined;
  salt?: string | undefined;
  percent: number;
  arms: ArmInput[];
}
export interface ArmInput {
  name: string;
  tag: number;
  percent: number;
  overrides: Record<string, Partial<BidParams>>;
  creatives: Record<string, number>;
  platformExperimentIds: number[];
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
  return saltedBucket(saltState(salt), key, offset);
}

/** The hash state after a salt: computed once at book load, so a request hashes only the key. */
export function saltState(salt: string): number {
  const saltBytes = new TextEncoder().encode(salt);
  return fnv1a(FNV_OFFSET, saltBytes, 0, saltBytes.length);
}

export function saltedBucket(state: number, key: Uint8Array, offset: number): number {
  return finishBucket(fnv1a(state, key, offset, offset + 16));
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

/**
 * The layers of a book: declared ones, and one per experiment that names no layer (salted by the experiment).
 * Problems (a layer over 100 %, an unknown layer, a salt in the wrong place) are pushed to `problems`.
 */
export function compileLayers(layers: readonly LayerInput[], experiments: readonly ExperimentInput[], problems: string[]): { layers: CompiledLayer[]; layerOf: Map<string, number> } {
  const salts = new Map(layers.map((l) => [l.id, l.salt]));
  const members = new Map<string, { experiment: ExperimentInput; where: string }[]>(layers.map((l) => [l.id, []]));
  for (const [i, experiment] of experiments.entries()) {
    const where = `experiments[${i}](${experiment.id})`;
    if (experiment.layer === undefined) {
      if (experiment.salt === undefined) problems.push(`${where}: give the experiment a salt, or put it in a layer`);
      if (members.has(experiment.id)) problems.push(`${where}: its own layer would be named "${experiment.id}", which is also a declared layer`);
      salts.set(experiment.id, experiment.salt ?? experiment.id);
      members.set(experiment.id, [{ experiment, where }]);
    } else if (!members.has(experiment.layer)) {
      problems.push(`${where}.layer: no layer "${experiment.layer}" in layers (known: ${[...salts.keys()].join(', ') || 'none'})`);
    } else {
      if (experiment.salt !== undefined) problems.push(`${where}.salt: an experiment in a layer is bucketed by the layer's salt; remove this one`);
      members.get(experiment.layer)!.push({ experiment, where });
    }
  }
  const compiled: CompiledLayer[] = [];
  const layerOf = new Map<string, number>();
  for (const [id, list] of members) {
    const total = list.reduce((sum, m) => sum + m.experiment.percent, 0);
    if (total > 100 + 1e-9) problems.push(`layers(${id}): its experiments take ${Number(total.toFixed(6))} % of its traffic, more than 100`);
    for (const m of list) layerOf.set(m.experiment.id, compiled.length);
    compiled.push(compileLayer(id, salts.get(id)!, list.map((m) => m.experiment), problems));
  }
  return { layers: compiled, layerOf };
}

function compileLayer(id: string, salt: string, experiments: readonly ExperimentInput[], problems: string[]): CompiledLayer {
  const state = saltState(salt);
  const armByBucket: (CompiledArm | null)[] = [];
  const arms: CompiledArm[] = [];
  const armByPlatformId = new Map<number, CompiledArm>();
  for (const experiment of experiments) {
    const buckets = Math.round(experiment.percent * 100);
    const start = armByBucket.length;
    for (const [j, arm] of experiment.arms.entries()) {
      const compiled: CompiledArm = {
        experiment: experiment.id,
        layer: id,
        name: arm.name,
        tag: arm.tag,
        overrides: new Map(Object.entries(arm.overrides)),
        creatives: new Map(Object.entries(arm.creatives)),
      };
      arms.push(compiled);
      // The last arm takes what rounding left, so the experiment covers exactly its share of the layer.
      const end = j === experiment.arms.length - 1 ? start + buckets : armByBucket.length + Math.round((buckets * arm.percent) / 100);
      while (armByBucket.length < end) armByBucket.push(compiled);
      for (const platformId of arm.platformExperimentIds) {
        const taken = armByPlatformId.get(platformId);
        if (taken) problems.push(`layers(${id}): platform experiment ${platformId} is mapped to both ${taken.experiment}/${taken.name} and ${experiment.id}/${arm.name}`);
        else armByPlatformId.set(platformId, compiled);
      }
    }
  }
  while (armByBucket.length < BUCKETS) armByBucket.push(null);
  const mapped = armByPlatformId.size > 0;
  return {
    id,
    arms,
    armFor(key, offset, platformExperimentIds) {
      if (mapped)
        for (const platformId of platformExperimentIds) {
          const arm = armByPlatformId.get(platformId);
          if (arm) return arm;
        }
      return armByBucket[saltedBucket(state, key, offset)]!;
    },
  };
}
