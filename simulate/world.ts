import { readFileSync } from 'node:fs';
import { DEVICE_ID_KIND_NAMES, type DeviceIdKind } from '../src/engine/types.js';
import { hashRawDeviceId } from '../src/store/device-key.js';
import { DemoRandom, drawDemoRawIds } from '../src/store/demo-population.js';

/**
 * The simulated market's hidden truth: who clicks which creative, who applies, who is approved and who later
 * defaults, and what the other advertisers pay. The engine never sees any of it: its models were trained on the
 * demo spec, and this truth is a separate set of formulas over the same profile fields plus two hidden traits per
 * person (credit quality and intent) that no profile field records. Everything is drawn from the seed.
 */

export interface Person {
  /** Hashed ids as the media sends them. */
  ids: { kind: DeviceIdKind; md5: string }[];
  os: 'android' | 'ios';
  /** In the engine's device store (false: a person the lender has never seen). */
  known: boolean;
  segment: string;
  /** Hidden: the chance of a click on an ad, before the creative's own lift. */
  clickChance: number;
  /** Hidden: the chance a click leads to a credit application. */
  applyChance: number;
  /** Hidden: the chance an application is approved. */
  approveChance: number;
  /** Hidden: the chance an approved customer later defaults. */
  defaultChance: number;
  /** Hidden: what an approved customer who repays is worth over their life, in fen. */
  lifetimeValueFen: number;
  /** Set once approved: a customer is acquired once. */
  approved: boolean;
}

export interface MarketParameters {
  /** Median of the best competing bid for an impression, in fen (log-normal). */
  competitorMedianFen: number;
  competitorSigma: number;
  /** Our campaign's bid for an impression before the RTA coefficient, in fen. */
  baseBidFen: number;
  /** Share of the traffic from people the lender's store does not know. */
  unknownShare: number;
}

export const MARKET: MarketParameters = { competitorMedianFen: 30, competitorSigma: 0.5, baseBidFen: 40, unknownShare: 0.3 };

/** What a defaulted loan loses, in fen (the demo book's lossGivenDefaultFen). */
export const LOSS_GIVEN_DEFAULT_FEN = 150_000;

/** Field values as build-snapshot's JSON Lines carry them: null where missing. */
type Row = Record<string, number | string | string[] | null>;

const KIND_BY_NAME = new Map(Object.entries(DEVICE_ID_KIND_NAMES).map(([kind, name]) => [name, Number(kind) as DeviceIdKind]));

export class Market {
  readonly known: Person[] = [];
  readonly unknown: Person[] = [];
  /** Hidden: each creative's multiplier on the chance of a click. */
  readonly creativeLift = new Map<number, number>();
  private readonly random: DemoRandom;

  /** `rowsFile`: the demo population as JSON Lines (demo-data --jsonl), the same devices the engine's store holds. */
  constructor(rowsFile: string, seed: number, creativeIds: readonly number[], readonly parameters: MarketParameters = MARKET) {
    // Its own stream, apart from the population's: the truth is not a by-product of how profiles were drawn.
    this.random = new DemoRandom(seed ^ 0x7e57ab1e);
    for (const line of readFileSync(rowsFile, 'utf8').split('\n')) {
      if (line !== '') this.known.push(this.person(JSON.parse(line) as Row));
    }
    const unknownCount = Math.round((this.known.length * parameters.unknownShare) / (1 - parameters.unknownShare));
    for (let i = 0; i < unknownCount; i++) {
      const os = this.random.chance(0.75) ? 'android' : 'ios';
      const ids = drawDemoRawIds(this.random, os).map(({ kind, raw }) => ({ kind, md5: hashRawDeviceId(kind, raw) }));
      this.unknown.push(this.truth({ ids, os, known: false, segment: 'unknown' }, {}));
    }
    for (const id of creativeIds) this.creativeLift.set(id, Math.exp(0.45 * this.gaussian()));
  }

  /** The next person the media has an impression for. */
  visitor(): Person {
    const pool = this.random.chance(this.parameters.unknownShare) ? this.unknown : this.known;
    return pool[Math.floor(this.random.unit() * pool.length)]!;
  }

  /** The best competing bid for one impression, in fen: a second-price auction charges it to the winner. */
  competingBidFen(): number {
    return Math.exp(Math.log(this.parameters.competitorMedianFen) + this.parameters.competitorSigma * this.gaussian());
  }

  /** Uniform in [0, 1): chance's draw for one outcome. */
  draw(): number {
    return this.random.unit();
  }

  /** Exponentially distributed delay with the given mean. */
  delay(meanMs: number): number {
    return -Math.log(1 - this.random.unit()) * meanMs;
  }

  private person(row: Row): Person {
    const ids: Person['ids'] = [];
    for (const [name, kind] of KIND_BY_NAME) if (typeof row[name] === 'string') ids.push({ kind, md5: row[name] });
    const flags = (row.flags as string[] | null) ?? [];
    const segment = flags.includes('active_borrower') ? 'active_borrower' : flags.includes('blacklisted') ? 'blacklisted' : flags.includes('overdue_recent') ? 'high_risk' : flags.includes('dormant') ? 'dormant_approved' : flags.includes('registered') ? 'registered' : 'prospect';
    const os = ids.some((id) => DEVICE_ID_KIND_NAMES[id.kind] === 'idfa_md5') ? 'ios' : 'android';
    return this.truth({ ids, os, known: true, segment }, row);
  }

  /** The hidden formulas. A missing field counts as average. */
  private truth(who: Pick<Person, 'ids' | 'os' | 'known' | 'segment'>, row: Row): Person {
    const field = (name: string, average: number) => (typeof row[name] === 'number' ? row[name] : average);
    const quality = this.gaussian();
    const intent = this.gaussian();
    const lenders = field('multi_lender_count', 1.2);
    const band = field('credit_band', 3);
    const overdue = who.segment === 'high_risk' ? 1 : 0;
    const clickChance = Math.min(0.5, 0.1 * Math.exp(0.25 * intent));
    const applyChance = who.segment === 'active_borrower' ? 0 : sigmoid(-0.8 + 0.7 * intent + 0.08 * (field('finance_app_count', 7) - 7) + 1.2 * (field('engagement_score', 0.5) - 0.5));
    const approveChance =
      who.segment === 'blacklisted'
        ? 0
        : sigmoid(0.2 + 0.8 * quality - 0.45 * (band - 3) + 1.0 * (field('income_score', 0.5) - 0.5) - 0.3 * (lenders - 1.2) + (who.segment === 'dormant_approved' ? 1.2 : 0) - 2 * overdue);
    const defaultChance = sigmoid(-2.6 - 0.6 * quality + 0.3 * (lenders - 1.2) + 0.3 * (band - 3) + 2 * overdue - 2 * (field('repay_score', 0.5) - 0.5));
    // From the same hidden quality: better borrowers borrow more and for longer.
    const lifetimeValueFen = Math.round(80_000 * Math.exp(0.4 * quality + 0.8 * (field('income_score', 0.5) - 0.5) - 0.1 * (band - 3)));
    return { ...who, clickChance, applyChance, approveChance, defaultChance, lifetimeValueFen, approved: false };
  }

  private gaussian(): number {
    return Math.sqrt(-2 * Math.log(1 - this.random.unit())) * Math.cos(2 * Math.PI * this.random.unit());
  }
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}
