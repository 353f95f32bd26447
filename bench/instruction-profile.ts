/**
 * Where one window's instructions went, by function, JIT code named: reads a dump kept by
 * `npm run bench:ci -- --instructions-only --keep-dumps DIR` and prints the top functions per request, by their
 * own instructions (self) or with everything they call (--inclusive).
 * Run: npx tsx bench/instruction-profile.ts [--inclusive] [--top N] [--requests N] DIR/engine/tencent-known-round1.callgrind
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { JitCodeMap, readWindow } from './lib/callgrind.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { inclusive: { type: 'boolean', default: false }, top: { type: 'string', default: '40' }, requests: { type: 'string', default: '200' } },
});
if (positionals.length !== 1) throw new Error('one kept dump, please: DIR/engine/<class>-round<N>.callgrind');
const file = positionals[0]!;
const annotated = spawnSync('callgrind_annotate', [`--inclusive=${values.inclusive ? 'yes' : 'no'}`, '--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
if (annotated.status !== 0) throw new Error(`callgrind_annotate failed: ${annotated.stderr.trim()}`);
const window = readWindow(annotated.stdout, JitCodeMap.read(join(dirname(file), 'perf.map')), !values.inclusive);
const requests = Number(values.requests);
console.log(`${file}: ${Math.round(window.total / requests).toLocaleString('en-US')} instructions per request in all (${requests} requests)`);
const rows = [...window.functions].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top));
for (const [name, instructions] of rows) console.log(`${Math.round(instructions / requests).toLocaleString('en-US').padStart(9)}  ${name.slice(0, 160)}`);
