import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * A check of a presented secret against the expected one. Compares digests, not the strings: timingSafeEqual
 * needs equal lengths, and a digest of either side has them, so neither the secret's content nor its length leaks
 * through the time a refusal takes.
 */
export function secretCheck(expected: string): (presented: string) => boolean {
  const digest = createHash('sha256').update(expected).digest();
  return (presented) => timingSafeEqual(createHash('sha256').update(presented).digest(), digest);
}
