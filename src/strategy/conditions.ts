import { Os } from '../engine/types.js';
import { readField, type ProfileSchema } from '../store/profile-schema.js';
import type { DeviceView } from './device-view.js';
import type { Condition, Range } from './schema.js';

/**
 * Compiles a strategy condition into a predicate once, at load time, so a request only runs small closures over
 * integers. Unknown names (flags, fields, models) are reported to `problems` with the path that used them, every one
 * of them, so a strategy file is refused once with all its mistakes; a condition with problems must not be used.
 */
export interface CompiledCondition {
  /** Needs model scores, so it can only run after scoring. */
  needsScores: boolean;
  test(view: DeviceView): boolean;
}

export interface ConditionScope {
  profile: ProfileSchema;
  /** Index of a model's score in the scores array, by model name. */
  modelIndex: ReadonlyMap<string, number>;
}

const OS_BY_NAME = { android: Os.ANDROID, ios: Os.IOS, other: Os.OTHER, unknown: Os.UNKNOWN } as const;

export function compileCondition(condition: Condition, scope: ConditionScope, where: string, problems: string[]): CompiledCondition {
  const parts: CompiledCondition[] = [];
  if (condition.os) {
    const allowed = new Set<number>(condition.os.map((name) => OS_BY_NAME[name]));
    parts.push({ needsScores: false, test: (v) => allowed.has(v.os) });
  }
  if (condition.known !== undefined) {
    const known = condition.known;
    parts.push({ needsScores: false, test: (v) => (v.records !== null) === known });
  }
  if (condition.flagsAll) {
    const mask = flagMask(condition.flagsAll, scope, `${where}.flagsAll`, problems);
    parts.push({ needsScores: false, test: (v) => (v.flags & mask) === mask });
  }
  if (condition.flagsAny) {
    const mask = flagMask(condition.flagsAny, scope, `${where}.flagsAny`, problems);
    parts.push({ needsScores: false, test: (v) => (v.flags & mask) !== 0 });
  }
  if (condition.flagsNone) {
    const mask = flagMask(condition.flagsNone, scope, `${where}.flagsNone`, problems);
    parts.push({ needsScores: false, test: (v) => (v.flags & mask) === 0 });
  }
  for (const [name, range] of Object.entries(condition.fields ?? {})) {
    const field = resolve(() => scope.profile.field(name), `${where}.fields.${name}`, problems);
    if (field === undefined) continue;
    const inRange = rangeTest(range);
    parts.push({ needsScores: false, test: (v) => inRange(v.records !== null ? readField(v.records, v.recordOffset, field) : NaN) });
  }
  for (const [model, range] of Object.entries(condition.scores ?? {})) {
    const index = scope.modelIndex.get(model);
    if (index === undefined) {
      problems.push(`${where}.scores.${model}: no model "${model}" in the model manifest (known: ${[...scope.modelIndex.keys()].join(', ')})`);
      continue;
    }
    const inRange = rangeTest(range);
    parts.push({ needsScores: true, test: (v) => inRange(v.scores[v.scoresOffset + index]!) });
  }
  if (condition.platformExperimentsAny) {
    const wanted = new Set(condition.platformExperimentsAny);
    parts.push({
      needsScores: false,
      test: (v) => {
        for (const id of v.platformExperimentIds) if (wanted.has(id)) return true;
        return false;
      },
    });
  }
  if (condition.anyOf) {
    const options = condition.anyOf.map((c, i) => compileCondition(c, scope, `${where}.anyOf[${i}]`, problems));
    parts.push({
      needsScores: options.some((o) => o.needsScores),
      test: (v) => {
        for (const option of options) if (option.test(v)) return true;
        return false;
      },
    });
  }
  if (condition.not) {
    const inner = compileCondition(condition.not, scope, `${where}.not`, problems);
    parts.push({ needsScores: inner.needsScores, test: (v) => !inner.test(v) });
  }
  return allOf(parts);
}

/**
 * What the top level of a condition asks of the device's OS, presence in the store and flags. Each is necessary for
 * the whole condition (its other keys only narrow it), known at load time and cheap to check, so the book can index
 * strategies by them and never visit, per request, those that cannot match.
 */
export interface DeviceRequirements {
  /** The Os values allowed; null when the condition names none. */
  os: number[] | null;
  known: boolean | null;
  /** Flag bits that must all be set, that must all be clear, and of which one must be set; 0 where there is no such key. */
  flagsAll: number;
  flagsNone: number;
  flagsAny: number;
}

/** The requirements of a condition already compiled: its problems were reported then, so they are not again. */
export function deviceRequirements(condition: Condition, scope: ConditionScope): DeviceRequirements {
  const bits = (names: string[] | undefined) => (names ? flagMask(names, scope, '', []) : 0);
  return {
    os: condition.os ? condition.os.map((name) => OS_BY_NAME[name]) : null,
    known: condition.known ?? null,
    flagsAll: bits(condition.flagsAll),
    flagsNone: bits(condition.flagsNone),
    flagsAny: bits(condition.flagsAny),
  };
}

/** Splits a condition into what can be decided before scoring and what needs scores; both must hold. */
export function splitByStage(condition: Condition): { beforeScoring: Condition; afterScoring: Condition } {
  const { scores, anyOf, not, ...rest } = condition;
  const profileOnly: Condition = rest;
  const afterScoring: Condition = {};
  if (scores) afterScoring.scores = scores;
  if (anyOf) (conditionUsesScores({ anyOf }) ? afterScoring : profileOnly).anyOf = anyOf;
  if (not) (conditionUsesScores({ not }) ? afterScoring : profileOnly).not = not;
  return { beforeScoring: profileOnly, afterScoring };
}

/**
 * A score-free condition that implies the given one, or null. For an exclusion such as
 * `anyOf: [overdue flag, multi-lender count, risk score]` it keeps the score-free options, so a device already
 * excluded by its profile is rejected without being scored; the full condition still runs after scoring.
 */
export function sufficientBeforeScoring(condition: Condition): Condition | null {
  if (!conditionUsesScores(condition)) return condition;
  const { scores, anyOf, not, ...rest } = condition;
  if (scores || (not && conditionUsesScores({ not })) || !anyOf) return null;
  const scoreFree = anyOf.filter((option) => !conditionUsesScores(option));
  if (scoreFree.length === 0) return null;
  const early: Condition = { ...rest, anyOf: scoreFree };
  if (not) early.not = not;
  return early;
}

function conditionUsesScores(condition: Condition): boolean {
  return Boolean(condition.scores) || (condition.anyOf ?? []).some(conditionUsesScores) || (condition.not ? conditionUsesScores(condition.not) : false);
}

function allOf(parts: CompiledCondition[]): CompiledCondition {
  const needsScores = parts.some((p) => p.needsScores);
  if (parts.length === 0) return { needsScores, test: () => true };
  if (parts.length === 1) return parts[0]!;
  const tests = parts.map((p) => p.test);
  return {
    needsScores,
    test: (v) => {
      for (const test of tests) if (!test(v)) return false;
      return true;
    },
  };
}

function flagMask(names: string[], scope: ConditionScope, where: string, problems: string[]): number {
  let mask = 0;
  const holders = new Set<string>();
  for (const name of names) {
    const flag = resolve(() => scope.profile.flag(name), where, problems);
    if (flag === undefined) continue;
    holders.add(flag.field.name);
    mask |= 1 << flag.bit;
  }
  if (holders.size > 1) problems.push(`${where}: flags from different fields cannot be combined`);
  else if (holders.size === 1 && !holders.has('flags')) problems.push(`${where}: flags must live in the profile field "flags"`);
  return mask;
}

function rangeTest(range: Range): (value: number) => boolean {
  const min = range.min ?? -Infinity;
  const max = range.max ?? Infinity;
  const missingPasses = range.missing === 'pass';
  return (value) => (value !== value ? missingPasses : value >= min && value <= max);
}

function resolve<T>(lookup: () => T, where: string, problems: string[]): T | undefined {
  try {
    return lookup();
  } catch (err) {
    problems.push(`${where}: ${(err as Error).message}`);
    return undefined;
  }
}
