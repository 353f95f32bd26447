import { Counter, Gauge, type Registry } from 'prom-client';
import type { RedisDeviceStore, RedisStoreStats } from '../store/redis.js';

/**
 * The Redis store's metrics, registered only when the store is Redis. The store keeps running totals; the returned
 * function adds what happened since its previous call to the counters (called once a second).
 */
export function trackRedisStore(registry: Registry, store: RedisDeviceStore): () => void {
  const lookups = new Counter({
    name: 'rta_redis_lookups_total',
    help: 'Device lookups through the Redis store by how they were answered (cache_hit, negative_hit: from the in-process tier; redis: a round trip).',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: 'rta_redis_failures_total',
    help: 'Redis lookups decided as unknown devices by reason (timeout: over the budget, error, unavailable: not connected, shed: too many round trips pending), and corrupt values.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const roundTrips = new Counter({
    name: 'rta_redis_round_trips_total',
    help: 'Pipelined round trips to Redis (one per event-loop turn with lookups, per node in a cluster).',
    registers: [registry],
  });
  const connected = new Gauge({
    name: 'rta_redis_connected',
    help: '1 when every serving thread is connected to Redis.',
    aggregator: 'min',
    registers: [registry],
  });
  let seen: RedisStoreStats = { ...store.stats };
  const update = () => {
    const now = { ...store.stats };
    const delta = (field: keyof RedisStoreStats) => now[field] - seen[field];
    lookups.inc({ result: 'cache_hit' }, delta('cacheHits'));
    lookups.inc({ result: 'negative_hit' }, delta('negativeHits'));
    lookups.inc({ result: 'redis' }, delta('cacheMisses'));
    failures.inc({ reason: 'timeout' }, delta('timeouts'));
    failures.inc({ reason: 'error' }, delta('errors'));
    failures.inc({ reason: 'unavailable' }, delta('unavailable'));
    failures.inc({ reason: 'shed' }, delta('shed'));
    failures.inc({ reason: 'corrupt' }, delta('corrupt'));
    roundTrips.inc(delta('roundTrips'));
    connected.set(store.connected ? 1 : 0);
    seen = now;
  };
  update();
  return update;
}
