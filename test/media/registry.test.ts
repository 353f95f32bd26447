import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { MEDIA_MODULES, MEDIA_NAMES, mediaModule } from '../../src/media/registry.js';

/** The registry is the one list of media: the README's tables are checked against it, row for row. */

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('the media registry', () => {
  test('names and routes are unique; every module has its fixtures folder and a proto that names its messages', () => {
    expect(new Set(MEDIA_NAMES).size).toBe(MEDIA_MODULES.length);
    expect(new Set(MEDIA_MODULES.map((m) => m.path)).size).toBe(MEDIA_MODULES.length);
    for (const m of MEDIA_MODULES) {
      expect(m.path).toMatch(/^\/rta\/[a-z0-9-]+$/);
      expect(readFileSync(m.proto.file, 'utf8')).toContain(`message ${m.proto.request.split('.').pop()}`);
    }
    expect(() => mediaModule('toutiao')).toThrow(/no media module "toutiao" \(registered: tencent, tencent-sp, ocean, native\)/);
  });

  test("the README's route table lists exactly the registered media, each with its module's summary", () => {
    const rows = readme.split('\n').filter((line) => /^\| media[^|]*\| `POST \/rta\//.test(line));
    expect(rows).toEqual(MEDIA_MODULES.map((m) => `| media | \`POST ${m.path}\` | ${m.summary} |`));
  });

  test("the README's rta examples reach every media (tencent is the default), and name no other", () => {
    const named = [...readme.matchAll(/rta send --media ([a-z0-9-]+)/g)].map((m) => m[1]!);
    expect(new Set(named)).toEqual(new Set(MEDIA_NAMES.filter((name) => name !== 'tencent')));
    expect(readme).toMatch(/\| `rta send --os ios --idfa /);
  });

  test("the README's rules table states each module's rules", () => {
    const section = readme.slice(readme.indexOf('## Media modules'), readme.indexOf('## Tuning strategies'));
    const rows = section.split('\n').filter((line) => /^\| `[a-z0-9-]+` \|/.test(line));
    expect(rows).toEqual(
      MEDIA_MODULES.map(({ name, rules: r }) => `| \`${name}\` | ${r.coefficient.min}..${r.coefficient.max} | ${r.coefficient.decimals} | ${r.cpcFloorFen} | ${r.cacheSeconds.min}..${r.cacheSeconds.max} | ${r.declineStatus} |`),
    );
  });
});
