import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Finding } from './drive.js';
import type { FuzzInput } from './inputs.js';
import { describeExpected } from './judge.js';
import { decoderFor } from './reference.js';

/**
 * Inputs the fuzzer caught, one JSON file each in fuzz/found/: the body (base64) and where it went, what the
 * reference expected, what happened, and how the input was made. The test in test/fuzz replays every file.
 */

export const FOUND_DIR = new URL('./found/', import.meta.url);

interface FoundFile {
  description: string;
  path: string;
  contentType: string;
  body: string;
  expected: string[];
  outcome: string;
  problems: string[];
  madeBy: { seed: number; index: number; mutation: string; steps: string[] };
}

/** Writes the finding unless the same input is already saved; returns the file name. */
export function saveFinding(finding: Finding, seed: number): string {
  const { input } = finding;
  const hash = createHash('sha256').update(`${input.path}\0${input.contentType}\0`).update(input.body).digest('hex').slice(0, 12);
  const name = `${input.decoder}-${hash}.json`;
  const file = new URL(name, FOUND_DIR);
  if (existsSync(file)) return name;
  mkdirSync(FOUND_DIR, { recursive: true });
  const saved: FoundFile = {
    description: finding.problems[0]!,
    path: input.path,
    contentType: input.contentType,
    body: Buffer.from(input.body).toString('base64'),
    expected: finding.expected.map(describeExpected),
    outcome: finding.outcome,
    problems: finding.problems,
    madeBy: { seed, index: input.index, mutation: input.mutation, steps: input.steps },
  };
  writeFileSync(file, `${JSON.stringify(saved, null, 2)}\n`);
  return name;
}

export function loadFound(): Array<{ file: string; input: FuzzInput }> {
  if (!existsSync(FOUND_DIR)) return [];
  return readdirSync(FOUND_DIR)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const saved = JSON.parse(readFileSync(new URL(file, FOUND_DIR), 'utf8')) as FoundFile;
      const input: FuzzInput = {
        index: saved.madeBy.index,
        decoder: decoderFor(saved.path, saved.contentType),
        path: saved.path,
        contentType: saved.contentType,
        body: Buffer.from(saved.body, 'base64'),
        mutation: saved.madeBy.mutation,
        steps: saved.madeBy.steps,
      };
      return { file, input };
    });
}
