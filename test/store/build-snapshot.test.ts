import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { DEVICE_KEY_BYTES, parseDeviceKeyHex } from '../../src/store/device-key.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema, readField } from '../../src/store/profile-schema.js';
import { loadSnapshot } from '../../src/store/snapshot.js';
import { buildSnapshot } from '../../src/tools/build-snapshot.js';

const schema = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);
const dir = mkdtempSync(join(tmpdir(), 'build-snapshot-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const md5 = (raw: string): string => createHash('md5').update(raw).digest('hex');
const REPO = fileURLToPath(new URL('../../', import.meta.url));

function lookup(path: string, hex: string): { offset: number; read: (field: string) => number } {
  const { store } = loadSnapshot(path, schema);
  const key = new Uint8Array(DEVICE_KEY_BYTES);
  parseDeviceKeyHex(hex, key);
  const offset = store.find(key, 0);
  return { offset, read: (field) => readField(store.records, offset, schema.field(field)) };
}

const JSONL_LINES = [
  /* 1 */ JSON.stringify({ oaid_md5: md5('oaid-a'), imei_md5: md5('imei-a'), flags: ['registered', 'applied'], credit_band: 2, income_score: 0.75 }),
  /* 2 */ JSON.stringify({ idfa_md5: md5('IDFA-B'), credit_band: null, multi_lender_count: 0 }),
  /* 3 */ '',
  /* 4 */ JSON.stringify({ oaid_md5: md5('c'), credit_band: 300 }),
  /* 5 */ JSON.stringify({ oaid_md5: md5('d'), multi_lender_count: 255 }),
  /* 6 */ JSON.stringify({ oaid_md5: md5('e'), imei_md5: md5('imei-a') }),
  /* 7 */ JSON.stringify({ credit_band: 1 }),
  /* 8 */ JSON.stringify({ oaid_md5: 'xyz' }),
  /* 9 */ JSON.stringify({ oaid_md5: md5('f'), flags: ['registered', 'vip'] }),
  /* 10 */ '{"oaid_md5": ',
  /* 11 */ JSON.stringify({ oaid_md5: md5('g'), credit_bnd: 1 }),
  /* 12 */ JSON.stringify({ oaid_md5: md5('') }),
  /* 13 */ JSON.stringify({ oaid_md5: md5('h'), days_since_last_active: 2.5 }),
  /* 14 */ JSON.stringify({ caid_md5: md5('caid-i').toUpperCase(), region_tier: 3, income_score: 1e39 }),
  /* 15 */ JSON.stringify({ caid_md5: md5('caid-j'), region_tier: 5, ltv_prior_yuan: 1200.5 }),
];
const EXPECTED_JSONL_BAD: [number, RegExp][] = [
  [4, /^credit_band must be an integer in 1\.\.255 \(0 marks it missing\), got 300$/],
  [5, /^multi_lender_count must be an integer in 0\.\.254 \(255 marks it missing\), got 255$/],
  [6, new RegExp(`^imei_md5 ${md5('imei-a')} already belongs to the device on line 1$`)],
  [7, /^no device key \(need at least one of oaid_md5, imei_md5/],
  [8, /^oaid_md5 "xyz" is not a 32-digit hex MD5$/],
  [9, /^unknown flag "vip" in flags \(known: registered, applied/],
  [10, /^not valid JSON/],
  [11, /^unknown property "credit_bnd"/],
  [12, /placeholder id/],
  [13, /^days_since_last_active must be an integer in 0\.\.65534 .*got 2\.5$/],
  [14, /^income_score must be a finite 32-bit float, got 1e\+39$/],
];

describe('build-snapshot', () => {
  const jsonl = join(dir, 'devices.jsonl');
  writeFileSync(jsonl, `${JSONL_LINES.join('\n')}\n`);

  test('JSON Lines: reports every bad row with its line and reason, and writes nothing by default', async () => {
    const output = join(dir, 'refused.snapshot');
    const report = await buildSnapshot({ input: jsonl, output, schema });
    expect(report.snapshot).toBeUndefined();
    expect(existsSync(output)).toBe(false);
    expect(report.badRowCount).toBe(EXPECTED_JSONL_BAD.length);
    expect(report.devices).toBe(3);
    expect(report.badRows.map((bad) => bad.line)).toEqual(EXPECTED_JSONL_BAD.map(([line]) => line));
    report.badRows.forEach((bad, i) => expect(bad.reason).toMatch(EXPECTED_JSONL_BAD[i]![1]));
  });

  test('JSON Lines: --max-bad-rows lets the good rows through, with their values', async () => {
    const output = join(dir, 'jsonl.snapshot');
    expect((await buildSnapshot({ input: jsonl, output, schema, maxBadRows: EXPECTED_JSONL_BAD.length - 1 })).snapshot).toBeUndefined();
    const report = await buildSnapshot({ input: jsonl, output, schema, maxBadRows: EXPECTED_JSONL_BAD.length });
    expect(report.snapshot).toMatchObject({ deviceCount: 3, keyCount: 4 });

    const first = lookup(output, md5('imei-a'));
    expect(first.offset).toBe(0);
    expect(lookup(output, md5('oaid-a')).offset).toBe(0);
    expect(first.read('credit_band')).toBe(2);
    expect(first.read('income_score')).toBeCloseTo(0.75, 6);
    expect(first.read('flags')).toBe(0b11);
    expect(first.read('multi_lender_count')).toBeNaN();
    const second = lookup(output, md5('IDFA-B'));
    expect(second.read('credit_band')).toBeNaN();
    expect(second.read('multi_lender_count')).toBe(0);
    expect(second.read('flags')).toBe(0);
    expect(lookup(output, md5('caid-j')).read('ltv_prior_yuan')).toBe(1200.5);
    expect(lookup(output, md5('caid-i')).offset).toBe(-1);
    expect(lookup(output, md5('e')).offset).toBe(-1);
  });

  test('CSV: quoted cells, |-joined flags, empty = missing, bad rows by line', async () => {
    const csv = join(dir, 'devices.csv');
    writeFileSync(
      csv,
      [
        'oaid_md5,idfa_md5,flags,credit_band,income_score,multi_lender_count',
        `${md5('o1')},,"registered|applied|approved",1,0.5,0`,
        `,${md5('I2')},,,,3`,
        `${md5('o3')},,,abc,,`,
        `${md5('o4')},,,256,,`,
        `${md5('o5')},,"registered,1,,`,
        `${md5('o6')},,,1,`,
        `${md5('o7')},,registered||applied,1,,`,
        `${md5('o8')},${md5('I2')},,,,`,
        `"${md5('o9')}",,dormant,5,.25,1e1`,
      ].join('\r\n'),
    );
    const output = join(dir, 'csv.snapshot');
    const report = await buildSnapshot({ input: csv, output, schema, maxBadRows: 10 });
    expect(report.badRows.map((bad) => [bad.line, bad.reason])).toEqual([
      [4, 'credit_band must be a number or empty, got "abc"'],
      [5, 'credit_band must be an integer in 1..255 (0 marks it missing), got 256'],
      [6, expect.stringMatching(/^unterminated quoted cell/)],
      [7, '5 cells, but the header has 6 columns'],
      [8, 'flags "registered||applied" has an empty flag name (write names joined by "|")'],
      [9, `idfa_md5 ${md5('I2')} already belongs to the device on line 3`],
    ]);
    expect(report.snapshot).toMatchObject({ deviceCount: 3, keyCount: 3 });
    const first = lookup(output, md5('o1'));
    expect(first.read('flags')).toBe(0b111);
    expect(first.read('income_score')).toBe(0.5);
    const second = lookup(output, md5('I2'));
    expect(second.read('credit_band')).toBeNaN();
    expect(second.read('income_score')).toBeNaN();
    expect(second.read('multi_lender_count')).toBe(3);
    const last = lookup(output, md5('o9'));
    expect(last.read('flags')).toBe(1 << schema.flag('dormant').bit);
    expect(last.read('multi_lender_count')).toBe(10);
    expect(last.read('income_score')).toBe(0.25);
  });

  test('CSV: an unusable header refuses the whole file, naming the line', async () => {
    const csv = join(dir, 'header.csv');
    writeFileSync(csv, `\noaid_md5,credit_bnd\n${md5('x')},1\n`);
    await expect(buildSnapshot({ input: csv, output: join(dir, 'header.snapshot'), schema })).rejects.toThrow(
      /header\.csv:2: CSV header: unknown column "credit_bnd"/,
    );
    writeFileSync(csv, 'credit_band\n1\n');
    await expect(buildSnapshot({ input: csv, output: join(dir, 'header.snapshot'), schema })).rejects.toThrow(/no device key column/);
  });

  test('CLI: exit 1 and line-numbered messages on bad rows, exit 0 once allowed, exit 2 on bad flags', () => {
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', join(REPO, 'src/tools/build-snapshot.ts'), ...args], { cwd: REPO, encoding: 'utf8' });
    const output = join(dir, 'cli.snapshot');
    const refused = run('--input', jsonl, '--output', output);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`${jsonl}:4: credit_band must be an integer in 1..255`);
    expect(refused.stderr).toContain(`${EXPECTED_JSONL_BAD.length} bad rows (--max-bad-rows 0); nothing written`);
    expect(existsSync(output)).toBe(false);

    const allowed = run('--input', jsonl, '--output', output, '--max-bad-rows', '20');
    expect(allowed.status).toBe(0);
    expect(allowed.stdout).toMatch(/wrote .*cli\.snapshot: 3 devices, 4 keys/);
    expect(loadSnapshot(output, schema).store.deviceCount).toBe(3);

    expect(run('--input', jsonl, '--output', output, '--max-bad-rows', '-1').status).toBe(2);
    expect(run('--input', join(dir, 'devices.txt'), '--output', output).stderr).toMatch(/cannot tell the format/);
  });
});
