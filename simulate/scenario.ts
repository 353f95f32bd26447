import { Agent, request } from 'node:http';
import { nativeClient } from '../src/media/native/client.js';
import { LOSS_GIVEN_DEFAULT_FEN, type Market, type Person } from './world.js';

/**
 * One scenario of the simulation: simulated hours of impressions, each an auction the media runs between our
 * campaign and the other advertisers. With an engine, each impression first asks it (a real RTA request to the real
 * server) whether and how much to bid, and each outcome goes back to its events endpoint; without one, the campaign
 * bids the same on every impression, as it would without RTA.
 */

export interface Engine {
  mediaUrl: string;
  adminUrl: string;
  /** The controllers and the learner look every this many simulated hours (the loop); null leaves them alone. */
  lookEveryHours: number | null;
  /**
   * A simulated hour lasts at least this long in real time: the engine's clocks (the learner's labelAfterSeconds)
   * run in real time, so simulated hours must pass at a steady pace, whatever the machine's speed.
   */
  hourMillis: number;
}

export interface DayResult {
  day: number;
  impressions: number;
  spendFen: number;
  clicks: number;
  applications: number;
  approved: number;
  /** Approved customers who will default (the truth knows it at approval; no event tells the engine). */
  defaulting: number;
  /** What the day's approved customers are worth: their lifetime value, or the loss of those who default (fen). */
  valueFen: number;
}

export interface ScenarioResult {
  days: DayResult[];
  /** Events the engine's attribution could not join (should be 0: every event has a real decision). */
  unmatchedEvents: number;
  requests: number;
  /** Book versions the controllers made, and model versions the learner published. */
  controllerChanges: number;
  /** The engine's own view at the end, per strategy (GET /results): what attribution joined. */
  engineView: { strategy: string; takes: number; costFen: number; approved: number }[];
  /** The learner's looks, by the simulated hour they were made at (the loop only). */
  learningLooks: { hour: number; result: string; version: string; reason: string }[];
}

export interface ScenarioOptions {
  days: number;
  impressionsPerDay: number;
  /** The media's creatives for our campaign without RTA (it rotates them). */
  defaultCreatives: readonly number[];
  onHour?: (hour: number, totalHours: number) => void;
}

const HOUR_MS = 3_600_000;
const CONCURRENCY = 32;
/** Busy hours in the media's day (China Standard Time), as shares of a day's impressions. */
const HOURLY_WEIGHT = [2, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 5, 6, 5, 5, 5, 5, 5, 6, 7, 7, 6, 5, 3];
const WEIGHT_TOTAL = HOURLY_WEIGHT.reduce((sum, w) => sum + w, 0);
const HOURLY_SHARE = HOURLY_WEIGHT.map((w) => w / WEIGHT_TOTAL);

/** What chance decides about one impression, drawn before anyone bids, so every scenario meets the same market. */
interface Impression {
  person: Person;
  atMs: number;
  competingBidFen: number;
  click: number;
  apply: number;
  approve: number;
  defaults: number;
  creativeDraw: number;
  clickDelayMs: number;
  applyDelayMs: number;
  approveDelayMs: number;
}

interface Bid {
  strategyId: string;
  coefficient: number;
  creativeId: number;
}

interface PendingEvent {
  atMs: number;
  line: string;
}

export async function runScenario(market: Market, engine: Engine | null, options: ScenarioOptions): Promise<ScenarioResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const days: DayResult[] = [];
  const pending: PendingEvent[] = [];
  const result: ScenarioResult = { days, unmatchedEvents: 0, requests: 0, controllerChanges: 0, engineView: [], learningLooks: [] };
  const totalHours = options.days * 24;
  for (let hour = 0; hour < totalHours; hour++) {
    const day = Math.floor(hour / 24);
    if (hour % 24 === 0) days.push({ day: day + 1, impressions: 0, spendFen: 0, clicks: 0, applications: 0, approved: 0, defaulting: 0, valueFen: 0 });
    const today = days[day]!;
    const hourStarted = Date.now();
    const impressions = drawHour(market, hour, Math.round(options.impressionsPerDay * HOURLY_SHARE[hour % 24]!));
    const bids = engine ? await askEngine(engine, agent, impressions, hour) : impressions.map((imp) => noRtaBid(imp, options.defaultCreatives));
    result.requests += engine ? impressions.length : 0;
    for (const [i, imp] of impressions.entries()) {
      const bid = bids[i];
      if (!bid) continue;
      const bidFen = market.parameters.baseBidFen * bid.coefficient;
      if (bidFen <= imp.competingBidFen) continue;
      const costFen = Math.max(1, Math.round(imp.competingBidFen));
      today.impressions++;
      today.spendFen += costFen;
      const traceId = `sim-${hour}-${i}`;
      const event = (name: string, atMs: number, extra = '') =>
        pending.push({ atMs, line: `{"trace_id":"${traceId}","media":"native","strategy_id":"${bid.strategyId}","event":"${name}"${extra}}` });
      event('impression', imp.atMs, `,"cost_fen":${costFen}`);
      const person = imp.person;
      if (imp.click >= person.clickChance * (market.creativeLift.get(bid.creativeId) ?? 1)) continue;
      today.clicks++;
      const clickMs = imp.atMs + imp.clickDelayMs;
      event('click', clickMs);
      if (person.approved || imp.apply >= person.applyChance) continue;
      const applyMs = clickMs + imp.applyDelayMs;
      event('credit_application', applyMs);
      today.applications++;
      if (imp.approve >= person.approveChance) continue;
      // Counted on the day of the impression that bought them, as their cost was.
      person.approved = true;
      today.approved++;
      const defaults = imp.defaults < person.defaultChance;
      if (defaults) today.defaulting++;
      today.valueFen += defaults ? -LOSS_GIVEN_DEFAULT_FEN : person.lifetimeValueFen;
      event('credit_approved', applyMs + imp.approveDelayMs);
    }
    if (engine) {
      result.unmatchedEvents += await postDueEvents(engine, agent, pending, (hour + 1) * HOUR_MS);
      if (engine.lookEveryHours !== null && (hour + 1) % engine.lookEveryHours === 0) result.controllerChanges += await look(engine, agent, hour + 1, result.learningLooks);
      const rest = hourStarted + engine.hourMillis - Date.now();
      if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
    }
    options.onHour?.(hour + 1, totalHours);
  }
  if (engine) {
    result.unmatchedEvents += await postDueEvents(engine, agent, pending, Infinity);
    const report = JSON.parse((await get(agent, `${engine.adminUrl}/results?by=strategy`)).toString()) as {
      rows: { strategy: string; takes: number; costFen: number; events: Record<string, number> }[];
    };
    result.engineView = report.rows.map((r) => ({ strategy: r.strategy, takes: r.takes, costFen: r.costFen, approved: r.events.credit_approved ?? 0 }));
  }
  agent.destroy();
  return result;
}

function drawHour(market: Market, hour: number, count: number): Impression[] {
  return Array.from({ length: count }, () => ({
    person: market.visitor(),
    atMs: (hour + market.draw()) * HOUR_MS,
    competingBidFen: market.competingBidFen(),
    click: market.draw(),
    apply: market.draw(),
    approve: market.draw(),
    defaults: market.draw(),
    creativeDraw: market.draw(),
    clickDelayMs: market.delay(5 * 60_000),
    applyDelayMs: market.delay(3 * HOUR_MS),
    approveDelayMs: market.delay(8 * HOUR_MS),
  }));
}

function noRtaBid(imp: Impression, creatives: readonly number[]): Bid {
  return { strategyId: '', coefficient: 1, creativeId: creatives[Math.floor(imp.creativeDraw * creatives.length)]! };
}

/** One request per impression, CONCURRENCY at a time; the strategy with the highest coefficient bids. */
async function askEngine(engine: Engine, agent: Agent, impressions: Impression[], hour: number): Promise<(Bid | null)[]> {
  const bids: (Bid | null)[] = new Array(impressions.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < impressions.length) {
      const i = next++;
      const imp = impressions[i]!;
      const { body, contentType } = nativeClient.encodeRequest({
        requestId: `sim-${hour}-${i}`,
        os: imp.person.os,
        ids: imp.person.ids,
        platformExperimentIds: [],
        isPing: false,
        isTest: false,
        secondRequest: false,
        ads: [],
      });
      const reply = nativeClient.decodeReply(await post(agent, `${engine.mediaUrl}${nativeClient.path}`, body, contentType), contentType) as {
        decisions?: { strategy_id: string; coefficient: number; creative_id: string }[];
      };
      let best: Bid | null = null;
      for (const d of reply.decisions ?? []) {
        if (!best || d.coefficient > best.coefficient) best = { strategyId: d.strategy_id, coefficient: d.coefficient, creativeId: Number(d.creative_id) };
      }
      bids[i] = best;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  await caughtUp(engine, agent);
  return bids;
}

/** Waits until attribution has read every decision sent so far, so the hour's events find theirs. */
async function caughtUp(engine: Engine, agent: Agent): Promise<void> {
  const logged = await metric(engine, agent, 'rta_decision_log_records_total{result="logged"}');
  for (let tries = 0; tries < 500; tries++) {
    if ((await metric(engine, agent, 'rta_attribution_log_records_total')) >= logged) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('attribution did not read the decision log within 5 s');
}

async function metric(engine: Engine, agent: Agent, name: string): Promise<number> {
  const text = (await get(agent, `${engine.adminUrl}/metrics`)).toString();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/** Posts the events due by `untilMs` (simulated), stamped now: the engine's clock runs while the simulated one jumps. */
async function postDueEvents(engine: Engine, agent: Agent, pending: PendingEvent[], untilMs: number): Promise<number> {
  const due: string[] = [];
  let kept = 0;
  for (const event of pending) {
    if (event.atMs < untilMs) due.push(event.line);
    else pending[kept++] = event;
  }
  pending.length = kept;
  if (due.length === 0) return 0;
  const now = Date.now();
  const body = Buffer.from(due.map((line) => `${line.slice(0, -1)},"event_time":${now}}`).join('\n'));
  const outcome = JSON.parse((await post(agent, `${engine.adminUrl}/events`, body, 'application/x-ndjson')).toString()) as { unmatched: number; refused: number; refusals: unknown[] };
  if (outcome.refused > 0) throw new Error(`the engine refused simulated events: ${JSON.stringify(outcome.refusals.slice(0, 3))}`);
  return outcome.unmatched;
}

/** Asks every controller and the learner for a look, as their schedules would; counts the changes they made. */
async function look(engine: Engine, agent: Agent, hour: number, learningLooks: ScenarioResult['learningLooks']): Promise<number> {
  const body = Buffer.from(JSON.stringify({ author: 'simulator', message: `simulated hour ${hour}` }));
  let changed = 0;
  for (const controller of ['bid-tuning', 'creatives']) {
    const state = JSON.parse((await post(agent, `${engine.adminUrl}/controllers/${controller}/run`, body, 'application/json')).toString()) as { steps: { changed: boolean }[] };
    changed += state.steps.filter((s) => s.changed).length;
  }
  const learning = JSON.parse((await post(agent, `${engine.adminUrl}/learning/run`, body, 'application/json')).toString()) as { lastLook: { result: string; version: string; reason: string } };
  const { result, version, reason } = learning.lastLook;
  learningLooks.push({ hour, result, version, reason });
  if (result === 'published') changed++;
  return changed;
}

function post(agent: Agent, url: string, body: Uint8Array, contentType: string): Promise<Buffer> {
  return call(agent, url, 'POST', body, contentType);
}

function get(agent: Agent, url: string): Promise<Buffer> {
  return call(agent, url, 'GET', null, '');
}

function call(agent: Agent, url: string, method: string, body: Uint8Array | null, contentType: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-type': contentType, 'content-length': body.length } : {};
    const req = request(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const all = Buffer.concat(chunks);
        if (res.statusCode !== 200) reject(new Error(`${method} ${url}: HTTP ${res.statusCode} ${all.toString().slice(0, 300)}`));
        else resolve(all);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}
