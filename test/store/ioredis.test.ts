import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';

/** Whether String.prototype has fast properties in V8 after importing `module` in a fresh Node process. */
function stringPrototypeFastAfter(module: string): boolean {
  const script = `await import(${JSON.stringify(module)}); console.log(%HasFastProperties(String.prototype));`;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
  return out.trim() === 'true';
}

describe('src/store/ioredis.ts', () => {
  test('ioredis alone leaves String.prototype slow (if this fails, V8 or ioredis changed and the workaround can go)', () => {
    expect(stringPrototypeFastAfter('ioredis')).toBe(false);
  });

  test('the engine, which loads ioredis with its config, keeps String.prototype fast', () => {
    expect(stringPrototypeFastAfter('./src/config.ts')).toBe(true);
    expect(stringPrototypeFastAfter('./src/server/boot.ts')).toBe(true);
  });
});
