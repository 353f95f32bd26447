import { getPriority } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import { ErrorLog } from './error-log.js';
import { HotCounter, HotHistogram } from './hot-metrics.js';

/**
 * Every Prometheus metric the engine exports, in one registry served on the admin port. Names follow prom-client's
 * conventions: snake_case, a unit suffix, `_total` for counters. Labels have bounded values only (media adapter
 * names, strategy ids from config, reasons from a fixed list).
 */

/** 25 us .. 25 ms: fine enough to read the 50 us .. 10 ms range that matters for a 2 ms budget. */
const LATENCY_BUCKETS_SECONDS = [
  0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.00125, 0.0015, 0.00175, 0.002,
  0.0025, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025,
];
const COEFFICIENT_BUCKETS = [0.2, 0.3, 0.5, 0.7, 0.85, 1, 1.15, 1.3, 1.5, 2, 3, 4, 5];

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * With `processMetrics` false (serving threads in app-per-thread mode) the process-wide default metrics are left
 * to the main thread, so that summing the threads' registries does not count the process several times.
 */
export function createMetrics(options: { processMetrics: boolean } = { processMetrics: true }) {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  const metrics = {
    registry,
    requests: new HotCounter(
      'rta_requests_total',
      'Bid requests answered, by media and outcome (take, a reject reason, ping, deadline_fallback).',
      ['media', 'outcome'] as const,
      registry,
    ),
    testRequests: new Counter({
      name: 'rta_test_requests_total',
      help: 'Joint-debugging (is_test) requests: answered normally, never learned from.',
      labelNames: ['media'] as const,
      registers: [registry],
    }),
    processingSeconds: new HotHistogram(
      'rta_request_processing_seconds',
      'Server-side time from the complete request body to the reply handed to the socket.',
      ['media'] as const,
      LATENCY_BUCKETS_SECONDS,
      registry,
    ),
    deadlineFallbacks: new Counter({
      name: 'rta_deadline_fallbacks_total',
      help: 'Requests whose scores were not back before the deadline and got the fallback decision.',
      labelNames: ['media'] as const,
      registers: [registry],
    }),
    rejectedInputs: new Counter({
      name: 'rta_rejected_inputs_total',
      help: 'Requests answered with a refusal, by reason: bad input (method_not_allowed, not_found, body_too_large, malformed_protobuf, ...), unauthorized on the admin port, internal_error (a 500).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    refusedDeviceIds: new Counter({
      name: 'rta_refused_device_ids_total',
      help: 'Device ids never used as lookup keys: flagged doubtful by the media, placeholders or not a 32-hex MD5.',
      labelNames: ['media'] as const,
      registers: [registry],
    }),
    requestErrors: new Counter({
      name: 'rta_request_errors_total',
      help: 'Exceptions thrown while deciding or answering a request, by pipeline stage; the request got the fallback (or a 500).',
      labelNames: ['stage'] as const,
      registers: [registry],
    }),
    errorLog: new ErrorLog(),
    closedConnections: new Counter({
      name: 'rta_closed_connections_total',
      help: 'Connections the server closed on a misbehaving peer, by reason (unread_replies: it stopped reading its replies).',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    abortedRequests: new Counter({
      name: 'rta_aborted_requests_total',
      help: 'Requests whose client went away before the reply; nothing was written to them.',
      registers: [registry],
    }),
    deviceLookups: new HotCounter('rta_device_lookups_total', 'Device profile lookups by result (known, unknown).', ['result'] as const, registry),
    strategyDecisions: new HotCounter(
      'rta_strategy_decisions_total',
      'Strategies that took a device, by strategy id.',
      ['strategy'] as const,
      registry,
    ),
    coefficients: new HotHistogram(
      'rta_bid_coefficient',
      'Bid coefficients returned, by strategy (media clamp them to 0.2..5.0; a healthy book centres near 1).',
      ['strategy'] as const,
      COEFFICIENT_BUCKETS,
      registry,
    ),
    experimentArms: new HotCounter(
      'rta_experiment_arm_decisions_total',
      'Strategy verdicts per experiment arm: eligible (past the score conditions), taken. One series per arm of the book.',
      ['experiment', 'arm', 'outcome'] as const,
      registry,
    ),
    decisionLogRecords: new HotCounter(
      'rta_decision_log_records_total',
      'Decision log records by result: logged, dropped_ring_full (every block still waiting for the disk), dropped_too_large.',
      ['result'] as const,
      registry,
    ),
    decisionLogWriteErrors: new Counter({
      name: 'rta_decision_log_write_errors_total',
      help: 'Decision log blocks that could not be written (disk full, permissions): their records are lost.',
      registers: [registry],
    }),
    scoringQueueDepth: new Gauge({
      name: 'rta_scoring_queue_depth',
      help: 'Scoring jobs waiting for or running on a worker thread.',
      aggregator: 'sum',
      registers: [registry],
    }),
    scoringUtilization: new Gauge({
      name: 'rta_scoring_pool_utilization_ratio',
      help: 'Share of time the scoring worker threads were busy (piscina utilization).',
      aggregator: 'average',
      registers: [registry],
    }),
    scoringBatchSize: new Gauge({
      name: 'rta_scoring_batch_size_mean',
      help: 'Mean requests per micro-batch sent to a scoring worker over the last second.',
      aggregator: 'average',
      registers: [registry],
    }),
    scoringErrors: new Counter({
      name: 'rta_scoring_errors_total',
      help: 'Scoring batches that failed on a worker; their requests got the fallback decision.',
      registers: [registry],
    }),
    modelInfo: new Gauge({
      name: 'rta_model_info',
      help: 'The model versions being served (value 1).',
      labelNames: ['model', 'version'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    bookInfo: new Gauge({
      name: 'rta_book_info',
      help: 'The strategy book version being served (value 1): its content hash, as in GET /books on the admin port.',
      labelNames: ['version'] as const,
      aggregator: 'max',
      registers: [registry],
    }),
    reloads: new Counter({
      name: 'rta_reloads_total',
      help: 'Hot reloads of models, strategies or devices, by result (swapped, refused: the old part kept serving).',
      labelNames: ['target', 'result'] as const,
      registers: [registry],
    }),
    devicesLoaded: new Gauge({
      name: 'rta_store_devices',
      help: 'Devices resident in the device store.',
      aggregator: 'max',
      registers: [registry],
    }),
    eventLoopDelay: eventLoopDelayGauge(registry),
    // Linux keeps a nice value per thread: the main thread lowers its own below the serving threads', and a serving
    // thread that replaced a dead one may be stuck at the main thread's (README, "Known limits").
    threadNice: new Gauge({
      name: 'rta_thread_nice',
      help: 'Nice value of the main thread and the highest of the serving threads: a serving thread at the main thread\'s value loses its core to the others.',
      labelNames: ['thread'] as const,
      aggregator: 'max',
      registers: [registry],
      collect() {
        this.set({ thread: options.processMetrics ? 'main' : 'serving' }, getPriority(0));
      },
    }),
    servingThreads: new Gauge({
      name: 'rta_serving_threads',
      help: 'Serving threads listening on the media port (app-per-thread mode).',
      registers: [registry],
    }),
    servingThreadDeaths: new Counter({
      name: 'rta_serving_thread_deaths_total',
      help: 'Serving threads that exited while serving, or whose replacement failed to start; each is replaced.',
      registers: [registry],
    }),
    ready: new Gauge({
      name: 'rta_ready',
      help: '1 once models, strategies and the device store are loaded (and every serving thread listens).',
      aggregator: 'min',
      registers: [registry],
    }),
  };
  // Known reasons start at 0, so a dashboard shows "none yet" rather than "no data".
  for (const reason of INPUT_REFUSAL_REASONS) metrics.rejectedInputs.labels(reason).inc(0);
  for (const stage of ['lookup', 'screen', 'score', 'decide', 'encode', 'route']) metrics.requestErrors.labels(stage).inc(0);
  metrics.closedConnections.labels('unread_replies').inc(0);
  for (const result of ['known', 'unknown']) metrics.deviceLookups.slot({ result });
  for (const result of ['logged', 'dropped_ring_full', 'dropped_too_large']) metrics.decisionLogRecords.slot({ result });
  return metrics;
}

const INPUT_REFUSAL_REASONS = [
  'method_not_allowed',
  'not_found',
  'body_too_large',
  'malformed_protobuf',
  'id_out_of_range',
  'invalid_json',
  'unauthorized',
  'forbidden_address',
  'invalid_request',
];

/**
 * Event-loop delay of the thread that owns this registry: the serving thread's own, which is what queues requests
 * (prom-client's nodejs_eventloop_lag_seconds only sees the main thread). Quantiles since the previous scrape;
 * across threads the worst one is reported.
 */
const SAMPLING_MS = 10;

function eventLoopDelayGauge(registry: Registry) {
  const histogram = monitorEventLoopDelay({ resolution: SAMPLING_MS });
  histogram.enable();
  // The histogram records the time between its timer's runs, so the sampling interval itself is taken off.
  const delaySeconds = (nanoseconds: number) => Math.max(0, nanoseconds / 1e9 - SAMPLING_MS / 1000);
  return new Gauge({
    name: 'rta_event_loop_delay_seconds',
    help: 'Event-loop delay of the serving thread(s) since the last scrape, by quantile (0.5, 0.99, 1 = max); the worst thread.',
    labelNames: ['quantile'] as const,
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.set({ quantile: '0.5' }, delaySeconds(histogram.percentile(50)));
      this.set({ quantile: '0.99' }, delaySeconds(histogram.percentile(99)));
      this.set({ quantile: '1' }, delaySeconds(histogram.max));
      histogram.reset();
    },
  });
}
