import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEVICE_ID_KIND_NAMES } from './engine/types.js';
import { MEDIA_MODULES } from './media/registry.js';
import { mediaRulesSchema } from './media/rules.js';
import { exactlyOneTarget, redisConnectionShape } from './store/redis-client.js';
import { redisStoreOptionsSchema } from './store/redis.js';

/**
 * Engine configuration: one validated object, built from defaults, an optional JSON file (`--config FILE` or
 * RTA_CONFIG) and a few environment overrides. Every number an operator tunes lives here, with its default.
 */

const REPO_ROOT = new URL('../', import.meta.url).pathname;
const fromRoot = (path: string) => resolve(REPO_ROOT, path);

const port = z.number().int().min(0).max(65535);
const idKind = z.enum(Object.values(DEVICE_ID_KIND_NAMES) as [string, ...string[]]);

export /** "10.1.0.0/16", "2001:db8::/32" or a single address. */
const network = z.string().refine(
  (text) => {
    const [address, prefix, ...rest] = text.split('/');
    const family = isIP(address!);
    if (family === 0 || rest.length > 0) return false;
    return prefix === undefined || (/^\d+$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
  },
  { error: 'expected an IP address or a network such as 10.1.0.0/16' },
);

const mediaAuthSchema = z
  .object({
    /** A secret shared with the media: give it by environment (RTA_<MEDIA>_TOKEN, e.g. RTA_TENCENT_SP_TOKEN). */
    token: z.string().min(16, 'a media token needs at least 16 characters').optional(),
    /** `header`: sent as X-RTA-Token; `path`: the route becomes /rta/<media>/<token>, for media that cannot set headers. */
    tokenIn: z.enum(['header', 'path']).default('header'),
    /** Source networks allowed to call this route; any other address is refused before its body is read. */
    allowFrom: z.array(network).min(1).optional(),
  })
  .strict()
  .refine((auth) => auth.token !== undefined || auth.allowFrom !== undefined, { error: 'give a token, allowFrom, or both' });

const configSchema = z
  .object({
    server: z
      .object({
        host: z.string().default('0.0.0.0'),
        port: port.default(8080),
        adminHost: z.string().default('127.0.0.1'),
        adminPort: port.default(8081),
        /**
         * Bearer token every admin route requires (`Authorization: Bearer <token>`) when the admin port is bound off
         * loopback, or always with `adminAuth: "always"`. A secret: give it by environment (RTA_ADMIN_TOKEN).
         */
        adminToken: z.string().min(16, 'an admin token needs at least 16 characters').optional(),
        adminAuth: z.enum(['off-loopback', 'always']).default('off-loopback'),
        /** Optional access control per media route: a shared token, an allow-list of source networks, or both. */
        mediaAuth: z
          .object(Object.fromEntries(MEDIA_MODULES.map((m) => [m.name, mediaAuthSchema.optional()])))
          .strict()
          .prefault({}),
        /** Larger bodies get 413 and the connection is closed. */
        maxBodyBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
        /**
         * `app-per-thread`: one uWebSockets.js app per serving thread, all on the same port (the kernel spreads
         * connections), each scoring inline. `scoring-pool`: one I/O thread handing micro-batches to a piscina pool.
         * See the README for the measurements behind the default.
         */
        mode: z.enum(['app-per-thread', 'scoring-pool']).default('app-per-thread'),
        /** Serving threads in app-per-thread mode. */
        appThreads: z.number().int().min(1).max(256).default(availableParallelism()),
        /**
         * App-per-thread mode on Linux: the main thread's nice value once the serving threads run, which keep the
         * process's own (a value at or below that, 0 say, leaves the main thread there too).
         * It shares the cores with them, and its work (attribution reading the decision log, controllers, admin,
         * scrapes) can wait while theirs cannot: at the same priority its bursts held requests past the scoring
         * deadline. Threads it starts later (model preparation, the learner) inherit it. See README, "Threading".
         */
        mainThreadNice: z.number().int().min(0).max(19).default(19),
        /**
         * Load shedding: a request whose serving thread has already spent this long on the current event-loop turn
         * waited at least that long behind the turn's other requests, so it is answered at once with the shed answer
         * (a reject, not scored) instead of joining the queue. 0 switches shedding off. See README, "Overload".
         */
        shedAfterMicros: z.number().int().min(0).max(1_000_000).default(1_000),
        /** On SIGTERM, how long in-flight requests may take before the process exits anyway. */
        drainTimeoutMs: z.number().int().min(0).max(60_000).default(5_000),
        /** Larger admin bodies (a strategy book sent to POST /books) get 413. */
        adminMaxBodyBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(4 * 1024 * 1024),
      })
      .strict()
      .prefault({})
      .refine((server) => server.adminToken !== undefined || !adminNeedsToken(server), {
        message: 'required when the admin port is bound off loopback or adminAuth is "always" (set RTA_ADMIN_TOKEN)',
        path: ['adminToken'],
      }),
    engine: z
      .object({
        /**
         * Scores must be back this long after the request body arrived, or the fallback answers. A value below the
         * scoring time (1 us) makes every scored request fall back: a way to rehearse the fallback. 0 switches the
         * deadline off, for counting instructions under valgrind (where any deadline fires and changes the work done);
         * never in production.
         */
        scoreDeadlineMicros: z.number().int().min(0).max(50_000).default(1_500),
        /** What a request whose scores missed the deadline gets: a reject (code 6) or a neutral take (coefficient 1.0). */
        fallback: z.enum(['reject', 'neutral']).default('reject'),
        /** Device ids are tried as lookup keys in this order; the first one found in the store wins. */
        deviceIdOrder: z.array(idKind).min(1).default(['oaid_md5', 'imei_md5', 'idfa_md5', 'caid_md5', 'android_id_md5', 'mac_md5']),
      })
      .strict()
      .prefault({}),
    scoring: z
      .object({
        threads: z.number().int().min(1).max(64).default(1),
        /** A micro-batch is sent to a worker when it reaches this size, or at the end of the event-loop turn. */
        maxBatch: z.number().int().min(1).max(4096).default(64),
        manifest: z.string().default('data/models/manifest.json'),
        /** Reload the models (and recompile the strategies) when the manifest file changes. */
        watchManifest: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    store: z
      .object({
        /** `embedded`: every profile in memory from a snapshot. `redis`: profiles in Redis, loaded by load-redis. */
        kind: z.enum(['embedded', 'redis']).default('embedded'),
        snapshot: z.string().default('data/generated/devices.snapshot'),
        profileSchema: z.string().default('data/profile-schema.json'),
        redis: redisStoreOptionsSchema.optional(),
      })
      .strict()
      .prefault({})
      .refine((store) => store.kind !== 'redis' || store.redis !== undefined, {
        message: 'store.kind "redis" needs a store.redis block (at least { "url": "redis://host:port" })',
        path: ['redis'],
      }),
    /** Per media, the rules its platform applies to an answer (media/module.ts); each defaults to the module's. */
    media: z
      .object(Object.fromEntries(MEDIA_MODULES.map((m) => [m.name, mediaRulesSchema(m.rules)])))
      .strict()
      .prefault({}),
    strategies: z.string().default('data/strategies.json'),
    /** Every version of the strategy book and who applied it when, for audit and rollback (strategy/versions.ts). */
    strategyHistory: z.string().default('data/book-history'),
    /** One record per decision (proto/log/decision_log.proto), written per serving thread off the request path. */
    decisionLog: z
      .object({
        enabled: z.boolean().default(true),
        dir: z.string().default('data/decision-log'),
        /** A thread's records are written a block at a time; a record that finds every block full is dropped, counted. */
        blockBytes: z.number().int().min(16_384).max(16_777_216).default(262_144),
        blocks: z.number().int().min(2).max(1024).default(16),
        /** A block is written when full or after this long, whichever comes first. */
        flushMillis: z.number().int().min(10).max(60_000).default(500),
        /** A file is closed and a new one started past this size. */
        maxFileBytes: z.number().int().min(65_536).default(67_108_864),
        /** The node's files together; the oldest are deleted past it (shared evenly by the serving threads). */
        maxTotalBytes: z.number().int().min(65_536).default(1_073_741_824),
        /** Share of decisions whose raw request and reply bytes are kept in the record. */
        rawSampleRate: z.number().min(0).max(1).default(0.001),
      })
      .strict()
      .prefault({})
      .refine((log) => log.maxFileBytes <= log.maxTotalBytes, { message: 'maxFileBytes must not exceed maxTotalBytes', path: ['maxFileBytes'] }),
    /**
     * Outcome events (POST /events) joined to the decisions that led to them, through the decision log (attribution/).
     * Needs decisionLog.enabled.
     */
    attribution: z
      .object({
        enabled: z.boolean().default(true),
        /** Joined events are kept here (JSON Lines, one file per day), so a restart rebuilds the results. */
        dir: z.string().default('data/attribution'),
        /** Events this long after their decision are dropped, counted (late). */
        windowDays: z.number().min(1 / 24).max(90).default(7),
        /**
         * Taken decisions remembered in this process (about 160 bytes each, README "Attribution"); past it the
         * oldest are forgotten, counted, and their events come back unmatched.
         */
        maxDecisions: z.number().int().min(1000).max(50_000_000).default(1_000_000),
        /** How often the decision log is read for new decisions (a POST /events also reads it first). */
        followMillis: z.number().int().min(10).max(60_000).default(1_000),
        /** The model whose score at decision time says how risky an approved customer looked. */
        riskModel: z.string().min(1).default('risk'),
        /** An approved customer whose risk score was below this counts as approved with low predicted risk. */
        lowRiskBelow: z.number().min(0).max(1).default(0.05),
        /** Rows of results (strategy x arm x creative x book version) kept; further ones are summed into one overflow row. */
        maxResultRows: z.number().int().min(100).max(10_000_000).default(100_000),
        /**
         * With several engine nodes: taken decisions in Redis, shared by all, so an event posted to any node joins
         * the decision of whichever node made it (attribution/redis-decisions.ts); maxDecisions is then unused.
         */
        redis: z
          .object({ ...redisConnectionShape, keyPrefix: z.string().min(1).default('rta:attribution:') })
          .strict()
          .superRefine(exactlyOneTarget)
          .optional(),
      })
      .strict()
      .prefault({}),
    /** Online learning of one logistic model from joined outcomes (learning/online-learning.ts). */
    learning: z
      .object({
        /** Off until switched on: learns, and publishes on its schedule; POST /learning/off stops the schedule only. */
        enabled: z.boolean().default(false),
        /** The manifest's logistic-json model it learns: approve, P(approved | applied), from applications and approvals. */
        model: z.string().min(1).default('approve'),
        intervalMinutes: z.number().min(1).max(24 * 60).default(60),
        /** An application without its approval this long after it came is a negative example. */
        labelAfterSeconds: z.number().min(1).max(30 * 86_400).default(86_400),
        /** New examples since the last published version below which no new version is published. */
        minExamples: z.number().int().min(1).default(200),
        /** Applications waiting for their label, at most (the oldest go first). */
        maxPending: z.number().int().min(100).max(10_000_000).default(100_000),
        /** Published versions: each a model file, a manifest and a line of figures in versions.jsonl. */
        dir: z.string().default('data/learning'),
        ftrl: z
          .object({
            alpha: z.number().positive().default(0.05),
            beta: z.number().min(0).default(1),
            l1: z.number().min(0).default(1),
            l2: z.number().min(0).default(1),
            maxCorrection: z.number().positive().max(10).default(2),
            /** Most recent examples on which the learned model and the one in service are compared. */
            holdout: z.number().int().min(50).max(1_000_000).default(2000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Automatic actions on the results of attribution; each one a new book version, undone like a person's. */
    controllers: z
      .object({
        bidTuning: z
          .object({
            /** Off until a person switches it on (here, or POST /controllers/bid-tuning/on). */
            enabled: z.boolean().default(false),
            intervalMinutes: z.number().min(1).max(24 * 60).default(60),
            /** How much of the gap to the target one step closes, on a log scale, before maxStep limits it. */
            gain: z.number().gt(0).max(1).default(0.5),
          })
          .strict()
          .prefault({}),
        /** Creative shares by Thompson sampling, for strategies with creativeSampling (controllers/creative-sampling.ts). */
        creatives: z
          .object({
            /** Off until a person switches it on (here, or POST /controllers/creatives/on). */
            enabled: z.boolean().default(false),
            intervalMinutes: z.number().min(1).max(24 * 60).default(60),
            /** Posterior draws per look: a share moves by about 1/sqrt(draws) from chance alone. */
            draws: z.number().int().min(100).max(100_000).default(10_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .refine((config) => !config.controllers.bidTuning.enabled || config.attribution.enabled, {
    message: 'bid tuning acts on attribution results: switch attribution on',
    path: ['controllers', 'bidTuning', 'enabled'],
  })
  .refine((config) => !config.learning.enabled || (config.attribution.enabled && config.store.kind === 'embedded'), {
    message: 'online learning labels attribution outcomes with profiles from the embedded store: switch attribution on and use store.kind "embedded"',
    path: ['learning', 'enabled'],
  })
  .refine((config) => config.learning.labelAfterSeconds < config.attribution.windowDays * 86_400, {
    message: 'an approval later than attribution.windowDays is dropped as late: learning.labelAfterSeconds must be shorter than the window',
    path: ['learning', 'labelAfterSeconds'],
  })
  .refine((config) => !config.controllers.creatives.enabled || config.attribution.enabled, {
    message: 'creative sampling acts on attribution results: switch attribution on',
    path: ['controllers', 'creatives', 'enabled'],
  })
  .refine((config) => !config.attribution.enabled || config.decisionLog.enabled, {
    message: 'attribution reads the decision log: set attribution.enabled false, or decisionLog.enabled true',
    path: ['attribution', 'enabled'],
  });

export type Config = z.infer<typeof configSchema>;

/** Whether the admin port asks for the bearer token: always, or whenever it listens beyond loopback. */
export function adminNeedsToken(server: { adminHost: string; adminAuth: 'off-loopback' | 'always' }): boolean {
  const loopback = server.adminHost === 'localhost' || server.adminHost === '::1' || /^127\.\d+\.\d+\.\d+$/.test(server.adminHost);
  return server.adminAuth === 'always' || !loopback;
}

/** Environment variables that override one config path each. */
const ENV_OVERRIDES: Record<string, { path: string[]; kind: 'int' | 'number' | 'boolean' | 'string' }> = {
  HOST: { path: ['server', 'host'], kind: 'string' },
  PORT: { path: ['server', 'port'], kind: 'int' },
  ADMIN_HOST: { path: ['server', 'adminHost'], kind: 'string' },
  ADMIN_PORT: { path: ['server', 'adminPort'], kind: 'int' },
  RTA_ADMIN_TOKEN: { path: ['server', 'adminToken'], kind: 'string' },
  RTA_ADMIN_AUTH: { path: ['server', 'adminAuth'], kind: 'string' },
  ...Object.fromEntries(
    MEDIA_MODULES.map((m) => [`RTA_${m.name.toUpperCase().replace(/-/g, '_')}_TOKEN`, { path: ['server', 'mediaAuth', m.name, 'token'], kind: 'string' as const }]),
  ),
  RTA_SERVER_MODE: { path: ['server', 'mode'], kind: 'string' },
  RTA_APP_THREADS: { path: ['server', 'appThreads'], kind: 'int' },
  RTA_MAIN_THREAD_NICE: { path: ['server', 'mainThreadNice'], kind: 'int' },
  RTA_SHED_AFTER_MICROS: { path: ['server', 'shedAfterMicros'], kind: 'int' },
  RTA_MAX_BODY_BYTES: { path: ['server', 'maxBodyBytes'], kind: 'int' },
  RTA_SCORE_DEADLINE_MICROS: { path: ['engine', 'scoreDeadlineMicros'], kind: 'int' },
  RTA_FALLBACK: { path: ['engine', 'fallback'], kind: 'string' },
  RTA_SCORING_THREADS: { path: ['scoring', 'threads'], kind: 'int' },
  RTA_SCORING_MAX_BATCH: { path: ['scoring', 'maxBatch'], kind: 'int' },
  RTA_MODEL_MANIFEST: { path: ['scoring', 'manifest'], kind: 'string' },
  RTA_DEVICE_SNAPSHOT: { path: ['store', 'snapshot'], kind: 'string' },
  RTA_STORE_KIND: { path: ['store', 'kind'], kind: 'string' },
  RTA_REDIS_URL: { path: ['store', 'redis', 'url'], kind: 'string' },
  RTA_STRATEGY_HISTORY: { path: ['strategyHistory'], kind: 'string' },
  RTA_DECISION_LOG: { path: ['decisionLog', 'enabled'], kind: 'boolean' },
  RTA_DECISION_LOG_DIR: { path: ['decisionLog', 'dir'], kind: 'string' },
  RTA_DECISION_LOG_RAW_SAMPLE: { path: ['decisionLog', 'rawSampleRate'], kind: 'number' },
  RTA_DECISION_LOG_FLUSH_MS: { path: ['decisionLog', 'flushMillis'], kind: 'number' },
  RTA_ATTRIBUTION: { path: ['attribution', 'enabled'], kind: 'boolean' },
  RTA_BID_TUNING: { path: ['controllers', 'bidTuning', 'enabled'], kind: 'boolean' },
  RTA_CREATIVE_SAMPLING: { path: ['controllers', 'creatives', 'enabled'], kind: 'boolean' },
  RTA_LEARNING: { path: ['learning', 'enabled'], kind: 'boolean' },
  RTA_LEARNING_DIR: { path: ['learning', 'dir'], kind: 'string' },
  RTA_ATTRIBUTION_DIR: { path: ['attribution', 'dir'], kind: 'string' },
  RTA_ATTRIBUTION_MAX_DECISIONS: { path: ['attribution', 'maxDecisions'], kind: 'int' },
  RTA_ATTRIBUTION_REDIS_URL: { path: ['attribution', 'redis', 'url'], kind: 'string' },
};

/** Sets raw[a][b]...= value, creating missing sections; a section of the wrong type is left for the schema to refuse. */
function setPath(raw: Record<string, unknown>, path: string[], value: unknown): void {
  let section: unknown = raw;
  for (const key of path.slice(0, -1)) {
    const holder = section as Record<string, unknown>;
    if (!(key in holder)) holder[key] = {};
    section = holder[key];
    if (typeof section !== 'object' || section === null || Array.isArray(section)) return;
  }
  (section as Record<string, unknown>)[path[path.length - 1]!] = value;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function loadConfig(options: { file?: string | undefined; env?: NodeJS.ProcessEnv } = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.RTA_CONFIG;
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`config file ${file}: ${(err as Error).message}`);
    }
    try {
      raw = JSON.parse(text) as typeof raw;
    } catch (err) {
      throw new ConfigError(`config file ${file}: not valid JSON: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`config file ${file}: must hold a JSON object`);
  }
  for (const [name, { path, kind }] of Object.entries(ENV_OVERRIDES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    let parsed: string | number | boolean = value;
    if (kind === 'int') {
      if (!/^\d+$/.test(value)) throw new ConfigError(`environment ${name}="${value}": expected a whole number`);
      parsed = Number(value);
    } else if (kind === 'number') {
      if (!/^\d+(\.\d+)?(e-?\d+)?$/.test(value)) throw new ConfigError(`environment ${name}="${value}": expected a number`);
      parsed = Number(value);
    } else if (kind === 'boolean') {
      if (value !== 'on' && value !== 'off') throw new ConfigError(`environment ${name}="${value}": expected on or off`);
      parsed = value === 'on';
    }
    setPath(raw, path, parsed);
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const where = file ? `config (${file} + environment)` : 'config (environment)';
    const lines = result.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new ConfigError(`${where} is invalid:\n${lines.join('\n')}`);
  }
  const config = result.data;
  config.scoring.manifest = fromRoot(config.scoring.manifest);
  config.store.snapshot = fromRoot(config.store.snapshot);
  config.store.profileSchema = fromRoot(config.store.profileSchema);
  config.strategies = fromRoot(config.strategies);
  config.strategyHistory = fromRoot(config.strategyHistory);
  config.decisionLog.dir = fromRoot(config.decisionLog.dir);
  config.learning.dir = fromRoot(config.learning.dir);
  return config;
}
