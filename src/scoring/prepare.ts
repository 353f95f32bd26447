import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { PreparedModels } from './manifest.js';

/**
 * Model files are parsed, checked and generated into source on a short-lived thread of their own, so a reload never
 * blocks a thread that serves: the demo models take 60-160 ms to parse and generate, more than any request may wait.
 * What comes back is plain data, compiled where it is used (compileModels), a step at a time.
 */

export interface PrepareRequest {
  manifestPath: string;
  profileSchemaPath: string;
}
export type PrepareAnswer = { prepared: PreparedModels } | { error: string };

export function prepareModelsOffThread(manifestPath: string, profileSchemaPath: string): Promise<PreparedModels> {
  const fromTypeScript = import.meta.url.endsWith('.ts');
  const worker = new Worker(fileURLToPath(new URL(fromTypeScript ? './prepare-thread.ts' : './prepare-thread.js', import.meta.url)), {
    workerData: { manifestPath, profileSchemaPath } satisfies PrepareRequest,
    execArgv: fromTypeScript ? ['--import', 'tsx'] : undefined,
  });
  return new Promise((resolve, reject) => {
    worker.once('message', (answer: PrepareAnswer) => ('prepared' in answer ? resolve(answer.prepared) : reject(new Error(answer.error))));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`model preparation thread exited with code ${code} before answering`)));
  });
}
