/**
 * Where the engine's CPU goes: reads `node --cpu-prof` profiles (one per thread; `npm run bench -- --cpu-prof`
 * writes them) and prints self time by pipeline stage and the top functions, as shares of the busy (non-idle) time.
 * Code generated at run time (`new Function`, e.g. compiled models) has no script URL: it counts to the stage of
 * the function that calls it.
 * Run: npx tsx bench/profile-summary.ts [--top N] FILE.cpuprofile...
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';

const profileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }).loose(),
      children: z.array(z.number()).optional(),
    }).loose(),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
}).loose();

/** First match wins: which stage of the pipeline a function belongs to, by where its code lives. */
const STAGES: [string, (url: string, name: string) => boolean][] = [
  ['idle', (_, name) => name === '(idle)'],
  ['garbage collection', (_, name) => name === '(garbage collector)'],
  ['native: uWS I/O, syscalls, V8 runtime', (url, name) => name === '(program)' || (url === '' && name !== '(root)' && name !== '')],
  ['media codecs (src/media)', (url) => url.includes('/src/media/') || url.includes('/dist/media/')],
  ['protobufjs (decode/encode library)', (url) => url.includes('/protobufjs/') || url.includes('/@protobufjs/')],
  ['engine pipeline (src/engine)', (url) => url.includes('/engine/')],
  ['strategies (src/strategy)', (url) => url.includes('/strategy/')],
  ['scoring (src/scoring)', (url) => url.includes('/scoring/')],
  ['device store (src/store)', (url) => url.includes('/store/')],
  ['metrics (src/observe, prom-client)', (url) => url.includes('/observe/') || url.includes('/prom-client/')],
  ['server glue (src/server, uWS JS)', (url) => url.includes('/server/') || url.includes('uWebSockets') || url.includes('uws-js')],
  ['Node internals', (url) => url.startsWith('node:')],
];

interface Tally {
  selfMicros: Map<string, number>;
  stageMicros: Map<string, number>;
  busyMicros: number;
}

function tally(path: string, into: Tally): void {
  const profile = profileSchema.parse(JSON.parse(readFileSync(path, 'utf8')));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  /** The nearest frame, this one or a caller, that has a script URL or is one of V8's named pseudo-frames. */
  const attributed = (id: number) => {
    let node = byId.get(id)!;
    while (node.callFrame.url === '' && node.callFrame.functionName === '' && parentOf.has(node.id)) node = byId.get(parentOf.get(node.id)!)!;
    return node.callFrame;
  };
  profile.samples.forEach((id, i) => {
    const node = byId.get(id);
    if (!node) return;
    const micros = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    const owner = attributed(id);
    const stage = STAGES.find(([, test]) => test(owner.url, owner.functionName))?.[0] ?? 'other JavaScript';
    into.stageMicros.set(stage, (into.stageMicros.get(stage) ?? 0) + micros);
    if (stage === 'idle') return;
    into.busyMicros += micros;
    const where = url === '' ? '' : ` ${url.replace(/^file:\/\/.*?\/(src|dist|node_modules|bench)\//, '$1/')}:${lineNumber + 1}`;
    const generated = url === '' && functionName === '' ? ` (generated, called from ${owner.functionName || '(anonymous)'})` : '';
    const key = `${functionName || '(anonymous)'}${where}${generated}`;
    into.selfMicros.set(key, (into.selfMicros.get(key) ?? 0) + micros);
  });
}

function main(): void {
  const { values, positionals } = parseArgs({ options: { top: { type: 'string', default: '25' } }, allowPositionals: true });
  if (positionals.length === 0) {
    console.error('usage: npx tsx bench/profile-summary.ts [--top N] FILE.cpuprofile...');
    process.exit(2);
  }
  const top = Number(values.top);
  const all: Tally = { selfMicros: new Map(), stageMicros: new Map(), busyMicros: 0 };
  for (const path of positionals) {
    const one: Tally = { selfMicros: new Map(), stageMicros: new Map(), busyMicros: 0 };
    tally(path, one);
    tally(path, all);
    console.log(`${basename(path)}: ${(one.busyMicros / 1e6).toFixed(2)} s busy`);
  }
  const share = (micros: number) => `${((micros / all.busyMicros) * 100).toFixed(1).padStart(5)} %`;
  console.log(`\nbusy time by stage (${(all.busyMicros / 1e6).toFixed(2)} s busy over all threads; idle ${((all.stageMicros.get('idle') ?? 0) / 1e6).toFixed(2)} s)`);
  for (const [stage, micros] of [...all.stageMicros].filter(([s]) => s !== 'idle').sort((a, b) => b[1] - a[1])) console.log(`  ${share(micros)}  ${stage}`);
  console.log(`\ntop ${top} functions by self time`);
  for (const [name, micros] of [...all.selfMicros].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${share(micros)}  ${name}`);
}

main();
