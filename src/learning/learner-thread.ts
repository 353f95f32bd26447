import { parentPort, workerData } from 'node:worker_threads';
import type { LogisticModel } from '../scoring/logistic.js';
import { FtrlCorrection, type FtrlParams } from './ftrl.js';

/**
 * The online learner's own thread: examples in, figures and candidate models out, so learning never runs on a
 * thread that serves. Messages are answered in order; each answer carries the request's id.
 */
export type LearnerRequest =
  | { id: number; type: 'learn'; rows: Float32Array; labels: Uint8Array }
  | { id: number; type: 'look'; version: string; description: string }
  | { id: number; type: 'adopt' | 'drop-live' }
  | { id: number; type: 'rebase'; base: LogisticModel };

export interface LearnerData {
  base: LogisticModel;
  featureNames: string[];
  params: FtrlParams;
}

const data = workerData as LearnerData;
let learner = new FtrlCorrection(data.base, data.featureNames, data.params);

parentPort!.on('message', (request: LearnerRequest) => {
  switch (request.type) {
    case 'learn': {
      const width = data.featureNames.length;
      for (let i = 0; i < request.labels.length; i++) learner.learn(request.rows.subarray(i * width, (i + 1) * width), request.labels[i] as 0 | 1);
      parentPort!.postMessage({ id: request.id });
      return;
    }
    case 'look':
      parentPort!.postMessage({ id: request.id, figures: learner.figures(), candidate: learner.candidate(request.version, request.description) });
      return;
    case 'adopt':
      learner.adopt();
      break;
    case 'drop-live':
      learner.dropLive();
      break;
    case 'rebase':
      // New daily weights: a correction learned against the old ones means nothing against these.
      learner = new FtrlCorrection(request.base, data.featureNames, data.params);
      break;
  }
  parentPort!.postMessage({ id: request.id });
});
