import cliProgress from 'cli-progress';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../bench/lib/servers.js';
import { costChart } from './chart.js';
import { SCENARIOS, simulate, totals, type Simulation } from './simulation.js';

/**
 * `npm run simulate`: the market simulation (see simulation.ts and the README's "Market simulator"), its table per
 * day and in total, and simulate/results/<name>.json and .svg (cost per approved customer per day).
 */
const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '7' },
    days: { type: 'string', default: '14' },
    devices: { type: 'string', default: '200000' },
    'impressions-per-day': { type: 'string', default: '20000' },
    'look-every-hours': { type: 'string', default: '6' },
    'hour-millis': { type: 'string', default: '500' },
    name: { type: 'string', default: 'latest' },
  },
});

const bar = new cliProgress.SingleBar({ format: '{scenario} {bar} {percentage}% | day {day}/{days}', hideCursor: true }, cliProgress.Presets.shades_classic);
const days = Number(values.days);
let current = '';
const simulation = await simulate({
  seed: Number(values.seed),
  days,
  devices: Number(values.devices),
  impressionsPerDay: Number(values['impressions-per-day']),
  lookEveryHours: Number(values['look-every-hours']),
  hourMillis: Number(values['hour-millis']),
  onProgress(scenario, hour, total) {
    if (scenario !== current) {
      if (current !== '') bar.stop();
      current = scenario;
      bar.start(total, 0, { scenario: scenario.padEnd(11), day: 1, days });
    }
    bar.update(hour, { day: Math.min(days, Math.floor(hour / 24) + 1) });
  },
});
bar.stop();

console.log(report(simulation));
const dir = join(REPO_ROOT, 'simulate/results');
mkdirSync(dir, { recursive: true });
writeFileSync(join(dir, `${values.name}.json`), `${JSON.stringify(simulation, null, 2)}\n`);
writeFileSync(join(dir, `${values.name}.svg`), costChart(simulation));
console.log(`\nwrote simulate/results/${values.name}.json and .svg`);

function report(sim: Simulation): string {
  const yuan = (fen: number) => (Number.isFinite(fen) ? (fen / 100).toFixed(2) : '-');
  const { seed, days: d, devices, impressionsPerDay, lookEveryHours, hourMillis } = sim.options;
  const lines = [`seed ${seed}, ${d} days, ${devices} known devices (+30 % unknown), ${impressionsPerDay} impressions offered a day, controllers and learner every ${lookEveryHours} h, an hour at least ${hourMillis} ms`, ''];
  lines.push(['day', ...SCENARIOS.map((s) => `${s}: spend, approved, yuan/approved, default %`)].join(' | '));
  for (let day = 0; day < d; day++) {
    const cells = SCENARIOS.map((s) => {
      const t = totals([sim.scenarios[s].days[day]!]);
      return `${yuan(t.spendFen)}, ${t.approved}, ${yuan(t.costPerApprovedFen)}, ${(t.defaultShare * 100).toFixed(1)}`;
    });
    lines.push([String(day + 1), ...cells].join(' | '));
  }
  lines.push('', '| total | spend (yuan) | impressions | approved customers | yuan per approved | default share | net value (yuan) | unmatched events | controller changes |', '|---|---|---|---|---|---|---|---|---|');
  for (const s of SCENARIOS) {
    const r = sim.scenarios[s];
    const t = totals(r.days);
    lines.push(`| ${s} | ${yuan(t.spendFen)} | ${t.impressions} | ${t.approved} | ${yuan(t.costPerApprovedFen)} | ${(t.defaultShare * 100).toFixed(1)} % | ${yuan(t.netValueFen)} | ${r.unmatchedEvents} | ${r.controllerChanges} |`);
  }
  const published = sim.scenarios['full loop'].learningLooks.filter((l) => l.result === 'published');
  lines.push('', `full loop learner: ${published.length} versions published`);
  const when = (hour: number) => `day ${Math.floor((hour - 1) / 24) + 1} hour ${(hour - 1) % 24 + 1}`;
  for (const l of [published[0], published.at(-1)]) if (l) lines.push(`  ${when(l.hour)}: ${l.version}: ${l.reason}`);
  return lines.join('\n');
}
