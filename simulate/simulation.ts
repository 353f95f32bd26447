import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, startServer } from '../bench/lib/servers.js';
import { generateDemoData } from '../src/tools/demo-data.js';
import { runScenario, type DayResult, type ScenarioResult } from './scenario.js';
import { Market } from './world.js';

/**
 * The market simulation: the same seeded market met three ways, no RTA, the static demo book, and the full loop
 * (the demo book with targets, attribution, the controllers and online learning), each engine a real server on its own population
 * snapshot, fed by real requests and real events.
 */

export const SCENARIOS = ['no RTA', 'static book', 'full loop'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface SimulationOptions {
  seed: number;
  days: number;
  devices: number;
  impressionsPerDay: number;
  /** The controllers and the learner look every this many simulated hours. */
  lookEveryHours: number;
  /** Real milliseconds a simulated hour lasts at least (see Engine.hourMillis). */
  hourMillis: number;
  onProgress?: (scenario: ScenarioName, hour: number, totalHours: number) => void;
}

export interface Simulation {
  options: Omit<SimulationOptions, 'onProgress'>;
  scenarios: Record<ScenarioName, ScenarioResult>;
}

/**
 * What the growth team asks of each strategy in the loop: a cost per approved customer (fen), about what the static
 * book pays on this market, so the loop must buy better at the same price rather than merely buy less. The static
 * book is the demo book as it is.
 */
export const LOOP_TARGETS: Record<string, { targetCostPerApprovedFen: number; minApprovals: number; pauseAbove?: number }> = {
  acq_prime_new: { targetCostPerApprovedFen: 1000, minApprovals: 10 },
  react_dormant: { targetCostPerApprovedFen: 1000, minApprovals: 10 },
  nudge_registered: { targetCostPerApprovedFen: 1000, minApprovals: 10, pauseAbove: 3 },
  acq_platform_lookalike: { targetCostPerApprovedFen: 1000, minApprovals: 10, pauseAbove: 3 },
};

interface Book {
  strategies: { id: string; kind: string; creatives?: { id: number }[]; tuning?: unknown; creativeSampling?: unknown }[];
}

export async function simulate(options: SimulationOptions): Promise<Simulation> {
  const dir = mkdtempSync(join(tmpdir(), 'rta-simulate-'));
  try {
    const rows = join(dir, 'devices.jsonl');
    const population = generateDemoData({ devices: options.devices, seed: options.seed, outputDir: dir, jsonl: rows });
    const book = JSON.parse(readFileSync(join(REPO_ROOT, 'data/strategies.json'), 'utf8')) as Book;
    const creatives = book.strategies.flatMap((s) => (s.creatives ?? []).map((c) => c.id));
    const prime = book.strategies.find((s) => s.id === 'acq_prime_new')!.creatives!.map((c) => c.id);
    const loopBook = structuredClone(book);
    for (const strategy of loopBook.strategies) {
      if (LOOP_TARGETS[strategy.id]) strategy.tuning = LOOP_TARGETS[strategy.id];
      if ((strategy.creatives?.length ?? 0) > 1) strategy.creativeSampling = { minImpressions: 300 };
    }

    const scenarios = {} as Record<ScenarioName, ScenarioResult>;
    for (const name of SCENARIOS) {
      // A fresh market per scenario from the same seed: the same people, auctions and chances, met differently.
      const market = new Market(rows, options.seed, creatives);
      const scenario = {
        days: options.days,
        impressionsPerDay: options.impressionsPerDay,
        defaultCreatives: prime,
        onHour: (hour: number, total: number) => options.onProgress?.(name, hour, total),
      };
      if (name === 'no RTA') {
        scenarios[name] = await runScenario(market, null, scenario);
        continue;
      }
      const bookFile = join(dir, `${name.replace(' ', '-')}.json`);
      writeFileSync(bookFile, JSON.stringify(name === 'full loop' ? loopBook : book));
      const configFile = join(dir, `${name.replace(' ', '-')}-config.json`);
      writeFileSync(
        configFile,
        JSON.stringify({
          strategies: bookFile,
          strategyHistory: join(dir, `${name.replace(' ', '-')}-history`),
          store: { snapshot: population.snapshotPath },
          // The simulation is about decisions, not speed: no answer depends on how busy this machine is.
          server: { shedAfterMicros: 0 },
          engine: { scoreDeadlineMicros: 50_000 },
          decisionLog: { flushMillis: 20 },
          attribution: { followMillis: 20 },
          // An application without its approval a simulated day later is a negative example.
          ...(name === 'full loop' ? { learning: { enabled: true, dir: join(dir, 'learning'), labelAfterSeconds: (24 * options.hourMillis) / 1000, minExamples: 100 } } : {}),
        }),
      );
      const server = await startServer('engine', { cpus: null, engineEnv: { RTA_CONFIG: configFile }, cpuProfileDir: null });
      try {
        const engine = { mediaUrl: server.mediaUrl, adminUrl: server.adminUrl!, lookEveryHours: name === 'full loop' ? options.lookEveryHours : null, hourMillis: options.hourMillis };
        scenarios[name] = await runScenario(market, engine, scenario);
      } finally {
        await server.stop();
      }
    }
    const { onProgress: _progress, ...kept } = options;
    return { options: kept, scenarios };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface Totals {
  impressions: number;
  spendFen: number;
  clicks: number;
  applications: number;
  approved: number;
  defaulting: number;
  costPerApprovedFen: number;
  defaultShare: number;
  /** Approved customers' value less the spend (fen). */
  netValueFen: number;
}

export function totals(days: readonly DayResult[]): Totals {
  const sum = (key: keyof DayResult) => days.reduce((s, d) => s + d[key], 0);
  const approved = sum('approved');
  const defaulting = sum('defaulting');
  const spendFen = sum('spendFen');
  return {
    impressions: sum('impressions'),
    spendFen,
    clicks: sum('clicks'),
    applications: sum('applications'),
    approved,
    defaulting,
    costPerApprovedFen: approved === 0 ? Infinity : spendFen / approved,
    defaultShare: approved === 0 ? 0 : defaulting / approved,
    netValueFen: sum('valueFen') - spendFen,
  };
}
