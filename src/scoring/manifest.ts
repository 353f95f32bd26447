import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import type { ProfileSchema } from '../store/profile-schema.js';
import { checkFeatureName, FeatureExtractor, isIntegralFeature } from './features.js';
import { compileLogistic, loadLogisticModel, logisticFeatures, type LogisticModel } from './logistic.js';
import { formatPath, runSteps, type CompiledModel } from './model.js';
import { loadXgboostModel, prepareXgboost } from './xgboost.js';
import { compileForest, type PreparedForest } from './xgboost-codegen.js';

/**
 * The model manifest (data/models/manifest.json): which models exist, their versions and files, and the features
 * each reads, in the order its feature row holds them. Strategies name models; scores come back in manifest order.
 */

const modelEntrySchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]*$/, 'model names are snake_case'),
    version: z.string().regex(/^[A-Za-z0-9._-]+$/, 'versions use letters, digits, ".", "_" and "-" only'),
    format: z.enum(['xgboost-json', 'logistic-json']),
    /** Relative to the manifest's folder. */
    file: z.string().min(1),
    /** What the score means: a probability in 0..1, or an amount in yuan. */
    output: z.enum(['probability', 'yuan']),
    description: z.string().optional(),
    features: z.array(z.string()).min(1),
  })
  .strict();

const manifestSchema = z
  .object({
    description: z.string().optional(),
    /** The profile record layout the models were trained on. */
    profileSchemaVersion: z.number().int().positive(),
    models: z.array(modelEntrySchema).min(1),
  })
  .strict();

export type ManifestModel = z.infer<typeof modelEntrySchema>;

export interface ModelManifest {
  path: string;
  /** Entries in manifest order; `file` resolved to an absolute path. */
  models: ManifestModel[];
  modelNames: string[];
  /** "apply@2026.11.25-1,approve@...": goes with every decision that used these scores. */
  modelVersion: string;
}

export interface LoadedModel {
  entry: ManifestModel;
  extractor: FeatureExtractor;
  model: CompiledModel;
}

/** Path of the bundled demo manifest, resolved from this module so it works from src/ and dist/ alike. */
export const DEFAULT_MANIFEST_PATH = new URL('../../data/models/manifest.json', import.meta.url).pathname;

/** Reads and checks the manifest: names unique, features known to the schema, files present. Model files are not parsed. */
export function readManifest(path: string, schema: ProfileSchema): ModelManifest {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path}: not readable JSON: ${(error as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${path}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  const { profileSchemaVersion, models } = parsed.data;
  if (profileSchemaVersion !== schema.version) {
    throw new Error(`${path}: models were trained on profile schema version ${profileSchemaVersion}, but the store uses version ${schema.version}`);
  }
  const seen = new Set<string>();
  for (const [i, entry] of models.entries()) {
    const where = `${path}: models[${i}] ("${entry.name}")`;
    if (seen.has(entry.name)) throw new Error(`${where}: duplicate model name`);
    seen.add(entry.name);
    for (const [j, feature] of entry.features.entries()) {
      try {
        checkFeatureName(schema, feature);
      } catch (error) {
        throw new Error(`${where}: features[${j}]: ${(error as Error).message}`);
      }
      if (entry.features.indexOf(feature) !== j) throw new Error(`${where}: features[${j}]: "${feature}" is listed twice`);
    }
    entry.file = resolve(dirname(path), entry.file);
    if (!existsSync(entry.file)) throw new Error(`${where}: model file ${entry.file} does not exist`);
  }
  return {
    path,
    models,
    modelNames: models.map((m) => m.name),
    modelVersion: models.map((m) => `${m.name}@${m.version}`).join(','),
  };
}

/**
 * A manifest's models parsed, checked and generated into source, not yet compiled: plain data, so it can be made
 * on a thread that does not serve and sent to the threads that do (see prepare.ts).
 */
export interface PreparedModels {
  manifest: ModelManifest;
  models: PreparedModel[];
}
type PreparedModel = { format: 'xgboost-json'; forest: PreparedForest } | { format: 'logistic-json'; model: LogisticModel };

/** Parses every model file and checks it against its manifest entry: the expensive, thread-free half of loading. */
export function prepareModels(manifest: ModelManifest, schema: ProfileSchema): PreparedModels {
  return {
    manifest,
    models: manifest.models.map((entry) =>
      entry.format === 'xgboost-json' ? { format: entry.format, forest: prepareXgboostEntry(entry) } : { format: entry.format, model: checkedLogistic(entry, schema) },
    ),
  };
}

/** Compiles prepared models, one forest chunk or model per step: a serving thread yields between the steps. */
export function* compileModels({ manifest, models }: PreparedModels, schema: ProfileSchema): Generator<void, LoadedModel[]> {
  const loaded: LoadedModel[] = [];
  for (const [i, entry] of manifest.models.entries()) {
    const prepared = models[i]!;
    const model = prepared.format === 'xgboost-json' ? yield* compileForest(prepared.forest) : compileLogistic(prepared.model, entry.features);
    loaded.push({ entry, extractor: new FeatureExtractor(schema, entry.features), model });
    yield;
  }
  return loaded;
}

/** Parses and compiles every model file at once, checking each against its manifest entry. */
export function loadManifestModels(manifest: ModelManifest, schema: ProfileSchema): LoadedModel[] {
  return runSteps(compileModels(prepareModels(manifest, schema), schema));
}

function prepareXgboostEntry(entry: ManifestModel): PreparedForest {
  const model = loadXgboostModel(entry.file);
  const where = `${entry.file} (model "${entry.name}")`;
  if (model.featureCount !== entry.features.length) {
    throw new Error(`${where}: the model has ${model.featureCount} features, the manifest lists ${entry.features.length}`);
  }
  const differs = model.featureNames?.findIndex((name, i) => name !== entry.features[i]) ?? -1;
  if (differs >= 0) {
    throw new Error(`${where}: feature ${differs} is "${model.featureNames![differs]}" in the model but "${entry.features[differs]}" in the manifest`);
  }
  const probability = model.objective !== 'reg:squarederror';
  if (probability !== (entry.output === 'probability')) {
    throw new Error(`${where}: objective "${model.objective}" does not produce the manifest's output "${entry.output}"`);
  }
  return prepareXgboost(model);
}

function checkedLogistic(entry: ManifestModel, schema: ProfileSchema): LogisticModel {
  const model = loadLogisticModel(entry.file);
  const where = `${entry.file} (model "${entry.name}")`;
  if (model.name !== entry.name || model.version !== entry.version) {
    throw new Error(`${where}: the file is ${model.name}@${model.version}, the manifest says ${entry.name}@${entry.version}`);
  }
  if (entry.output !== 'probability') throw new Error(`${where}: a logistic model outputs a probability, the manifest says "${entry.output}"`);
  const used = logisticFeatures(model);
  const unused = entry.features.find((name) => !used.includes(name));
  if (unused !== undefined) throw new Error(`${where}: the manifest lists feature "${unused}", which the model does not read`);
  for (const name of model.hashed?.features ?? []) {
    if (!entry.features.includes(name)) continue;
    if (!isIntegralFeature(schema, name)) throw new Error(`${where}: hashed feature "${name}" is a float field; only whole-valued features can be hashed`);
  }
  // Compiled once here only for its checks (every feature it reads is in the list), so preparing refuses what compiling would.
  compileLogistic(model, entry.features);
  return model;
}
