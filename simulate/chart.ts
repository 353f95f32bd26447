import { SCENARIOS, totals, type Simulation } from './simulation.js';

/** Cost per approved customer per simulated day, one line per scenario, as a self-contained SVG. */
export function costChart(sim: Simulation): string {
  const width = 720;
  const height = 360;
  const left = 60;
  const right = 160;
  const top = 30;
  const bottom = 40;
  const colours = ['#888888', '#1f77b4', '#d62728'];
  const series = SCENARIOS.map((s) => sim.scenarios[s].days.map((d) => totals([d]).costPerApprovedFen / 100));
  const finite = series.flat().filter(Number.isFinite);
  const max = Math.max(...finite) * 1.1;
  const days = sim.options.days;
  const x = (day: number) => left + ((width - left - right) * day) / Math.max(1, days - 1);
  const y = (value: number) => top + (height - top - bottom) * (1 - value / max);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="18" font-size="14">Cost per approved customer (yuan) by simulated day, seed ${sim.options.seed}</text>`,
    `<line x1="${left}" y1="${y(0)}" x2="${width - right}" y2="${y(0)}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${y(0)}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const value = (max * i) / 4;
    parts.push(`<text x="${left - 6}" y="${y(value) + 4}" text-anchor="end">${value.toFixed(1)}</text>`);
  }
  for (let day = 0; day < days; day++) parts.push(`<text x="${x(day)}" y="${height - bottom + 16}" text-anchor="middle">${day + 1}</text>`);
  parts.push(`<text x="${(left + width - right) / 2}" y="${height - 6}" text-anchor="middle">day</text>`);
  series.forEach((values, i) => {
    const points = values.flatMap((v, day) => (Number.isFinite(v) ? [`${x(day).toFixed(1)},${y(v).toFixed(1)}`] : [])).join(' ');
    parts.push(`<polyline fill="none" stroke="${colours[i]}" stroke-width="2" points="${points}"/>`);
    parts.push(`<text x="${width - right + 10}" y="${top + 20 * i + 10}" fill="${colours[i]}">${SCENARIOS[i]}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
