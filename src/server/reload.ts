import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Config } from '../config.js';
import { log } from '../observe/log.js';
import type { PreparedModels } from '../scoring/manifest.js';
import { EmbeddedDeviceStore } from '../store/embedded.js';
import { loadStrategyBook } from '../strategy/book.js';
import { loadDeviceStore, loadModelsAndStrategies, showBookVersion, showModelVersions, type Runtime, type Scorer } from './boot.js';

/**
 * Hot reload of one part of a running engine from the files its config names. The new part is loaded, validated
 * and warmed up beside the old one, then swapped in with one assignment; a refused file leaves the old part
 * serving. Requests already under way finish on the parts they started with.
 */
export const RELOAD_TARGETS = ['models', 'strategies', 'devices'] as const;
export type ReloadTarget = (typeof RELOAD_TARGETS)[number];

export async function reloadRuntime(
  runtime: Runtime,
  config: Config,
  target: ReloadTarget,
  shared: { store?: EmbeddedDeviceStore | undefined; models?: PreparedModels | undefined } = {},
): Promise<Record<string, unknown>> {
  const { engine, metrics } = runtime;
  const old = engine.parts;
  const started = performance.now();
  // The reload's cost to this thread's requests: the longest the event loop was held up while it ran (1 ms steps).
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  let summary: Record<string, unknown>;
  try {
    if (target === 'devices') {
      if (config.store.kind === 'redis') throw new Error('devices live in Redis (store.kind "redis"): load them with load-redis; nothing to reload here');
      const store = shared.store ?? loadDeviceStore(config, runtime.profile);
      engine.swap({ store });
      metrics.devicesLoaded.set(store.deviceCount);
      summary = { devices: store.deviceCount };
    } else if (target === 'strategies') {
      const book = loadStrategyBook(config.strategies, runtime.profile, old.scorer.modelNames);
      engine.swap({ book });
      showBookVersion(metrics, book.version);
      summary = { book: book.version, bidding: book.bidStrategyIds };
    } else {
      const store = old.store instanceof EmbeddedDeviceStore ? old.store : null;
      const { scorer, book } = await loadModelsAndStrategies(config, runtime.scoring, store, runtime.profile, runtime.thread, shared.models);
      engine.swap({ scorer, book });
      showModelVersions(metrics, scorer.modelVersion);
      showBookVersion(metrics, book.version);
      // A pool finishes the batches already at its workers before it stops.
      await (old.scorer as Scorer).close();
      summary = { models: scorer.modelVersion, book: book.version };
    }
  } catch (err) {
    metrics.reloads.inc({ target, result: 'refused' });
    throw err;
  } finally {
    delay.disable();
  }
  metrics.reloads.inc({ target, result: 'swapped' });
  const millis = Math.round(performance.now() - started);
  // The histogram records the time between its 1 ms timer's runs: the delay is what exceeds the 1 ms.
  const worstDelayMillis = Math.max(0, Math.round((delay.max / 1e6 - 1) * 10) / 10);
  log('info', 'reloaded', { thread: runtime.thread, target, millis, worstDelayMillis, ...summary });
  return { ...summary, millis, worstDelayMillis };
}
