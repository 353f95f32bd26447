import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { CandidateAd } from '../../src/engine/types.js';
import { StrategyBook, parseStrategyFile } from '../../src/strategy/book.js';
import type { DeviceView } from '../../src/strategy/device-view.js';
import { ProfileRecordWriter } from '../../src/store/profile-record.js';
import { DEFAULT_PROFILE_SCHEMA_PATH, loadProfileSchema } from '../../src/store/profile-schema.js';

/**
 * Hand-made inputs for the strategy book: a book built from an inline JSON file, and device views whose scores
 * are exactly the numbers a test chooses, so coefficients can be checked by hand.
 */

export const profile = loadProfileSchema(DEFAULT_PROFILE_SCHEMA_PATH);

/** Deliberately not the manifest order, with an extra model, so the book must map the value models by name. */
export const MODEL_NAMES = ['risk', 'fraud', 'ltv', 'apply', 'approve'] as const;
/** Scores sit behind junk at a non-zero offset, as in a shared scoring batch. */
const SCORES_OFFSET = 3;
const JUNK_SCORE = 777;

export type ModelScores = Partial<Record<(typeof MODEL_NAMES)[number], number>>;

export interface ViewSpec {
  /** The media's route name; tencent unless given. */
  media?: string;
  os?: number;
  /** Flags and field values for a known device; omit for an unknown device. */
  record?: { flags?: string[]; fields?: Record<string, number> };
  platformExperimentIds?: number[];
  /** The strategies the media asks about (Ocean); every strategy unless given. */
  askedStrategyIds?: string[];
  scores?: ModelScores;
}

export function makeView(spec: ViewSpec = {}): DeviceView {
  const scores = new Float32Array(SCORES_OFFSET + MODEL_NAMES.length).fill(JUNK_SCORE);
  MODEL_NAMES.forEach((name, i) => (scores[SCORES_OFFSET + i] = spec.scores?.[name] ?? NaN));
  let records: Uint8Array | null = null;
  let flags = 0;
  if (spec.record) {
    const writer = new ProfileRecordWriter(profile);
    const flagsField = profile.field('flags');
    const flagProblem = writer.writeFlags(flagsField, spec.record.flags ?? []);
    if (flagProblem) throw new Error(flagProblem);
    for (const [name, value] of Object.entries(spec.record.fields ?? {})) {
      const problem = writer.write(profile.field(name), value);
      if (problem) throw new Error(problem);
    }
    // Put the record at a non-zero offset, as in the real store.
    records = new Uint8Array(profile.recordBytes * 2);
    records.set(writer.record, profile.recordBytes);
    flags = writer.record[flagsField.offset]! | (writer.record[flagsField.offset + 1]! << 8);
  }
  return {
    media: spec.media ?? 'tencent',
    os: spec.os ?? 2,
    records,
    recordOffset: records !== null ? profile.recordBytes : 0,
    flags,
    platformExperimentIds: spec.platformExperimentIds ?? [],
    askedStrategyIds: spec.askedStrategyIds ?? null,
    scores,
    scoresOffset: SCORES_OFFSET,
  };
}

/** `clock` for schedules: the book reads it once per screen. */
export function buildBook(json: unknown, clock?: () => number): StrategyBook {
  return new StrategyBook(parseStrategyFile(json, 'test strategies'), profile, MODEL_NAMES, 'test', clock);
}

/** Why a strategy file is refused (parsing or compiling it), or undefined when it is accepted. */
export function problemWith(json: unknown): string | undefined {
  try {
    buildBook(json);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export function refusal(json: unknown): string {
  const problem = problemWith(json);
  if (problem === undefined) throw new Error('the strategy file was accepted');
  return problem;
}

/** The `<path>: <message>` lines of a refusal, once its first line has named the file and counted them right. */
export function refusedProblems(json: unknown): string[] {
  const [head, ...lines] = refusal(json).split('\n');
  expect(head).toBe(`test strategies is invalid (${lines.length === 1 ? '1 error' : `${lines.length} errors`}):`);
  for (const line of lines) expect(line).toMatch(/^ {2}\S/);
  return lines.map((line) => line.slice(2));
}

/** The one problem of a file refused for exactly one. */
export function onlyProblem(json: unknown): string {
  const problems = refusedProblems(json);
  expect(problems).toHaveLength(1);
  return problems[0]!;
}

export function md5Key(text: string): Uint8Array {
  return new Uint8Array(createHash('md5').update(text).digest());
}

/** A bidding strategy that wants every device, with the given bid parameters and one default creative. */
export function bidStrategy(id: string, bid: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return { id, kind: 'bid', bid, creatives: [{ id: 100 }], ...extra };
}

/** Screens and, when the screen lets the device through, decides: the two steps the engine runs around scoring. */
export function screenAndDecide(book: StrategyBook, spec: ViewSpec, options: { key?: Uint8Array; ads?: CandidateAd[] } = {}) {
  const view = makeView(spec);
  const mask = new Uint8Array(book.bidStrategyCount);
  const screen = book.screen(view, mask);
  const key = options.key ?? md5Key('default device');
  const outcome = screen.exclusion === null && screen.candidates > 0 ? book.decide(view, mask, key, 0, options.ads ?? []) : null;
  return { screen, mask, outcome };
}

/** The decision of one strategy, or undefined when that strategy did not take the device. */
export function strategyDecision(book: StrategyBook, spec: ViewSpec, strategyId: string, options: { key?: Uint8Array; ads?: CandidateAd[] } = {}) {
  return screenAndDecide(book, spec, options).outcome?.strategies.find((s) => s.strategyId === strategyId);
}
