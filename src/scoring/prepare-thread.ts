import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { loadProfileSchema } from '../store/profile-schema.js';
import { prepareModels, readManifest } from './manifest.js';
import type { PrepareAnswer, PrepareRequest } from './prepare.js';

/** The thread behind prepareModelsOffThread: prepares one manifest's models, answers once, and ends. */
// The lowest priority, for this thread alone (Linux keeps a nice value per thread): on a node with as many serving
// threads as cores, the kernel would otherwise take time slices of several milliseconds from them to run this one.
setPriority(19);
const { manifestPath, profileSchemaPath } = workerData as PrepareRequest;
let answer: PrepareAnswer;
try {
  const schema = loadProfileSchema(profileSchemaPath);
  answer = { prepared: prepareModels(readManifest(manifestPath, schema), schema) };
} catch (err) {
  answer = { error: (err as Error).message };
}
parentPort!.postMessage(answer);
