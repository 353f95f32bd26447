import { readField, type ProfileField } from '../store/profile-schema.js';
import type { ConditionScope } from './conditions.js';
import type { BidParams } from './schema.js';

/**
 * A bidding strategy's own expected-value formula, in fen, written in the book as arithmetic over model scores,
 * profile fields and the strategy's bid numbers:
 *
 *   score.apply * score.approve * (score.ltv * 100 - bid.lossGivenDefaultFen * score.risk)
 *   min(field.income_score, 800) * score.approve - 50
 *
 * Names: `score.<model>` (as the model outputs it), `field.<profile field>` (NaN for an unknown device, so the
 * strategy reads no_value), `bid.<number field of the bid>` (after the device's experiment arm changed it).
 * Operators + - * / and parentheses; functions min, max (two or more arguments), clamp(x, lo, hi), pow, log, exp.
 * Nothing else parses, so a formula can only compute a number. It is compiled once, when the book loads, to one
 * JavaScript function generated from the parsed tree (numbers re-printed, names resolved to indices), so a
 * request pays for the arithmetic only.
 */
export interface ValueFormula {
  readonly source: string;
  evaluate(scores: Float32Array, scoresOffset: number, records: Uint8Array | null, recordOffset: number, bid: BidParams): number;
  /** The formula's inputs with their values for one device, for explain: `score.apply = 0.12, bid.target... = 300`. */
  inputs(scores: Float32Array, scoresOffset: number, records: Uint8Array | null, recordOffset: number, bid: BidParams): string;
}

/** The bid's numbers a formula may read; the flags and the coefficient range are not values. */
const BID_NUMBERS = ['targetValueFen', 'minValueFen', 'lossGivenDefaultFen', 'cpaBidFen', 'cpcBidFen'] as const;
const FUNCTIONS: Record<string, { min: number; max: number; js: string }> = {
  min: { min: 2, max: 16, js: 'Math.min' },
  max: { min: 2, max: 16, js: 'Math.max' },
  clamp: { min: 3, max: 3, js: 'clamp' },
  pow: { min: 2, max: 2, js: 'Math.pow' },
  log: { min: 1, max: 1, js: 'Math.log' },
  exp: { min: 1, max: 1, js: 'Math.exp' },
};
const MAX_SOURCE = 500;

type Node =
  | { kind: 'number'; value: number }
  | { kind: 'name'; space: 'score' | 'field' | 'bid'; name: string }
  | { kind: 'negate'; operand: Node }
  | { kind: 'binary'; op: '+' | '-' | '*' | '/'; left: Node; right: Node }
  | { kind: 'call'; fn: string; args: Node[] };

class FormulaError extends Error {}

const TOKEN = /\s*(?:(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)|([-+*/(),]))/y;

function tokenize(source: string): string[] {
  const tokens: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < source.length) {
    if (/^\s*$/.test(source.slice(TOKEN.lastIndex))) break;
    const at = TOKEN.lastIndex;
    const match = TOKEN.exec(source);
    if (match === null) throw new FormulaError(`unexpected "${source.slice(at).trim()[0]}" at character ${at + 1}`);
    tokens.push(match[1] ?? match[2] ?? match[3]!);
  }
  return tokens;
}

function parse(source: string): Node {
  const tokens = tokenize(source);
  let i = 0;
  const peek = () => tokens[i];
  const expect = (token: string) => {
    if (tokens[i] !== token) throw new FormulaError(`expected "${token}" ${tokens[i] === undefined ? 'at the end' : `before "${tokens[i]}"`}`);
    i++;
  };
  const expression = (): Node => {
    let node = term();
    while (peek() === '+' || peek() === '-') node = { kind: 'binary', op: tokens[i++] as '+' | '-', left: node, right: term() };
    return node;
  };
  const term = (): Node => {
    let node = unary();
    while (peek() === '*' || peek() === '/') node = { kind: 'binary', op: tokens[i++] as '*' | '/', left: node, right: unary() };
    return node;
  };
  const unary = (): Node => {
    if (peek() === '-') {
      i++;
      return { kind: 'negate', operand: unary() };
    }
    return primary();
  };
  const primary = (): Node => {
    const token = tokens[i++];
    if (token === undefined) throw new FormulaError('the formula ends where a value was expected');
    if (token === '(') {
      const node = expression();
      expect(')');
      return node;
    }
    if (/^\d/.test(token)) {
      const value = Number(token);
      // JSON.stringify, which prints the numbers into the code, would print Infinity as null.
      if (!Number.isFinite(value)) throw new FormulaError(`${token} is too large for a number`);
      return { kind: 'number', value };
    }
    if (/^[A-Za-z_]/.test(token)) {
      const dot = token.indexOf('.');
      if (dot < 0) {
        const fn = FUNCTIONS[token];
        if (fn === undefined || peek() !== '(') throw new FormulaError(`unknown name "${token}" (names are score.<model>, field.<field>, bid.<field>; functions ${Object.keys(FUNCTIONS).join(', ')})`);
        i++;
        const args = [expression()];
        while (peek() === ',') {
          i++;
          args.push(expression());
        }
        expect(')');
        if (args.length < fn.min || args.length > fn.max) throw new FormulaError(`${token} takes ${fn.min === fn.max ? fn.min : `${fn.min} or more`} arguments, not ${args.length}`);
        return { kind: 'call', fn: token, args };
      }
      const space = token.slice(0, dot);
      if (space !== 'score' && space !== 'field' && space !== 'bid') throw new FormulaError(`unknown name "${token}" (names are score.<model>, field.<field>, bid.<field>)`);
      return { kind: 'name', space, name: token.slice(dot + 1) };
    }
    throw new FormulaError(`unexpected "${token}"`);
  };
  const node = expression();
  if (i < tokens.length) throw new FormulaError(`unexpected "${tokens[i]}" after a complete formula`);
  return node;
}

function clamp(value: number, min: number, max: number): number {
  return value < min ? min : value > max ? max : value;
}

/** The formula compiled, or null with the reasons in `problems` (each prefixed by `where`). */
export function compileValueFormula(source: string, scope: ConditionScope, where: string, problems: string[]): ValueFormula | null {
  if (source.length > MAX_SOURCE) {
    problems.push(`${where}: a value formula has at most ${MAX_SOURCE} characters`);
    return null;
  }
  let tree: Node;
  try {
    tree = parse(source);
  } catch (err) {
    if (!(err instanceof FormulaError)) throw err;
    problems.push(`${where}: ${err.message}`);
    return null;
  }
  const fields: ProfileField[] = [];
  const names: { text: string; js: string }[] = [];
  const before = problems.length;
  const emit = (node: Node): string => {
    switch (node.kind) {
      case 'number':
        return `(${JSON.stringify(node.value)})`;
      case 'negate':
        return `(-${emit(node.operand)})`;
      case 'binary':
        return `(${emit(node.left)}${node.op}${emit(node.right)})`;
      case 'call':
        return `${FUNCTIONS[node.fn]!.js}(${node.args.map(emit).join(',')})`;
      case 'name': {
        const js = nameCode(node, scope, fields, `${where}: ${node.space}.${node.name}`, problems);
        if (!names.some((n) => n.js === js)) names.push({ text: `${node.space}.${node.name}`, js });
        return js;
      }
    }
  };
  const body = emit(tree);
  if (problems.length > before) return null;
  // Safe to hand to Function: every token of `body` was produced above from the parsed tree, none copied from the file.
  const build = new Function('readField', 'fields', 'clamp', `"use strict"; return [
    function value(s, so, r, ro, b) { return ${body}; },
    function inputs(s, so, r, ro, b) { return [${names.map((n) => n.js).join(',')}]; },
  ];`) as (read: typeof readField, f: ProfileField[], c: typeof clamp) => [ValueFormula['evaluate'], (...args: Parameters<ValueFormula['evaluate']>) => number[]];
  const [evaluate, values] = build(readField, fields, clamp);
  return {
    source,
    evaluate,
    inputs: (...args) => {
      const got = values(...args);
      return names.map((n, k) => `${n.text} = ${Number(got[k]!.toPrecision(6))}`).join(', ');
    },
  };
}

function nameCode(node: Extract<Node, { kind: 'name' }>, scope: ConditionScope, fields: ProfileField[], where: string, problems: string[]): string {
  switch (node.space) {
    case 'score': {
      const index = scope.modelIndex.get(node.name);
      if (index === undefined) {
        problems.push(`${where}: no model "${node.name}" in the model manifest (known: ${[...scope.modelIndex.keys()].join(', ')})`);
        return 'NaN';
      }
      return `s[so+${index}]`;
    }
    case 'field': {
      let field: ProfileField;
      try {
        field = scope.profile.field(node.name);
      } catch (err) {
        problems.push(`${where}: ${(err as Error).message}`);
        return 'NaN';
      }
      fields.push(field);
      return `(r===null?NaN:readField(r,ro,fields[${fields.length - 1}]))`;
    }
    case 'bid':
      if (!(BID_NUMBERS as readonly string[]).includes(node.name)) {
        problems.push(`${where}: not a number of the bid (${BID_NUMBERS.join(', ')})`);
        return 'NaN';
      }
      return `b.${node.name}`;
  }
}
