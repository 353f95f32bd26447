import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { readWindow } from '../../bench/lib/callgrind.js';
import { COST_CLASSES, STAGE_NAMES, type StageName } from '../../bench/lib/cost.js';
import {
  ALL_CLASSES,
  checkLoad,
  compareCost,
  decide,
  FIGURES,
  loadBaseline,
  loadGateConfig,
  writeBaseline,
  type CostFigures,
  type StageFigures,
} from '../../bench/lib/gate-decision.js';
import { spread } from '../../bench/lib/stats.js';

const reference = Object.fromEntries(FIGURES.map((name, i) => [name, 50_000 + i * 10_000])) as CostFigures;
const scaled = (factor: number, only?: string): CostFigures =>
  Object.fromEntries(Object.entries(reference).map(([name, value]) => [name, only === undefined || only === name ? value * factor : value])) as CostFigures;
const failing = (now: CostFigures) => compareCost(now, reference, 0.05).filter((c) => !c.passed).map((c) => c.name);

describe('compareCost', () => {
  test('passes an unchanged or cheaper build and one within the threshold', () => {
    expect(failing(reference)).toEqual([]);
    expect(failing(scaled(0.7))).toEqual([]);
    expect(failing(scaled(1.049))).toEqual([]);
  });

  test('fails every class that costs more than the threshold above its reference, and only those', () => {
    expect(failing(scaled(1.1))).toHaveLength(COST_CLASSES.length + 1);
    expect(failing(scaled(1.06, 'tencent-second'))).toEqual(['instructions per request, tencent-second']);
    expect(failing(scaled(1.06, ALL_CLASSES))).toEqual([`instructions per request, ${ALL_CLASSES}`]);
  });

  test('fails a class that was not counted', () => {
    expect(failing({ ...reference, ping: NaN })).toEqual(['instructions per request, ping']);
  });

  test('prints both figures and the change for every class', () => {
    const [first] = compareCost(scaled(1.1, 'tencent-known'), reference, 0.05);
    expect(first!.measured).toBe('55,000 against 50,000 (+10.00 %)');
    expect(first!.limit).toBe('<= +5 %');
  });
});

describe('checkLoad', () => {
  const thresholds = { maxInstructionIncrease: 0.05, maxServerP999Micros: 2000 };
  test('holds the mission budget on the median p99.9, and fails on any failed request', () => {
    expect(checkLoad({ serverP999Micros: spread([90, 3000, 120]), failedRequests: 0 }, thresholds).every((c) => c.passed)).toBe(true);
    expect(checkLoad({ serverP999Micros: spread([2500, 3000, 120]), failedRequests: 0 }, thresholds)[0]!.passed).toBe(false);
    expect(checkLoad({ serverP999Micros: spread([NaN]), failedRequests: 0 }, thresholds)[0]!.passed).toBe(false);
    expect(checkLoad({ serverP999Micros: spread([90]), failedRequests: 1 }, thresholds)[1]!.passed).toBe(false);
  });

  test('a decision passes only when every check does', () => {
    expect(decide([...compareCost(reference, reference, 0.05)]).passed).toBe(true);
    expect(decide([...compareCost(scaled(1.2, 'ping'), reference, 0.05)]).passed).toBe(false);
  });
});

describe('gate files', () => {
  test('the config and the baseline kept in the repo are valid, and the baseline covers every class', () => {
    const config = loadGateConfig(new URL('../../bench/gate.json', import.meta.url).pathname);
    expect(config.thresholds.maxInstructionIncrease).toBe(0.05);
    const baseline = loadBaseline(new URL('../../bench/baseline.json', import.meta.url).pathname);
    for (const name of FIGURES) expect(baseline.instructionsPerRequest[name]).toBeGreaterThan(1000);
  });

  test('refuses a config with a missing or out-of-range threshold, naming it', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'gate-config-')), 'gate.json');
    const valid = loadGateConfig(new URL('../../bench/gate.json', import.meta.url).pathname);
    writeFileSync(path, JSON.stringify({ ...valid, thresholds: { maxServerP999Micros: 2000 } }));
    expect(() => loadGateConfig(path)).toThrow(/thresholds\.maxInstructionIncrease/);
    writeFileSync(path, JSON.stringify({ ...valid, thresholds: { ...valid.thresholds, maxInstructionIncrease: 0 } }));
    expect(() => loadGateConfig(path)).toThrow(/thresholds\.maxInstructionIncrease/);
  });

  test('an accepted baseline is read back as written, with why it was accepted', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'gate-baseline-')), 'baseline.json');
    const accepted = { at: '2026-12-01T00:00:00.000Z', why: 'decision log on by default', onTopOf: 'abc', cpu: 'AMD EPYC', node: 'v20.20.2', valgrind: 'valgrind-3.19.0' };
    const stages = Object.fromEntries(
      COST_CLASSES.map((name, i) => [name, Object.fromEntries(STAGE_NAMES.map((stage, j) => [stage, i * 1000 + j + 0.4]))]),
    ) as StageFigures;
    writeBaseline(path, scaled(1.000_004), stages, accepted);
    const baseline = loadBaseline(path);
    expect(baseline.accepted).toEqual(accepted);
    expect(baseline.instructionsPerRequest).toEqual(reference);
    expect(baseline.stagesPerRequest!['tencent-second']['decision log' as StageName]).toBe(2005);
    writeFileSync(path, JSON.stringify({ ...baseline, instructionsPerRequest: { ...baseline.instructionsPerRequest, ping: undefined } }));
    expect(() => loadBaseline(path)).toThrow(/instructionsPerRequest\.ping/);
  });
});

describe('readWindow', () => {
  // The shape callgrind_annotate --inclusive=yes prints (valgrind 3.19), cut to the lines that matter.
  const annotated = [
    '--------------------------------------------------------------------------------',
    '51,783,077 (100.0%)  PROGRAM TOTALS',
    '--------------------------------------------------------------------------------',
    'Ir                  file:function',
    '51,331,405 (99.13%)  /build/deps/uv/src/unix/linux.c:uv__io_poll [/usr/bin/node]',
    '32,446,152 (62.66%)  ???:v8::internal::Compiler::CompileOptimized(v8::internal::Isolate*, v8::internal::Handle<v8::internal::JSFunction>) [/usr/bin/node]',
    ' 1,000,000 ( 1.93%)  ???:v8::internal::Compiler::CompileOptimized(v8::internal::Isolate*, v8::internal::Handle<v8::internal::JSFunction>)\'2 [/usr/bin/node]',
    ' 2,509,966 ( 4.85%)  ???:v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason) [/usr/bin/node]',
    '    47,099 ( 0.09%)  /build/deps/uv/src/timer.c:uv__run_timers [/usr/bin/node]',
    '       270 ( 0.00%)  /build/deps/uv/src/heap-inl.h:uv__run_timers',
  ].join('\n');

  test('takes the total and each group once, recursion and inlined copies left out', () => {
    const window = readWindow(annotated);
    expect(window).toMatchObject({ total: 51_783_077, compile: 32_446_152, gc: 2_509_966, timers: 47_099 });
    // Every function by name, the file prefix dropped; the recursive copy is not added in.
    expect(window.functions.get('uv__run_timers [/usr/bin/node]')).toBe(47_099);
    expect(window.functions.get('v8::internal::Compiler::CompileOptimized(v8::internal::Isolate*, v8::internal::Handle<v8::internal::JSFunction>) [/usr/bin/node]')).toBe(32_446_152);
  });

  test('refuses output without a total rather than counting zero', () => {
    expect(() => readWindow('Ir  file:function\n')).toThrow(/PROGRAM TOTALS/);
  });
});
