import { createHash } from 'node:crypto';
import type { ProfileSchema } from './profile-schema.js';

/**
 * A short digest of everything that decides how a record's bytes are read: record size and each field's name,
 * type, offset, missing marker and flag bits. Two schemas with the same version but a different layout (an edit
 * that forgot to bump the version) get different fingerprints, so stale records are refused instead of misread.
 */
export function profileLayoutFingerprint(schema: ProfileSchema): string {
  const layout = schema.fields.map((field) => [
    field.name,
    field.type,
    field.offset,
    field.missing ?? null,
    Object.entries(field.bits ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  ]);
  return createHash('sha256')
    .update(JSON.stringify([schema.recordBytes, layout]))
    .digest('hex')
    .slice(0, LAYOUT_FINGERPRINT_BYTES * 2);
}

export const LAYOUT_FINGERPRINT_BYTES = 8;
