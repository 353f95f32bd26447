import type { BenchResult } from './results.js';
import { SERVER_LABELS, type ServerKind } from './servers.js';

/**
 * A self-contained SVG of one result: latency percentiles against offered load (log scale, client solid, server
 * dashed, the 1 ms and 2 ms budgets marked), and each server's maximum throughput against the bare ceiling.
 */

const WIDTH = 1100;
const HEIGHT = 500;
const PANEL = { top: 50, bottom: 380 };
const LATENCY_X = { left: 80, right: 620 };
const THROUGHPUT_X = { left: 740, right: 1070 };
const COLORS = { p50: '#2b8a3e', p99: '#e67700', p999: '#c92a2a' } as const;
const SERVER_COLORS: Record<ServerKind, string> = { bare: '#868e96', engine: '#1c7ed6', 'node-http': '#9c36b5' };

interface Series {
  label: string;
  color: string;
  dashed: boolean;
  points: { x: number; y: number }[];
}

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(result: BenchResult): string {
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`);
  parts.push(latencyPanel(result));
  parts.push(throughputPanel(result));
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function latencySeries(result: BenchResult): Series[] {
  const series: Series[] = [];
  const keys = [['p50', 'p50'], ['p99', 'p99'], ['p999', 'p99.9']] as const;
  for (const [key, label] of keys) {
    const client = result.latency.flatMap((p) => (p.servers.engine ? [{ x: p.fraction, y: p.servers.engine.client[key].median }] : []));
    const server = result.latency.flatMap((p) => (p.servers.engine?.server ? [{ x: p.fraction, y: p.servers.engine.server[key].median }] : []));
    series.push({ label: `engine client ${label}`, color: COLORS[key], dashed: false, points: client });
    if (server.length > 0) series.push({ label: `engine server ${label}`, color: COLORS[key], dashed: true, points: server });
  }
  for (const kind of ['node-http', 'bare'] as const) {
    const points = result.latency.flatMap((p) => (p.servers[kind] ? [{ x: p.fraction, y: p.servers[kind].client.p99.median }] : []));
    if (points.length > 0) series.push({ label: `${kind} client p99`, color: SERVER_COLORS[kind], dashed: false, points });
  }
  return series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.y) && p.y > 0) }));
}

function latencyPanel(result: BenchResult): string {
  const series = latencySeries(result);
  const fractions = result.latency.map((p) => p.fraction);
  const xMin = Math.min(0, ...fractions);
  const xMax = Math.max(1, ...fractions);
  const values = series.flatMap((s) => s.points.map((p) => p.y));
  const yMin = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(10, ...values))));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(10_000, ...values)));
  const x = (v: number) => LATENCY_X.left + ((v - xMin) / (xMax - xMin)) * (LATENCY_X.right - LATENCY_X.left);
  const y = (v: number) => PANEL.bottom - ((Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (PANEL.bottom - PANEL.top);
  const out: string[] = [];
  out.push(`<text x="${LATENCY_X.left}" y="28" font-size="15" font-weight="bold">Latency against offered load (engine maximum = 100 %)</text>`);
  for (let decade = yMin; decade <= yMax; decade *= 10) {
    out.push(`<line x1="${LATENCY_X.left}" x2="${LATENCY_X.right}" y1="${y(decade)}" y2="${y(decade)}" stroke="#dee2e6"/>`);
    out.push(`<text x="${LATENCY_X.left - 6}" y="${y(decade) + 4}" text-anchor="end">${decadeLabel(decade)}</text>`);
  }
  for (const [budget, label] of [[1000, '1 ms'], [2000, '2 ms budget']] as const) {
    out.push(`<line x1="${LATENCY_X.left}" x2="${LATENCY_X.right}" y1="${y(budget)}" y2="${y(budget)}" stroke="#212529" stroke-dasharray="2 3"/>`);
    out.push(`<text x="${LATENCY_X.right - 4}" y="${y(budget) - 4}" text-anchor="end" fill="#212529">${label}</text>`);
  }
  for (const fraction of fractions) {
    out.push(`<line x1="${x(fraction)}" x2="${x(fraction)}" y1="${PANEL.bottom}" y2="${PANEL.bottom + 5}" stroke="#212529"/>`);
    out.push(`<text x="${x(fraction)}" y="${PANEL.bottom + 18}" text-anchor="middle">${Math.round(fraction * 100)} %</text>`);
  }
  out.push(`<line x1="${LATENCY_X.left}" x2="${LATENCY_X.right}" y1="${PANEL.bottom}" y2="${PANEL.bottom}" stroke="#212529"/>`);
  out.push(`<text x="${(LATENCY_X.left + LATENCY_X.right) / 2}" y="${PANEL.bottom + 36}" text-anchor="middle">offered load, % of the engine's maximum throughput</text>`);
  for (const s of series) {
    if (s.points.length === 0) continue;
    const path = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${s.color}" stroke-width="2" ${s.dashed ? 'stroke-dasharray="6 4"' : ''}/>`);
    for (const p of s.points) out.push(`<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3" fill="${s.color}"/>`);
  }
  series.forEach((s, i) => {
    const lx = LATENCY_X.left + (i % 3) * 180;
    const ly = PANEL.bottom + 56 + Math.floor(i / 3) * 16;
    out.push(`<line x1="${lx}" x2="${lx + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2" ${s.dashed ? 'stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${lx + 30}" y="${ly}">${escape(s.label)}</text>`);
  });
  return out.join('\n');
}

function decadeLabel(micros: number): string {
  if (micros >= 1e6) return `${micros / 1e6} s`;
  if (micros >= 1000) return `${micros / 1000} ms`;
  return `${micros} us`;
}

function throughputPanel(result: BenchResult): string {
  const kinds = Object.keys(result.throughput.requestsPerSecond) as ServerKind[];
  const maxRate = Math.max(1, ...kinds.map((k) => result.throughput.requestsPerSecond[k]!.max));
  const y = (v: number) => PANEL.bottom - (v / maxRate) * (PANEL.bottom - PANEL.top - 20);
  const slot = (THROUGHPUT_X.right - THROUGHPUT_X.left) / Math.max(1, kinds.length);
  const out: string[] = [];
  out.push(`<text x="${THROUGHPUT_X.left - 20}" y="28" font-size="15" font-weight="bold">Maximum throughput (requests/s)</text>`);
  out.push(`<line x1="${THROUGHPUT_X.left}" x2="${THROUGHPUT_X.right}" y1="${PANEL.bottom}" y2="${PANEL.bottom}" stroke="#212529"/>`);
  const ceiling = result.throughput.requestsPerSecond.bare;
  if (ceiling) {
    out.push(`<line x1="${THROUGHPUT_X.left}" x2="${THROUGHPUT_X.right}" y1="${y(ceiling.median)}" y2="${y(ceiling.median)}" stroke="#868e96" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${THROUGHPUT_X.right}" y="${y(ceiling.median) - 4}" text-anchor="end" fill="#495057">ceiling</text>`);
  }
  kinds.forEach((kind, i) => {
    const s = result.throughput.requestsPerSecond[kind]!;
    const cx = THROUGHPUT_X.left + slot * (i + 0.5);
    const share = result.throughput.shareOfCeiling[kind];
    out.push(`<rect x="${cx - slot * 0.3}" y="${y(s.median)}" width="${slot * 0.6}" height="${PANEL.bottom - y(s.median)}" fill="${SERVER_COLORS[kind]}" opacity="0.85"/>`);
    out.push(`<line x1="${cx}" x2="${cx}" y1="${y(s.min)}" y2="${y(s.max)}" stroke="#212529" stroke-width="1.5"/>`);
    out.push(`<text x="${cx}" y="${y(s.max) - 8}" text-anchor="middle">${Math.round(s.median).toLocaleString('en-US')}${share ? ` (${Math.round(share.median * 100)} %)` : ''}</text>`);
    out.push(`<text x="${cx}" y="${PANEL.bottom + 18}" text-anchor="middle">${escape(kind)}</text>`);
  });
  out.push(`<text x="${THROUGHPUT_X.left}" y="${PANEL.bottom + 56}">bars: median; whiskers: min–max; (share of the ceiling)</text>`);
  kinds.forEach((kind, i) => out.push(`<text x="${THROUGHPUT_X.left}" y="${PANEL.bottom + 72 + i * 14}">${escape(`${kind}: ${SERVER_LABELS[kind]}`)}</text>`));
  return out.join('\n');
}
