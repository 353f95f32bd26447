import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Another revision of this repository, built in a temporary git worktree, so that it can be counted beside the
 * working tree in one run. Dependencies are shared when the lock files agree and installed afresh when they do
 * not; the demo data is made by that revision's own tool.
 */

function run(command: string, argv: string[], cwd: string): string {
  const result = spawnSync(command, argv, { cwd, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} failed in ${cwd}:\n${result.stdout}${result.stderr}`);
  return result.stdout.trim();
}

export interface BuiltRevision {
  root: string;
  commit: string;
  remove(): void;
}

export function buildRevision(repoRoot: string, revision: string, log: (message: string) => void): BuiltRevision {
  const commit = run('git', ['rev-parse', '--verify', `${revision}^{commit}`], repoRoot);
  const root = join(mkdtempSync(join(tmpdir(), 'rta-baseline-')), 'tree');
  run('git', ['worktree', 'add', '--detach', root, commit], repoRoot);
  const remove = () => {
    spawnSync('git', ['worktree', 'remove', '--force', root], { cwd: repoRoot });
    rmSync(join(root, '..'), { recursive: true, force: true });
  };
  try {
    const sameLock = readFileSync(join(root, 'package-lock.json'), 'utf8') === readFileSync(join(repoRoot, 'package-lock.json'), 'utf8');
    if (sameLock && existsSync(join(repoRoot, 'node_modules'))) symlinkSync(join(repoRoot, 'node_modules'), join(root, 'node_modules'));
    else {
      log(`${commit.slice(0, 10)}: its package-lock.json differs, npm ci`);
      run('npm', ['ci', '--no-audit', '--no-fund'], root);
    }
    log(`${commit.slice(0, 10)}: building in ${root}`);
    run('npm', ['run', 'build'], root);
    run('node', ['dist/tools/demo-data.js', '--if-missing'], root);
    return { root, commit, remove };
  } catch (err) {
    remove();
    throw err;
  }
}

export function headCommit(repoRoot: string): string {
  return run('git', ['rev-parse', 'HEAD'], repoRoot);
}

/** The newest commit that changed `path`. */
export function lastCommitOf(repoRoot: string, path: string): string {
  return run('git', ['log', '-1', '--format=%H', '--', path], repoRoot);
}

export function valgrindVersion(): string {
  return spawnSync('valgrind', ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? 'unknown';
}
