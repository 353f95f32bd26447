import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { decideGate, loadGateConfig, type GateFigures } from '../../bench/lib/gate-decision.js';
import { spread } from '../../bench/lib/stats.js';

const thresholds = { minEngineShareOfCeiling: 0.3, maxServerP99Micros: 800 };
const figures = (shares: number[], p99s: number[], failedRequests = 0): GateFigures => ({
  engineShareOfCeiling: spread(shares),
  serverP99Micros: spread(p99s),
  failedRequests,
});
const failing = (f: GateFigures) => decideGate(f, thresholds).checks.filter((c) => !c.passed).map((c) => c.name);

describe('decideGate', () => {
  test('passes when the medians are within the thresholds and nothing failed', () => {
    const decision = decideGate(figures([0.35, 0.29, 0.4], [500, 900, 600]), thresholds);
    expect(decision.passed).toBe(true);
    expect(decision.checks.every((c) => c.passed)).toBe(true);
  });

  test('judges medians, so one slow run alone does not fail the gate, two do', () => {
    expect(failing(figures([0.31, 0.1, 0.32], [500, 600, 700]))).toEqual([]);
    expect(failing(figures([0.31, 0.1, 0.2], [500, 600, 700]))).toEqual(['engine share of the bare-server ceiling (median)']);
    expect(failing(figures([0.4, 0.4, 0.4], [500, 900, 950]))).toEqual(['server-side p99 at the gate load (median)']);
  });

  test('fails on any failed request, and on a latency it could not measure', () => {
    expect(failing(figures([0.4], [500], 3))).toEqual(['errors, timeouts and non-2xx responses']);
    expect(failing(figures([0.4], [NaN]))).toEqual(['server-side p99 at the gate load (median)']);
  });

  test('states the measured figure and the threshold in every check', () => {
    const [share, p99] = decideGate(figures([0.2, 0.25, 0.3], [1200, 1300, 1400]), thresholds).checks;
    expect(share!.measured).toContain('25.0 %');
    expect(share!.limit).toBe('>= 30.0 %');
    expect(p99!.measured).toContain('1.30 ms');
    expect(p99!.limit).toBe('<= 800 us');
  });
});

describe('loadGateConfig', () => {
  test('accepts the gate config kept in the repo', () => {
    const config = loadGateConfig(new URL('../../bench/gate.json', import.meta.url).pathname);
    expect(config.thresholds.minEngineShareOfCeiling).toBeGreaterThan(0);
    expect(config.run.fraction).toBeLessThanOrEqual(1);
  });

  test('refuses a config with a missing or out-of-range threshold, naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gate-config-'));
    const path = join(dir, 'gate.json');
    const valid = loadGateConfig(new URL('../../bench/gate.json', import.meta.url).pathname);
    writeFileSync(path, JSON.stringify({ ...valid, thresholds: { maxServerP99Micros: 500 } }));
    expect(() => loadGateConfig(path)).toThrow(/thresholds\.minEngineShareOfCeiling/);
    writeFileSync(path, JSON.stringify({ ...valid, thresholds: { ...valid.thresholds, maxServerP99Micros: -1 } }));
    expect(() => loadGateConfig(path)).toThrow(/thresholds\.maxServerP99Micros/);
  });
});
