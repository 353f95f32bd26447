import { describe, expect, test } from 'vitest';
import { simulate, totals } from '../../simulate/simulation.js';

/**
 * The market simulation on a small seed, through real engines: the full loop (attribution, bid tuning, creative
 * sampling, online learning), asked for about the static book's own cost per approved customer, must buy them
 * cheaper than the static demo book without buying much fewer or worse ones; and the static book must beat no RTA. The margins leave room for the creative controller's random draws.
 */
describe('market simulation', () => {
  test('the loop beats the static book on cost per approved customer and does not raise the default share', async () => {
    const sim = await simulate({ seed: 7, days: 3, devices: 50_000, impressionsPerDay: 8000, lookEveryHours: 6, hourMillis: 250 });
    const none = totals(sim.scenarios['no RTA'].days);
    const fixed = totals(sim.scenarios['static book'].days);
    const loop = totals(sim.scenarios['full loop'].days);
    expect(fixed.costPerApprovedFen).toBeLessThan(none.costPerApprovedFen * 0.9);
    expect(loop.costPerApprovedFen).toBeLessThan(fixed.costPerApprovedFen * 0.97);
    expect(loop.defaultShare).toBeLessThanOrEqual(fixed.defaultShare + 0.01);
    // Not cheaper merely by buying much less.
    expect(loop.approved).toBeGreaterThanOrEqual(fixed.approved * 0.9);
    for (const name of ['static book', 'full loop'] as const) expect(sim.scenarios[name].unmatchedEvents).toBe(0);
    expect(sim.scenarios['full loop'].controllerChanges).toBeGreaterThan(0);
    expect(sim.scenarios['static book'].controllerChanges).toBe(0);
  }, 240_000);
});
