import { DeviceIdKind } from '../engine/types.js';

/**
 * The synthetic demo population (spec and distributions in data/README.md). Every device is drawn from one seeded
 * PRNG, so a seed and a device count always give the same population; the scoring models are trained on the same
 * spec. Nothing here is, or is derived from, real data.
 */
export const DEMO_GENERATOR_VERSION = 1;
/** `updated_day` of every demo profile: days since 1970-01-01 of 2025-06-01. */
export const DEMO_UPDATED_DAY = 20240;

export type DemoSegment = 'active_borrower' | 'dormant_approved' | 'registered_not_approved' | 'blacklisted' | 'high_risk' | 'prospect';

export const DEMO_SEGMENT_SHARES: ReadonlyArray<readonly [DemoSegment, number]> = [
  ['active_borrower', 0.08],
  ['dormant_approved', 0.1],
  ['registered_not_approved', 0.12],
  ['blacklisted', 0.02],
  ['high_risk', 0.05],
  ['prospect', 0.63],
];

export interface DemoRawId {
  kind: DeviceIdKind;
  raw: string;
}

export interface DemoDevice {
  os: 'android' | 'ios';
  rawIds: DemoRawId[];
  segment: DemoSegment;
  flags: string[];
  /** Profile values by schema field name (flags aside); NaN = missing. */
  values: Record<string, number>;
}

/** xoshiro128** seeded through splitmix32: small, fast, and the same sequence on every platform. */
export class DemoRandom {
  private readonly state = new Uint32Array(4);

  constructor(seed: number) {
    let mix = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      mix = (mix + 0x9e3779b9) >>> 0;
      let z = mix;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.state[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  uint32(): number {
    const s = this.state;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2] ^= s[0]!;
    s[3] ^= s[1]!;
    s[1] ^= s[2]!;
    s[0] ^= s[3]!;
    s[2] ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  unit(): number {
    return this.uint32() / 2 ** 32;
  }

  /** Uniform integer in min..max, both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.unit() * (max - min + 1));
  }

  chance(probability: number): boolean {
    return this.unit() < probability;
  }

  /** Uniform in min..max rounded to 3 decimals: exact in JSON, the same f32 whichever way it reaches a record. */
  score(min: number, max: number): number {
    return Math.round((min + this.unit() * (max - min)) * 1000) / 1000;
  }

  /** Knuth's multiplication method; fine for the small means used here. */
  poisson(mean: number): number {
    const limit = Math.exp(-mean);
    let count = 0;
    for (let product = this.unit(); product > limit; product *= this.unit()) count++;
    return count;
  }

  hex(digits: number): string {
    let text = '';
    while (text.length < digits) text += this.uint32().toString(16).padStart(8, '0');
    return text.slice(0, digits);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Raw ids in the shapes media send: OAID and IDFA as version-4 UUIDs, IMEI as 15 digits with a Luhn check digit. */
export function drawDemoRawIds(random: DemoRandom, os: DemoDevice['os']): DemoRawId[] {
  if (os === 'android') {
    const ids: DemoRawId[] = [{ kind: DeviceIdKind.OAID_MD5, raw: uuid(random) }];
    if (random.chance(0.6)) ids.push({ kind: DeviceIdKind.IMEI_MD5, raw: imei(random) });
    return ids;
  }
  const ids: DemoRawId[] = [{ kind: DeviceIdKind.IDFA_MD5, raw: uuid(random).toUpperCase() }];
  if (random.chance(0.5)) ids.push({ kind: DeviceIdKind.CAID_MD5, raw: random.hex(32) });
  return ids;
}

export function drawDemoDevice(random: DemoRandom): DemoDevice {
  const os = random.chance(0.75) ? 'android' : 'ios';
  const rawIds = drawDemoRawIds(random, os);
  const segment = drawSegment(random);
  const prospect = segment === 'prospect';
  const values: Record<string, number> = {
    multi_lender_count: segment === 'high_risk' ? random.int(5, 12) : random.poisson(1.2),
    credit_band: prospect && random.chance(0.4) ? NaN : random.int(1, 5),
    days_since_last_active: NaN,
    finance_app_count: random.int(0, 15),
    region_tier: random.int(1, 5),
    income_score: prospect && random.chance(0.3) ? NaN : random.score(0, 1),
    engagement_score: prospect && random.chance(0.5) ? NaN : random.score(0, 1),
    repay_score: NaN,
    credit_limit_hundred_yuan: NaN,
    past_loan_count: NaN,
    device_price_band: random.int(1, 5),
    ltv_prior_yuan: prospect ? NaN : random.int(0, 3000),
    updated_day: DEMO_UPDATED_DAY,
  };
  const flags: string[] = [];
  switch (segment) {
    case 'active_borrower':
      flags.push('registered', 'applied', 'approved', 'active_borrower');
      values.days_since_last_active = random.int(0, 30);
      values.repay_score = random.score(0.6, 1);
      values.credit_limit_hundred_yuan = random.int(10, 500);
      values.past_loan_count = random.int(1, 20);
      break;
    case 'dormant_approved':
      flags.push('registered', 'applied', 'approved', 'dormant');
      values.days_since_last_active = random.int(90, 720);
      values.repay_score = random.score(0.3, 1);
      values.credit_limit_hundred_yuan = random.int(10, 500);
      values.past_loan_count = random.int(0, 20);
      break;
    case 'registered_not_approved':
      flags.push('registered');
      if (random.chance(0.5)) flags.push('applied');
      values.days_since_last_active = random.int(0, 365);
      values.past_loan_count = 0;
      break;
    case 'blacklisted':
      flags.push('blacklisted');
      if (random.chance(0.5)) flags.push('registered', 'applied');
      values.days_since_last_active = random.int(0, 720);
      values.repay_score = random.score(0, 0.5);
      values.past_loan_count = random.int(0, 20);
      break;
    case 'high_risk':
      flags.push('overdue_recent');
      values.repay_score = random.score(0, 0.5);
      values.past_loan_count = random.int(1, 20);
      break;
    case 'prospect':
      break;
  }
  return { os, rawIds, segment, flags, values };
}

function drawSegment(random: DemoRandom): DemoSegment {
  let draw = random.unit();
  for (const [segment, share] of DEMO_SEGMENT_SHARES) {
    if (draw < share) return segment;
    draw -= share;
  }
  return 'prospect';
}

function uuid(random: DemoRandom): string {
  const hex = random.hex(32);
  const variant = '89ab'[random.int(0, 3)]!;
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function imei(random: DemoRandom): string {
  let body = '86';
  for (let i = 0; i < 12; i++) body += random.int(0, 9);
  return body + luhnCheckDigit(body);
}

function luhnCheckDigit(body: string): number {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    const digit = body.charCodeAt(body.length - 1 - i) - 48;
    const doubled = i % 2 === 0 ? digit * 2 : digit;
    sum += doubled > 9 ? doubled - 9 : doubled;
  }
  return (10 - (sum % 10)) % 10;
}
