import { mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { MEDIA_MODULES, mediaModule } from '../../src/media/registry.js';

const REPO_ROOT = resolve(new URL('../../', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'rta-config-'));
let files = 0;

function configFile(content: unknown): string {
  const path = join(dir, `config-${files++}.json`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

/** The ConfigError a load fails with; any other kind of error fails the test. */
function configError(options: Parameters<typeof loadConfig>[0]): string {
  try {
    loadConfig(options);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('the config was accepted');
}

describe('loadConfig', () => {
  test("each media's rules default to its module's, a section may change one rule and keep the rest, and nonsense is refused by path", () => {
    const defaults = loadConfig({ env: {} }).media;
    for (const module of MEDIA_MODULES) expect(defaults[module.name]).toEqual(module.rules);
    const changed = loadConfig({ file: configFile({ media: { ocean: { coefficient: { max: 3 }, declineStatus: 204 } } }), env: {} }).media;
    expect(changed.ocean).toEqual({ ...mediaModule('ocean').rules, coefficient: { ...mediaModule('ocean').rules.coefficient, max: 3 }, declineStatus: 204 });
    expect(changed.tencent).toEqual(mediaModule('tencent').rules);
    expect(configError({ file: configFile({ media: { tencent: { coefficient: { min: 2, max: 1 } } } }), env: {} })).toContain('media.tencent.coefficient: no coefficient with that many decimals lies between min and max');
    expect(configError({ file: configFile({ media: { tencent: { coefficient: { min: 1.01, max: 1.09, decimals: 1 } } } }), env: {} })).toContain('media.tencent.coefficient: no coefficient');
    expect(configError({ file: configFile({ media: { tencent: { coefficient: { max: 8 } } } }), env: {} })).toContain('media.tencent.coefficient.max');
    expect(configError({ file: configFile({ media: { tencent: { declineStatus: 500 } } }), env: {} })).toContain('media.tencent.declineStatus');
    expect(configError({ file: configFile({ media: { toutiao: {} } }), env: {} })).toContain('toutiao');
  });

  test('each media route takes a token from RTA_<MEDIA>_TOKEN', () => {
    const config = loadConfig({ env: { 'RTA_TENCENT_SP_TOKEN': 'sp-secret-0123456789ab', RTA_OCEAN_TOKEN: 'ocean-secret-0123456789' } });
    expect(config.server.mediaAuth['tencent-sp']?.token).toBe('sp-secret-0123456789ab');
    expect(config.server.mediaAuth.ocean?.token).toBe('ocean-secret-0123456789');
  });

  test('attribution reads the decision log: switching the log off alone is refused, with both settings named', () => {
    expect(configError({ env: { RTA_DECISION_LOG: 'off' } })).toContain('attribution.enabled: attribution reads the decision log: set attribution.enabled false, or decisionLog.enabled true');
    expect(loadConfig({ env: { RTA_DECISION_LOG: 'off', RTA_ATTRIBUTION: 'off' } }).attribution.enabled).toBe(false);
  });

  test('online learning needs attribution and the embedded store: either missing is refused, naming both', () => {
    const wanted = 'learning.enabled: online learning labels attribution outcomes with profiles from the embedded store';
    expect(configError({ env: { RTA_LEARNING: 'on', RTA_STORE_KIND: 'redis', RTA_REDIS_URL: 'redis://127.0.0.1:6379' } })).toContain(wanted);
    expect(configError({ env: { RTA_LEARNING: 'on', RTA_ATTRIBUTION: 'off' } })).toContain(wanted);
    expect(loadConfig({ env: { RTA_LEARNING: 'on', RTA_LEARNING_DIR: 'tmp/learning' } }).learning).toMatchObject({ enabled: true, model: 'approve', dir: expect.stringMatching(/\/tmp\/learning$/) });
  });

  test('defaults, with paths resolved against the repo root', () => {
    const config = loadConfig({ env: {} });
    expect(config.server).toMatchObject({
      host: '0.0.0.0',
      port: 8080,
      adminHost: '127.0.0.1',
      adminPort: 8081,
      maxBodyBytes: 65536,
      mode: 'app-per-thread',
      appThreads: availableParallelism(),
      drainTimeoutMs: 5000,
    });
    expect(config.engine).toMatchObject({
      scoreDeadlineMicros: 1500,
      fallback: 'reject',
      deviceIdOrder: ['oaid_md5', 'imei_md5', 'idfa_md5', 'caid_md5', 'android_id_md5', 'mac_md5'],
    });
    expect(config.scoring).toMatchObject({ threads: 1, maxBatch: 64, manifest: join(REPO_ROOT, 'data/models/manifest.json'), watchManifest: true });
    expect(config.store).toMatchObject({
      kind: 'embedded',
      snapshot: join(REPO_ROOT, 'data/generated/devices.snapshot'),
      profileSchema: join(REPO_ROOT, 'data/profile-schema.json'),
    });
    expect(config.strategies).toBe(join(REPO_ROOT, 'data/strategies.json'));
    expect(config.strategyHistory).toBe(join(REPO_ROOT, 'data/book-history'));
  });

  test('does not read process.env when an env is given', () => {
    const saved = process.env.PORT;
    process.env.PORT = '1234';
    try {
      expect(loadConfig({ env: {} }).server.port).toBe(8080);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });

  test('file values replace defaults and leave the rest alone', () => {
    const file = configFile({
      server: { port: 9000, mode: 'scoring-pool' },
      engine: { fallback: 'neutral', deviceIdOrder: ['idfa_md5', 'oaid_md5'] },
      scoring: { threads: 3 },
      strategies: 'conf/my-strategies.json',
    });
    const config = loadConfig({ file, env: {} });
    expect(config.server).toMatchObject({ port: 9000, mode: 'scoring-pool', adminPort: 8081, host: '0.0.0.0' });
    expect(config.engine).toMatchObject({ scoreDeadlineMicros: 1500, fallback: 'neutral', deviceIdOrder: ['idfa_md5', 'oaid_md5'] });
    expect(config.scoring).toMatchObject({ threads: 3, maxBatch: 64 });
    // Relative paths are relative to the repo root, not to the config file or the working directory.
    expect(config.strategies).toBe(join(REPO_ROOT, 'conf/my-strategies.json'));
  });

  test('RTA_CONFIG names the file when no file option is given', () => {
    const file = configFile({ server: { adminPort: 9100 } });
    expect(loadConfig({ env: { RTA_CONFIG: file } }).server.adminPort).toBe(9100);
  });

  test('absolute paths are kept as they are', () => {
    const file = configFile({ store: { snapshot: '/var/lib/rta/devices.snapshot' }, scoring: { manifest: '/opt/models/manifest.json' } });
    const config = loadConfig({ file, env: {} });
    expect(config.store.snapshot).toBe('/var/lib/rta/devices.snapshot');
    expect(config.scoring.manifest).toBe('/opt/models/manifest.json');
  });

  test('environment overrides win over the file', () => {
    const file = configFile({
      server: { port: 9000, adminPort: 9001, mode: 'app-per-thread', host: '10.0.0.1' },
      engine: { scoreDeadlineMicros: 1000, fallback: 'reject' },
      scoring: { maxBatch: 8, manifest: 'a/manifest.json' },
    });
    const config = loadConfig({
      file,
      env: {
        PORT: '7000',
        ADMIN_PORT: '7001',
        HOST: '127.0.0.2',
        RTA_SERVER_MODE: 'scoring-pool',
        RTA_SCORE_DEADLINE_MICROS: '2500',
        RTA_FALLBACK: 'neutral',
        RTA_SCORING_MAX_BATCH: '32',
        RTA_MODEL_MANIFEST: 'b/manifest.json',
        RTA_DEVICE_SNAPSHOT: '/tmp/x.snapshot',
      },
    });
    expect(config.server).toMatchObject({ port: 7000, adminPort: 7001, host: '127.0.0.2', mode: 'scoring-pool' });
    expect(config.engine).toMatchObject({ scoreDeadlineMicros: 2500, fallback: 'neutral' });
    expect(config.scoring).toMatchObject({ maxBatch: 32, manifest: join(REPO_ROOT, 'b/manifest.json') });
    expect(config.store.snapshot).toBe('/tmp/x.snapshot');
  });

  test('an empty environment variable is ignored', () => {
    const file = configFile({ server: { port: 9000 } });
    expect(loadConfig({ file, env: { PORT: '' } }).server.port).toBe(9000);
  });

  test.each([
    ['PORT', 'abc'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['RTA_SCORE_DEADLINE_MICROS', '1e3'],
  ])('%s=%s is not a whole number', (name, value) => {
    expect(configError({ env: { [name]: value } })).toBe(`environment ${name}="${value}": expected a whole number`);
  });

  test('an environment value outside its range names the config path', () => {
    expect(configError({ env: { PORT: '70000' } })).toMatch(/^config \(environment\) is invalid:\n {2}server\.port: Too big.*65535/);
    expect(configError({ env: { RTA_SCORE_DEADLINE_MICROS: '50001' } })).toMatch(/^config \(environment\) is invalid:\n {2}engine\.scoreDeadlineMicros: Too big.*50000/);
  });

  test('an admin token is required off loopback or with adminAuth "always", and must be long enough', () => {
    expect(loadConfig({ env: {} }).server).toMatchObject({ adminHost: '127.0.0.1', adminAuth: 'off-loopback' });
    expect(loadConfig({ env: { ADMIN_HOST: '127.0.0.2' } }).server.adminToken).toBeUndefined();
    expect(configError({ env: { ADMIN_HOST: '0.0.0.0' } })).toMatch(/server\.adminToken: required when the admin port is bound off loopback/);
    expect(configError({ env: { RTA_ADMIN_AUTH: 'always' } })).toMatch(/server\.adminToken: required/);
    expect(configError({ env: { ADMIN_HOST: '0.0.0.0', RTA_ADMIN_TOKEN: 'short' } })).toMatch(/server\.adminToken: an admin token needs at least 16 characters/);
    expect(loadConfig({ env: { ADMIN_HOST: '0.0.0.0', RTA_ADMIN_TOKEN: 'x'.repeat(16) } }).server.adminToken).toBe('x'.repeat(16));
  });

  test('an invalid enum, from the environment or the file', () => {
    expect(configError({ env: { RTA_SERVER_MODE: 'fast' } })).toMatch(/^config \(environment\) is invalid:\n {2}server\.mode: .*"app-per-thread"\|"scoring-pool"/);
    const file = configFile({ engine: { deviceIdOrder: ['oaid_md5', 'raw_imei'] } });
    expect(configError({ file, env: {} })).toMatch(new RegExp(`^config \\(${file} \\+ environment\\) is invalid:\\n  engine\\.deviceIdOrder\\.1: .*oaid_md5`));
  });

  test('unknown keys are refused, at the top and inside a section', () => {
    const top = configFile({ sever: { port: 1 } });
    expect(configError({ file: top, env: {} })).toBe(`config (${top} + environment) is invalid:\n  (root): Unrecognized key: "sever"`);
    const inner = configFile({ server: { prot: 1 } });
    expect(configError({ file: inner, env: {} })).toBe(`config (${inner} + environment) is invalid:\n  server: Unrecognized key: "prot"`);
  });

  test('every problem is listed, not just the first', () => {
    const file = configFile({ server: { port: 'x' }, scoring: { threads: 0 } });
    const message = configError({ file, env: {} });
    expect(message).toContain('\n  server.port: ');
    expect(message).toContain('\n  scoring.threads: ');
  });

  test('a missing file', () => {
    const path = join(dir, 'nope.json');
    expect(configError({ file: path, env: {} })).toBe(`config file ${path}: ENOENT: no such file or directory, open '${path}'`);
  });

  test('a file that is not JSON', () => {
    const file = configFile('{ "server": { port: 1 } }');
    expect(configError({ file, env: {} })).toMatch(new RegExp(`^config file ${file}: not valid JSON: `));
  });

  test.each([['[]'], ['[{"server": {}}]'], ['null'], ['42'], ['"text"']])('a file holding %s is not a JSON object', (content) => {
    const file = configFile(content);
    expect(configError({ file, env: {} })).toBe(`config file ${file}: must hold a JSON object`);
  });

  // A section of the wrong type is refused on its own, but an environment override for that section assigns into
  // it: a bare TypeError ("Cannot create property 'port' on string 'oops'") instead of a ConfigError.
  test.each([['"oops"'], ['5'], ['true']])('a server section %s is refused with a ConfigError even when PORT is set', (section) => {
    const file = configFile(`{ "server": ${section} }`);
    expect(configError({ file, env: {} })).toMatch(/^config \(.*\) is invalid:\n {2}server: /);
    expect(configError({ file, env: { PORT: '9000' } })).toMatch(/^config \(.*\) is invalid:\n {2}server: /);
  });

  // `raw.server ??= {}` replaces a null section, so the same file is refused without PORT and accepted with it.
  test('a null section is refused whether or not an environment override targets it', () => {
    const file = configFile('{ "server": null }');
    expect(configError({ file, env: {} })).toMatch(/^config \(.*\) is invalid:\n {2}server: /);
    expect(configError({ file, env: { PORT: '9000' } })).toMatch(/^config \(.*\) is invalid:\n {2}server: /);
  });
});
