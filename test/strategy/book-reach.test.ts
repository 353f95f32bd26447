import { describe, expect, test } from 'vitest';
import { chinaHourOfWeek, Verdict } from '../../src/strategy/book.js';
import { bidStrategy, buildBook, makeView, md5Key, onlyProblem, screenAndDecide, type ModelScores, type ViewSpec } from './support.js';

/**
 * Where, when and how many: the media a strategy bids on, its schedule (UTC+8), the cap on strategies per reply
 * with priorities, and shadow strategies, decided but never sent.
 */
/** Value = 0.5 x 0.5 x 400 yuan x 100 = 10,000 fen (no risk). */
const SCORES: ModelScores = { apply: 0.5, approve: 0.5, risk: 0, ltv: 400 };
const DEVICE: ViewSpec = { scores: SCORES, record: {} };

/** Milliseconds since the epoch at this wall-clock time in China (UTC+8). */
const chinaTime = (iso: string) => Date.parse(`${iso}+08:00`);

const taken = (book: ReturnType<typeof buildBook>, spec: ViewSpec = DEVICE) => screenAndDecide(book, spec).outcome?.strategies.map((s) => s.strategyId) ?? [];

describe('media', () => {
  const book = buildBook({ strategies: [bidStrategy('tencent_only', { targetValueFen: 8250 }, { media: ['tencent'] }), bidStrategy('anywhere', { targetValueFen: 8250 })] });

  test('a strategy with a media list bids on those media only; the others read other_media', () => {
    expect(taken(book, { ...DEVICE, media: 'tencent' })).toEqual(['tencent_only', 'anywhere']);
    const { mask, outcome } = screenAndDecide(book, { ...DEVICE, media: 'native' });
    expect(outcome?.strategies.map((s) => s.strategyId)).toEqual(['anywhere']);
    expect(mask[0]).toBe(Verdict.OTHER_MEDIA);
  });

  test('a media the engine does not serve is refused, with the ones it does', () => {
    expect(onlyProblem({ strategies: [bidStrategy('s', { targetValueFen: 1 }, { media: ['tencnet'] })] })).toMatch(
      /^strategies\[0\]\(s\)\.media: no media "tencnet" \(known: tencent, tencent-sp, ocean, native\)$/,
    );
  });
});

describe('ids on a media (mediaIds) and the strategies a request asks about', () => {
  const book = buildBook({
    strategies: [
      bidStrategy('acq', { targetValueFen: 8250 }, { mediaIds: { ocean: '7001' } }),
      bidStrategy('react', { targetValueFen: 8250 }, { mediaIds: { ocean: '7002', 'tencent-sp': 'sp_react' } }),
      bidStrategy('tencent_only', { targetValueFen: 8250 }, { media: ['tencent'] }),
    ],
  });

  test("each media's strategies by our id and theirs: the registered id where mediaIds gives one, our own elsewhere", () => {
    expect([...book.strategyIdsOn('ocean')]).toEqual([['acq', '7001'], ['react', '7002']]);
    expect([...book.strategyIdsOn('tencent-sp')]).toEqual([['acq', 'acq'], ['react', 'sp_react']]);
    expect([...book.strategyIdsOn('tencent')]).toEqual([['acq', 'acq'], ['react', 'react'], ['tencent_only', 'tencent_only']]);
    expect([...book.strategyIdsOn('no_such_media')]).toEqual([]);
  });

  test('a request that names the strategies it asks about gets only those, by their ids on its media; the others read not_asked', () => {
    const { mask, outcome } = screenAndDecide(book, { ...DEVICE, media: 'ocean', askedStrategyIds: ['7002'] });
    expect(outcome?.strategies.map((s) => s.strategyId)).toEqual(['react']);
    expect([...mask]).toEqual([Verdict.NOT_ASKED, Verdict.TAKEN, Verdict.OTHER_MEDIA]);
    expect(taken(book, { ...DEVICE, media: 'ocean', askedStrategyIds: [] })).toEqual([]);
  });

  test('a second request names the id we sent on that media: the ad bound to it is ours to price', () => {
    const mapped = buildBook({ strategies: [bidStrategy('acq', { targetValueFen: 8250 }, { mediaIds: { native: 'n_acq' } })] });
    const ads = [{ adGroupId: 1, advertiserId: 0, outTargetId: 'n_acq', creatives: [{ creativeId: 100, templateId: 1 }] }];
    const onNative = screenAndDecide(mapped, { ...DEVICE, media: 'native' }, { ads }).outcome!.adResults;
    expect(onNative).toEqual([{ adGroupId: 1, ignore: false, creatives: [{ creativeId: 100, raiseFactor: expect.any(Number) }] }]);
    expect(onNative[0]!.creatives[0]!.raiseFactor).toBeGreaterThan(0.2);
    // On Tencent the strategy is registered as "acq": "n_acq" names nothing of ours there.
    expect(screenAndDecide(mapped, { ...DEVICE, media: 'tencent' }, { ads }).outcome!.adResults).toEqual([{ adGroupId: 1, ignore: true, creatives: [] }]);
  });

  test('two strategies may not share an id on a media', () => {
    const clash = { strategies: [bidStrategy('acq', { targetValueFen: 1 }, { mediaIds: { ocean: '7001' } }), bidStrategy('react', { targetValueFen: 1 }, { mediaIds: { ocean: '7001' } })] };
    expect(onlyProblem(clash)).toBe('strategies acq and react: both would be "7001" on ocean; give one of them another mediaIds.ocean');
    const ownId = { strategies: [bidStrategy('acq', { targetValueFen: 1 }), bidStrategy('react', { targetValueFen: 1 }, { mediaIds: { tencent: 'acq' } })] };
    expect(onlyProblem(ownId)).toMatch(/^strategies acq and react: both would be "acq" on tencent/);
  });

  test('a strategy whose id cannot be an Ocean RTA id does not bid there: a warning when the book uses Ocean, a problem when it names Ocean', () => {
    expect(book.warnings).toEqual([]);
    const mixed = buildBook({ strategies: [bidStrategy('acq', { targetValueFen: 8250 }, { mediaIds: { ocean: '7001' } }), bidStrategy('react', { targetValueFen: 8250 })] });
    expect(mixed.warnings).toEqual([expect.stringMatching(/^strategies\[1\]\(react\): not bidding on ocean, where ids must match .*: set mediaIds\.ocean/)]);
    expect(taken(mixed, { ...DEVICE, media: 'ocean', askedStrategyIds: ['7001', 'react'] })).toEqual(['acq']);
    expect(taken(mixed, { ...DEVICE, media: 'tencent' })).toEqual(['acq', 'react']);
    expect(buildBook({ strategies: [bidStrategy('react', { targetValueFen: 8250 })] }).warnings).toEqual([]);
    expect(onlyProblem({ strategies: [bidStrategy('react', { targetValueFen: 1 }, { media: ['ocean'] })] })).toMatch(/^strategies\[0\]\(react\): "react" cannot be its id on ocean/);
    expect(onlyProblem({ strategies: [bidStrategy('react', { targetValueFen: 1 }, { mediaIds: { ocean: '-5' } })] })).toMatch(/"-5" cannot be its id on ocean/);
    expect(onlyProblem({ strategies: [bidStrategy('react', { targetValueFen: 1 }, { mediaIds: { oceans: '7' } })] })).toMatch(/^strategies\[0\]\(react\)\.mediaIds: no media "oceans"/);
  });
});

describe('schedule', () => {
  test('hour of the week in China: Monday 00:00 is 0, Thursday 1970-01-01 08:00 is 3 x 24 + 8', () => {
    expect(chinaHourOfWeek(chinaTime('2026-11-30T00:00:00'))).toBe(0);
    expect(chinaHourOfWeek(chinaTime('2026-11-30T23:59:59'))).toBe(23);
    expect(chinaHourOfWeek(chinaTime('2026-12-06T23:00:00'))).toBe(6 * 24 + 23);
    expect(chinaHourOfWeek(0)).toBe(3 * 24 + 8);
  });

  test('a strategy bids only in its hours and weekdays, China time; outside it reads off_schedule', () => {
    let now = 0;
    const book = buildBook(
      { strategies: [bidStrategy('office', { targetValueFen: 8250 }, { schedule: { hours: [9, 10, 11], weekdays: [1, 2, 3, 4, 5] } }), bidStrategy('always', { targetValueFen: 8250 })] },
      () => now,
    );
    const at = (iso: string) => {
      now = chinaTime(iso);
      return screenAndDecide(book, DEVICE);
    };
    // 2026-12-02 is a Wednesday.
    expect(at('2026-12-02T09:00:00').outcome?.strategies.map((s) => s.strategyId)).toEqual(['office', 'always']);
    expect(at('2026-12-02T11:59:59').outcome?.strategies.map((s) => s.strategyId)).toEqual(['office', 'always']);
    const evening = at('2026-12-02T12:00:00');
    expect(evening.outcome?.strategies.map((s) => s.strategyId)).toEqual(['always']);
    expect(evening.mask[0]).toBe(Verdict.OFF_SCHEDULE);
    // 01:00 UTC on a Wednesday is 09:00 in China: the schedule is not the machine's time zone.
    now = Date.parse('2026-12-02T01:00:00Z');
    expect(screenAndDecide(book, DEVICE).mask[0]).toBe(Verdict.TAKEN);
    expect(at('2026-12-05T10:00:00').mask[0]).toBe(Verdict.OFF_SCHEDULE);
  });

  test('hours alone mean every day, weekdays alone every hour', () => {
    let now = chinaTime('2026-12-06T03:00:00');
    const book = buildBook(
      { strategies: [bidStrategy('night', { targetValueFen: 8250 }, { schedule: { hours: [3] } }), bidStrategy('weekend', { targetValueFen: 8250 }, { schedule: { weekdays: [6, 7] } })] },
      () => now,
    );
    expect(taken(book)).toEqual(['night', 'weekend']);
    now = chinaTime('2026-12-07T03:00:00');
    expect(taken(book)).toEqual(['night']);
  });

  test('an hour or weekday out of range is refused', () => {
    expect(onlyProblem({ strategies: [bidStrategy('s', { targetValueFen: 1 }, { schedule: { hours: [24] } })] })).toMatch(/strategies\[0\]\(s\)\.schedule\.hours\[0\]/);
    expect(onlyProblem({ strategies: [bidStrategy('s', { targetValueFen: 1 }, { schedule: { weekdays: [0] } })] })).toMatch(/strategies\[0\]\(s\)\.schedule\.weekdays\[0\]/);
  });
});

describe('maxStrategiesPerReply and priority', () => {
  /** Four strategies that all take DEVICE, coefficients 1, 2, 0.5, 2. */
  const four = (priorities: number[], max?: number) =>
    buildBook({
      ...(max !== undefined ? { maxStrategiesPerReply: max } : {}),
      strategies: [10_000, 5000, 20_000, 5000].map((target, i) => bidStrategy(`s${i}`, { targetValueFen: target }, { priority: priorities[i] })),
    });

  test('without a cap every strategy that wants the device is in the reply', () => {
    expect(taken(four([0, 0, 0, 0]))).toEqual(['s0', 's1', 's2', 's3']);
  });

  test('with a cap, higher priority stays; the rest read capped; the reply keeps file order', () => {
    const { outcome, mask } = screenAndDecide(four([0, 5, 9, 0], 2), DEVICE);
    expect(outcome?.strategies.map((s) => s.strategyId)).toEqual(['s1', 's2']);
    expect([...mask]).toEqual([Verdict.CAPPED, Verdict.TAKEN, Verdict.TAKEN, Verdict.CAPPED]);
  });

  test('equal priorities: higher coefficient first, then file order', () => {
    expect(taken(four([0, 0, 0, 0], 1))).toEqual(['s1']);
    expect(taken(four([0, 0, 0, 0], 2))).toEqual(['s1', 's3']);
    expect(taken(four([0, 0, 0, 0], 3))).toEqual(['s0', 's1', 's3']);
  });

  test('the neutral fallback (no scores) keeps the cap too: by priority, then file order', () => {
    const book = four([0, 5, 9, 0], 2);
    const view = makeView(DEVICE);
    const mask = new Uint8Array(book.bidStrategyCount);
    book.screen(view, mask);
    expect(book.neutral(view, mask, md5Key('d'), 0).strategies.map((s) => s.strategyId)).toEqual(['s1', 's2']);
  });

  test('a cap of 0 is refused', () => {
    expect(onlyProblem({ maxStrategiesPerReply: 0, strategies: [bidStrategy('s', { targetValueFen: 1 })] })).toMatch(/^maxStrategiesPerReply: /);
  });
});

describe('shadow', () => {
  const book = buildBook({
    maxStrategiesPerReply: 1,
    strategies: [bidStrategy('trial', { targetValueFen: 5000 }, { shadow: true, priority: 9 }), bidStrategy('live', { targetValueFen: 8250 })],
  });

  test('a shadow strategy is decided like any other but never sent, and takes no place under the cap', () => {
    const { outcome, mask } = screenAndDecide(book, DEVICE);
    expect(outcome?.strategies.map((s) => s.strategyId)).toEqual(['live']);
    expect([...mask]).toEqual([Verdict.SHADOW, Verdict.TAKEN]);
    // What it would have sent: value 10,000 fen against its target 5000.
    expect([book.scratch.coefficient[0], book.scratch.creativeId[0]]).toEqual([2, 100]);
  });

  test('nor in the neutral fallback', () => {
    const view = makeView(DEVICE);
    const mask = new Uint8Array(book.bidStrategyCount);
    book.screen(view, mask);
    expect(book.neutral(view, mask, md5Key('d'), 0).strategies.map((s) => s.strategyId)).toEqual(['live']);
  });
});
