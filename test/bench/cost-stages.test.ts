import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { JitCodeMap, readWindow, type WindowCount } from '../../bench/lib/callgrind.js';
import { COST_STAGES, OTHER_JS, OUTSIDE_JS, stagesOf } from '../../bench/lib/cost.js';
import { REPO_ROOT, startEngine, DECISIONS_ENV, type EngineProcess } from '../support/engine-process.js';
import { loadPersonas, native, requestFor, send, tencent } from '../support/rta-client.js';

describe('JIT code named from the perf map', () => {
  const directory = mkdtempSync(join(tmpdir(), 'perf-map-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  const mapPath = join(directory, 'perf-1.map');
  writeFileSync(mapPath, ['3000 40 JS:*decode file:///x/dist/media/tencent/adapter.js:24:11', '1000 100 JS:^decode file:///x/dist/media/tencent/adapter.js:24:11', '2000 10 Builtins_Foo', ''].join('\n'));
  const annotated = [
    '1,000 (100.0%)  PROGRAM TOTALS',
    '  600 (60.0%)  ???:0x0000000000001010 [???]',
    '  100 (10.0%)  ???:0x0000000000003000 [???]',
    '   50 ( 5.0%)  ???:0x0000000000003000\'2 [???]',
    '   30 ( 3.0%)  ???:0x0000000000009000 [???]',
  ].join('\n');

  test('sums the pieces of code of one function, keeps unknown addresses as they are, skips recursion', () => {
    const window = readWindow(annotated, JitCodeMap.read(mapPath));
    expect(window.functions.get('JS:^decode file:///x/dist/media/tencent/adapter.js:24:11')).toBe(600);
    expect(window.functions.get('JS:*decode file:///x/dist/media/tencent/adapter.js:24:11')).toBe(100);
    expect(window.functions.get('0x0000000000009000 [???]')).toBe(30);
    expect([...window.functions.values()].reduce((a, b) => a + b, 0)).toBe(730);
  });

  test('an address past the end of the code before it has no name', () => {
    const map = JitCodeMap.read(mapPath)!;
    expect(map.nameOf(0x1063)).toMatch(/decode/);
    expect(map.nameOf(0x1100)).toBeNull();
    expect(map.nameOf(0x0fff)).toBeNull();
    expect(JitCodeMap.read(join(directory, 'absent.map'))).toBeNull();
  });
});

describe('stagesOf', () => {
  const window: WindowCount = {
    total: 100_000,
    compile: 3_000,
    gc: 2_000,
    timers: 1_000,
    functions: new Map([
      ['Builtins_JSEntry [/usr/bin/node]', 80_000],
      ['JS:*decode file:///x/dist/media/tencent/adapter.js:24:11', 15_000],
      ['JS:^decode file:///x/dist/media/native/adapter.js:23:11', 1_000],
      ['JS:*scoreRecord file:///x/dist/scoring/scorer.js:47:15', 19_000],
      ['JS:*scoreBatch file:///x/dist/scoring/scorer.js:60:15', 1_000],
      ['JS:*encode file:///x/dist/observe/decision-log/recorder.js:136:11', 11_000],
      ['JS:*record file:///x/dist/observe/decision-log/recorder.js:93:11', 11_400],
      ['void HttpResponseWrapper::res_tryEnd<0>(v8::FunctionCallbackInfo<v8::Value> const&) [uws.node]', 4_000],
      ['void HttpResponseWrapper::res_cork<0>(v8::FunctionCallbackInfo<v8::Value> const&) [uws.node]', 9_000],
    ]),
  };

  test('each stage is its entries summed; the two rests close the sum to the request figure', () => {
    const stages = stagesOf(window);
    expect(stages.decode).toBe(16_000);
    expect(stages.scoring).toBe(20_000);
    expect(stages['decision log']).toBe(11_000);
    expect(stages['uWS calls (headers, reply)']).toBe(4_000);
    expect(stages[OUTSIDE_JS]).toBe(20_000);
    // JSEntry less compiling, GC, timers and the named stages; record, the log's entry point, is not counted on
    // top of the encode inside it, nor cork on top of the JavaScript it calls.
    expect(stages[OTHER_JS]).toBe(80_000 - 6_000 - 51_000);
    expect(stages['strategies: screen']).toBe(0);
    expect(stages.encode).toBe(0);
  });
});

const NM_MISSING = spawnSync('nm', ['--version']).error !== undefined;
if (NM_MISSING) console.warn('SKIPPING the uWS stage check in cost-stages.test.ts: nm is not installed (Debian package binutils)');

/**
 * The stages are found by function names: a rename in the engine would silently move a stage's instructions to
 * "other JavaScript". The real engine, run with the perf map on, must have code for every JavaScript entry, and the
 * uWebSockets.js binary must export the wrappers the last stage names.
 */
describe('every stage names code the engine has', () => {
  let engine: EngineProcess;
  beforeAll(async () => {
    engine = await startEngine({ ...DECISIONS_ENV, RTA_APP_THREADS: '1', NODE_OPTIONS: '--perf-basic-prof' });
  });
  afterAll(() => engine.stop());

  test('the JavaScript stages, after the engine served each protocol', async () => {
    const personas = loadPersonas();
    // Enough requests that V8 compiles the hot functions to machine code, which is what the map lists.
    for (let i = 0; i < 300; i++) {
      const device = personas.prime_prospect[i % personas.prime_prospect.length]!;
      // send() throws on anything but a 200.
      await send(engine, tencent, requestFor(device));
      await send(engine, native, requestFor(device));
    }
    const names = readFileSync(`/tmp/perf-${engine.child.pid}.map`, 'utf8').split('\n').map((line) => line.split(' ').slice(2).join(' '));
    rmSync(`/tmp/perf-${engine.child.pid}.map`, { force: true });
    for (const { stage, entries } of COST_STAGES.filter((s) => s.stage !== 'uWS calls (headers, reply)')) {
      expect(names.some((name) => entries.some((entry) => entry.test(name))), `${stage}: ${entries.join(' or ')}`).toBe(true);
    }
  });

  test.skipIf(NM_MISSING)('the uWebSockets.js wrappers', () => {
    const nm = spawnSync('nm', ['-DC', join(REPO_ROOT, 'node_modules/uWebSockets.js/binaries/uws_linux_x64_115.node')], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    expect(nm.status).toBe(0);
    const symbols = nm.stdout.split('\n').map((line) => line.split(' ').slice(2).join(' '));
    const [uws] = COST_STAGES.filter((s) => s.stage === 'uWS calls (headers, reply)');
    for (const wrapper of ['res_tryEnd', 'res_writeHeader', 'res_writeStatus', 'req_getHeader']) {
      expect(symbols.some((name) => name.includes(`::${wrapper}<`) && uws!.entries.some((entry) => entry.test(name))), wrapper).toBe(true);
    }
  });
});
