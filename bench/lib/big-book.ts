/**
 * A lender's strategy book at the scale of the industry reference (design.md: 350 strategies live with 200 A/B
 * tests at once), generated from a seed so a benchmark or a test always gets the same book: the demo's three
 * exclusions, 350 bidding strategies (acquisition, re-activation, nudges, win-back, probes of unknown devices,
 * each for some OS and kind of customer) and 200 experiments, most of them sharing 20 layers. Valid for
 * data/profile-schema.json and the demo models (apply, approve, risk, ltv).
 *
 * Write one: npx tsx bench/lib/big-book.ts [--seed N] [--out FILE]   (default seed 1, to stdout)
 */
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DemoRandom } from '../../src/store/demo-population.js';
import type { BidParams, ConditionInput } from '../../src/strategy/schema.js';

export const BIG_BOOK_STRATEGIES = 350;
export const BIG_BOOK_EXPERIMENTS = 200;
const LAYERS = 20;
/** Experiments with a layer of their own, bucketed by their own salt, as older experiments are written. */
const STANDALONE_EXPERIMENTS = 4;
/** Platform experiment ids the benchmark's requests carry (bench/stages.ts sends 1024..1030 and 32768). */
const COMMON_PLATFORM_IDS = [1024, 1025, 1026, 1027, 1028, 1029, 1030];
const LOOKALIKE_PLATFORM_ID = 32768;

type OsName = NonNullable<ConditionInput['os']>[number];
/** The bid fields an experiment varies; assumeApproved is a fact about the customer, not a lever. */
type Lever = Exclude<keyof BidParams, 'assumeApproved'>;

interface Creative {
  id: number;
  when?: ConditionInput;
}

interface BidStrategyJson {
  id: string;
  kind: 'bid';
  description: string;
  when: ConditionInput;
  bid: Partial<BidParams>;
  creatives: Creative[];
  secondRequest?: { preferredCreativeBoost: number; templateFactors: Record<string, number> };
}

interface Arm {
  name: string;
  tag: number;
  percent: number;
  overrides?: Record<string, Partial<BidParams>>;
  creatives?: Record<string, number>;
  platformExperimentIds?: number[];
}

interface ExperimentJson {
  id: string;
  description: string;
  layer?: string;
  salt?: string;
  percent: number;
  strategies: string[];
  arms: Arm[];
}

/** What the generator remembers of a strategy to write experiments on it. */
interface Drawn {
  json: BidStrategyJson;
  /** The bid in force, defaults included, so arm overrides stay valid. */
  bid: BidParams;
  /** Bid fields some layer's arms change: another layer may not change them too. */
  changedFields: Set<Lever>;
  layers: Set<string>;
}

const EXCLUSIONS = [
  { id: 'excl_blacklist', kind: 'exclude', description: 'Fraud, identity theft or legal blacklist.', reason: 'blacklisted', when: { flagsAny: ['blacklisted'] } },
  { id: 'excl_active_borrower', kind: 'exclude', description: 'Active borrowers come back by themselves.', reason: 'existing_borrower', when: { flagsAny: ['active_borrower'] } },
  {
    id: 'excl_high_risk',
    kind: 'exclude',
    description: 'Recent overdue, heavy multi-lender debt, or a high predicted default rate.',
    reason: 'high_risk',
    when: { anyOf: [{ flagsAny: ['overdue_recent'] }, { fields: { multi_lender_count: { min: 5 } } }, { scores: { risk: { min: 0.2 } } }] },
  },
];

/** Each layer tests one lever; creative layers (null) impose creatives instead of changing bids. */
const LAYER_LEVERS: (Lever | null)[] = [
  'exponent',
  'targetValueFen',
  'minValueFen',
  'maxCoefficient',
  null,
  'cpcBidFen',
  'lossGivenDefaultFen',
  'minCoefficient',
  'cpaBidFen',
  null,
];

export function bigBook(seed: number): object {
  const random = new DemoRandom(seed);
  const pick = <T>(list: readonly T[]): T => list[random.int(0, list.length - 1)]!;
  let nextCreative = 810_000;
  let nextTag = 910_000;
  let nextPlatformId = 2_000;

  const strategies: Drawn[] = [];
  for (let n = 0; n < BIG_BOOK_STRATEGIES; n++) {
    const family = pick(FAMILIES);
    const os = drawOs(random);
    const { when, bid, description } = family.draw(random);
    if (os) when.os = os;
    const creatives = drawCreatives(random, () => ++nextCreative);
    const json: BidStrategyJson = {
      id: `${family.name}_${os ? os.join('_') : 'all'}_${String(n).padStart(3, '0')}`,
      kind: 'bid',
      description,
      when,
      bid: writtenBid(bid),
      creatives,
    };
    if (random.chance(0.3)) json.secondRequest = { preferredCreativeBoost: pick([1.1, 1.2, 1.3]), templateFactors: random.chance(0.5) ? { '311': 1.1, '450': 0.85 } : {} };
    strategies.push({ json, bid, changedFields: new Set(), layers: new Set() });
  }

  const layers = Array.from({ length: LAYERS }, (_, l) => ({ id: `layer_${String(l).padStart(2, '0')}`, salt: `big-book-${seed}-layer-${l}` }));
  const perLayer = splitEvenly(random, BIG_BOOK_EXPERIMENTS - STANDALONE_EXPERIMENTS, LAYERS);
  const experiments: ExperimentJson[] = [];
  const homes = [
    ...layers.flatMap((layer, l) =>
      Array.from({ length: perLayer[l]! }, (_, k) => ({ layer: layer.id, lever: LAYER_LEVERS[l % LAYER_LEVERS.length]!, siblings: perLayer[l]!, first: k === 0, standalone: false, commonPlatformId: COMMON_PLATFORM_IDS[l % COMMON_PLATFORM_IDS.length]! })),
    ),
    ...Array.from({ length: STANDALONE_EXPERIMENTS }, (_, s) => ({ layer: `standalone_${s}`, lever: pick(LAYER_LEVERS), siblings: 1, first: true, standalone: true, commonPlatformId: 0 })),
  ];
  for (const [e, home] of homes.entries()) {
    const { standalone, lever } = home;
    const fits = strategies.filter((s) => !s.layers.has(home.layer) && (lever === null ? s.json.creatives.length > 1 : !s.changedFields.has(lever)));
    const members: Drawn[] = [];
    for (let k = random.int(1, 4); k > 0 && fits.length > 0; k--) members.push(...fits.splice(random.int(0, fits.length - 1), 1));
    for (const member of members) {
      member.layers.add(home.layer);
      if (lever !== null) member.changedFields.add(lever);
    }
    const id = `exp_${String(e).padStart(3, '0')}_${lever === null ? 'creative' : lever.toLowerCase()}`;
    const shares = pick(ARM_SHARES);
    const arms: Arm[] = shares.map((percent, a) => {
      const arm: Arm = { name: a === 0 ? 'control' : `test_${'abc'[a - 1]}`, tag: ++nextTag, percent };
      if (a === 0) return arm;
      if (lever !== null) arm.overrides = Object.fromEntries(members.map((m) => [m.json.id, { [lever]: override(random, lever, m.bid, a) }]));
      if (lever === null || random.chance(0.15)) {
        const imposing = members.filter((m) => m.json.creatives.length > 1);
        if (imposing.length > 0) arm.creatives = Object.fromEntries(imposing.map((m) => [m.json.id, pick(m.json.creatives).id]));
      }
      return arm;
    });
    // A media's own experiment mapped to an arm: in every layer one rides an id the benchmark's requests carry.
    if (!standalone && home.first) arms[1]!.platformExperimentIds = [home.commonPlatformId];
    else if (random.chance(0.2)) arms[arms.length - 1]!.platformExperimentIds = [++nextPlatformId];
    const experiment: ExperimentJson = {
      id,
      description: lever === null ? 'Which creative converts this audience best?' : `Does another ${lever} buy better borrowers at the same spend?`,
      // Together a layer's experiments take at most 95 % of it.
      percent: standalone ? 100 : random.int(200, Math.floor(9_500 / home.siblings)) / 100,
      strategies: members.map((m) => m.json.id),
      arms,
    };
    if (standalone) experiment.salt = `big-book-${seed}-${id}`;
    else experiment.layer = home.layer;
    experiments.push(experiment);
  }

  return {
    description: `Generated lender book (bench/lib/big-book.ts, seed ${seed}): ${BIG_BOOK_STRATEGIES} bidding strategies, ${BIG_BOOK_EXPERIMENTS} experiments.`,
    cacheTtlSeconds: { take: 3600, reject: 86400, fallback: 3600 },
    valueModels: { apply: 'apply', approve: 'approve', risk: 'risk', ltv: 'ltv' },
    strategies: [...EXCLUSIONS, ...strategies.map((s) => s.json)],
    layers,
    experiments,
  };
}

interface Family {
  name: string;
  draw(random: DemoRandom): { when: ConditionInput; bid: BidParams; description: string };
}

/** Shares of traffic among the strategies of a real book: mostly acquisition, then the customers we already know. */
const FAMILIES: Family[] = [
  ...Array<Family>(4).fill({ name: 'acq_new', draw: acquisition }),
  { name: 'react_dormant', draw: reactivation },
  { name: 'react_dormant', draw: reactivation },
  { name: 'nudge_registered', draw: nudge },
  { name: 'retry_applied', draw: retry },
  { name: 'winback', draw: winback },
  { name: 'probe_unknown', draw: probe },
];

function acquisition(random: DemoRandom) {
  const when: ConditionInput = { flagsNone: ['registered'] };
  const known = random.unit();
  if (known < 0.35) when.known = true;
  else if (known < 0.65) when.known = false;
  // Devices we have never seen have no profile fields to target.
  if (when.known !== false) {
    when.fields = drawFields(random, random.int(0, 2));
    addProfileAlternative(random, when);
  }
  if (random.chance(0.25)) when.scores = { apply: { min: random.int(3, 15) / 100 } };
  return { when, bid: drawBid(random, { target: [6_000, 14_000], minValue: [300, 2_000] }), description: 'New customers: devices we have never lent to.' };
}

function reactivation(random: DemoRandom) {
  const when: ConditionInput = { flagsAll: ['approved', 'dormant'], fields: { days_since_last_active: { min: random.int(3, 12) * 30 } } };
  if (random.chance(0.5)) when.known = true;
  if (random.chance(0.4)) when.fields!.credit_limit_hundred_yuan = { min: random.int(1, 4) * 50 };
  if (random.chance(0.2)) when.scores = { ltv: { min: random.int(5, 20) * 100 } };
  return { when, bid: drawBid(random, { target: [20_000, 40_000], minValue: [1_000, 4_000], assumeApproved: true }), description: 'Approved customers who have not borrowed for a while.' };
}

function nudge(random: DemoRandom) {
  const when: ConditionInput = { flagsAll: ['registered'], flagsNone: ['approved'], fields: { credit_band: { max: random.int(2, 4) } } };
  if (random.chance(0.3)) when.flagsAny = ['applied'];
  addProfileAlternative(random, when);
  return { when, bid: drawBid(random, { target: [18_000, 30_000], minValue: [1_000, 3_000], cpc: true }), description: 'Registered, never approved: a cheaper nudge to finish the application.' };
}

function retry(random: DemoRandom) {
  const when: ConditionInput = { flagsAll: ['applied'], flagsNone: ['approved'], fields: { days_since_last_active: { max: random.int(1, 6) * 30, missing: 'pass' } } };
  if (random.chance(0.3)) when.scores = { approve: { min: random.int(30, 60) / 100 } };
  return { when, bid: drawBid(random, { target: [15_000, 25_000], minValue: [500, 2_500] }), description: 'Applied but not approved: try again once their credit improved.' };
}

function winback(random: DemoRandom) {
  const when: ConditionInput = { flagsAll: ['approved'], flagsNone: ['dormant'], fields: { past_loan_count: { min: 1 }, repay_score: { min: random.int(5, 8) / 10 } } };
  if (random.chance(0.3)) when.scores = { risk: { max: random.int(5, 12) / 100 } };
  return { when, bid: drawBid(random, { target: [25_000, 45_000], minValue: [2_000, 5_000], assumeApproved: true }), description: 'Past borrowers who repaid well and stopped borrowing.' };
}

function probe(random: DemoRandom) {
  const when: ConditionInput = { known: false, platformExperimentsAny: random.chance(0.5) ? [LOOKALIKE_PLATFORM_ID] : [COMMON_PLATFORM_IDS[random.int(0, COMMON_PLATFORM_IDS.length - 1)]!] };
  return { when, bid: drawBid(random, { target: [10_000, 14_000], minValue: [0, 0] }), description: "Inside a media's own test bucket: probe devices we have never seen." };
}

/** Some strategies add an alternative (anyOf) or an exception (not) over the profile; never both, so either stays one key. */
function addProfileAlternative(random: DemoRandom, when: ConditionInput): void {
  const draw = random.unit();
  if (draw < 0.15) when.anyOf = [{ fields: { region_tier: { max: 2 } } }, { fields: { income_score: { min: 0.7 } } }];
  else if (draw < 0.25) when.not = { fields: { multi_lender_count: { min: 3 } } };
}

type Range = { min?: number; max?: number; missing?: 'pass' | 'fail' };

const ACQUISITION_FIELDS: [string, (random: DemoRandom) => Range][] = [
  ['finance_app_count', (r) => ({ min: r.int(1, 6) })],
  ['region_tier', (r) => ({ max: r.int(2, 4) })],
  ['device_price_band', (r) => ({ min: r.int(2, 4) })],
  ['income_score', (r) => ({ min: r.int(2, 6) / 10, missing: r.chance(0.5) ? 'pass' : 'fail' })],
  ['engagement_score', (r) => ({ min: r.int(2, 6) / 10, missing: 'pass' })],
  ['credit_band', (r) => ({ max: r.int(2, 4), missing: 'pass' })],
];

function drawFields(random: DemoRandom, count: number): Record<string, Range> {
  const left = [...ACQUISITION_FIELDS];
  const fields: Record<string, Range> = {};
  for (let k = 0; k < count; k++) {
    const [name, range] = left.splice(random.int(0, left.length - 1), 1)[0]!;
    fields[name] = range(random);
  }
  return fields;
}

/** Android most, iOS next, about a fifth for every platform, a few for the other platforms only. */
function drawOs(random: DemoRandom): OsName[] | undefined {
  const draw = random.unit();
  if (draw < 0.45) return ['android'];
  if (draw < 0.75) return ['ios'];
  if (draw < 0.95) return undefined;
  return ['other', 'unknown'];
}

function drawBid(random: DemoRandom, shape: { target: [number, number]; minValue: [number, number]; assumeApproved?: boolean; cpc?: boolean }): BidParams {
  const minCoefficient = random.int(3, 5) / 10;
  return {
    targetValueFen: random.int(shape.target[0] / 100, shape.target[1] / 100) * 100,
    minValueFen: random.int(shape.minValue[0] / 100, shape.minValue[1] / 100) * 100,
    exponent: random.int(4, 10) / 10,
    minCoefficient,
    maxCoefficient: random.int(15, 40) / 10,
    assumeApproved: shape.assumeApproved ?? false,
    lossGivenDefaultFen: random.int(12, 18) * 10_000,
    cpaBidFen: 0,
    cpcBidFen: shape.cpc ? random.int(8, 20) * 10 : 0,
  };
}

/** The bid as a person writes it: defaults left out. */
function writtenBid(bid: BidParams): Partial<BidParams> {
  const written: Partial<BidParams> = { ...bid };
  if (!bid.assumeApproved) delete written.assumeApproved;
  if (bid.cpaBidFen === 0) delete written.cpaBidFen;
  if (bid.cpcBidFen === 0) delete written.cpcBidFen;
  return written;
}

/**
 * An arm's value for a lever. Coefficient bounds only widen (a lower floor, a higher ceiling), so arms of different
 * layers that a device is in at once never cross them.
 */
function override(random: DemoRandom, lever: Lever, bid: BidParams, arm: number): number {
  const step = arm === 1 ? 0.8 : 1.25;
  switch (lever) {
    case 'exponent':
      return Math.min(4, Math.round(bid.exponent * (arm === 1 ? 1.4 : 0.7) * 100) / 100);
    case 'targetValueFen':
      return Math.round((bid.targetValueFen * step) / 100) * 100;
    case 'minValueFen':
      return Math.round((bid.minValueFen * step + 200) / 100) * 100;
    case 'maxCoefficient':
      return Math.min(5, Math.round(bid.maxCoefficient * (arm === 1 ? 1.2 : 1.4) * 10) / 10);
    case 'minCoefficient':
      return Math.max(0.2, Math.round(bid.minCoefficient * (arm === 1 ? 0.8 : 0.6) * 100) / 100);
    case 'cpcBidFen':
      return random.int(8, 25) * 10;
    case 'cpaBidFen':
      return random.int(30, 80) * 100;
    case 'lossGivenDefaultFen':
      return Math.round((bid.lossGivenDefaultFen * step) / 1000) * 1000;
  }
}

/** 1-4 creatives; every rule but the default one looks at something the growth team tailors creatives to. */
function drawCreatives(random: DemoRandom, nextId: () => number): Creative[] {
  const rules: ConditionInput[] = [
    { os: ['ios'] },
    { scores: { apply: { min: 0.3 } } },
    { fields: { credit_limit_hundred_yuan: { min: 200 } } },
    { fields: { region_tier: { max: 2 } } },
    { flagsAny: ['applied'] },
    { scores: { ltv: { min: 1_500 } } },
  ];
  const creatives: Creative[] = [];
  for (let k = random.int(1, 4) - 1; k > 0; k--) creatives.push({ id: nextId(), when: rules.splice(random.int(0, rules.length - 1), 1)[0]! });
  creatives.push({ id: nextId() });
  return creatives;
}

const ARM_SHARES: number[][] = [
  [50, 50],
  [30, 70],
  [90, 10],
  [34, 33, 33],
  [20, 40, 40],
  [50, 25, 25],
];

/** `total` split into `parts` counts that differ by a few, none below 6: every layer holds several experiments. */
function splitEvenly(random: DemoRandom, total: number, parts: number): number[] {
  const counts = Array.from({ length: parts }, () => Math.floor(total / parts));
  for (let left = total - counts.reduce((a, b) => a + b, 0); left > 0; left--) counts[random.int(0, parts - 1)]!++;
  for (let moves = parts * 2; moves > 0; moves--) {
    const from = random.int(0, parts - 1);
    if (counts[from]! <= 6) continue;
    counts[from]!--;
    counts[random.int(0, parts - 1)]!++;
  }
  return counts;
}

function main(args: string[]): number {
  const { values } = parseArgs({ args, options: { seed: { type: 'string', default: '1' }, out: { type: 'string' } }, strict: true });
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed must be an integer, got ${values.seed}`);
  const json = `${JSON.stringify(bigBook(seed), null, 2)}\n`;
  if (values.out) writeFileSync(values.out, json);
  else process.stdout.write(json);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
