import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { REPO_ROOT } from '../support/engine-process.js';

/**
 * The alert rules in deploy/prometheus: valid for Prometheus, their promtool unit tests pass, and every metric they
 * read is one the engine exports (a renamed metric would leave an alert that never fires).
 */
const DIR = join(REPO_ROOT, 'deploy/prometheus');
const promtool = spawnSync('promtool', ['--version']).error ? null : 'promtool';
if (!promtool) console.warn('SKIPPED: alert rule tests: promtool is not installed (Debian package prometheus)');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('alert rules', () => {
  test.skipIf(!promtool)('promtool checks the rules and passes their unit tests (skipped loudly without promtool)', () => {
    const check = spawnSync('promtool', ['check', 'rules', 'rta-alerts.yml'], { cwd: DIR, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const unit = spawnSync('promtool', ['test', 'rules', 'rta-alerts.test.yml'], { cwd: DIR, encoding: 'utf8' });
    expect(unit.status, unit.stdout + unit.stderr).toBe(0);
  });

  test('every metric the rules read is defined by the engine', () => {
    const rules = readFileSync(join(DIR, 'rta-alerts.yml'), 'utf8');
    const used = new Set([...rules.matchAll(/\b(rta_[a-z_]+)/g)].map((m) => m[1]!));
    const source = sourceFiles(join(REPO_ROOT, 'src')).map((f) => readFileSync(f, 'utf8')).join('\n');
    expect([...used].filter((name) => !source.includes(`'${name}'`))).toEqual([]);
    expect(used.size).toBeGreaterThan(5);
  });
});
