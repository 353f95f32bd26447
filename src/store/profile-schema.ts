import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * The fixed-width profile record layout (data/profile-schema.json). Store, scoring and strategies all read records
 * through this one description, so a new field is one line in the schema file.
 */
const FIELD_SIZES = { u8: 1, u16: 2, u32: 4, f32: 4 } as const;
export type FieldType = keyof typeof FIELD_SIZES;

const fieldSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_]*$/, 'field names are snake_case'),
    type: z.enum(['u8', 'u16', 'u32', 'f32']),
    offset: z.number().int().nonnegative(),
    missing: z.number().int().nonnegative().optional(),
    bits: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/), z.number().int().min(0).max(31)).optional(),
  })
  .strict();

const schemaFileSchema = z
  .object({
    description: z.string().optional(),
    version: z.number().int().positive(),
    recordBytes: z.number().int().positive().max(4096),
    fields: z.array(fieldSchema).min(1),
  })
  .strict()
  .superRefine((schema, ctx) => {
    const names = new Set<string>();
    for (const [i, field] of schema.fields.entries()) {
      if (names.has(field.name)) ctx.addIssue({ code: 'custom', path: ['fields', i, 'name'], message: `duplicate field "${field.name}"` });
      names.add(field.name);
      const end = field.offset + FIELD_SIZES[field.type];
      if (end > schema.recordBytes)
        ctx.addIssue({ code: 'custom', path: ['fields', i], message: `"${field.name}" ends at byte ${end}, past recordBytes ${schema.recordBytes}` });
      if (field.offset % FIELD_SIZES[field.type] !== 0)
        ctx.addIssue({ code: 'custom', path: ['fields', i], message: `"${field.name}" offset ${field.offset} is not aligned to its ${FIELD_SIZES[field.type]}-byte type` });
      if (field.bits && field.type === 'f32')
        ctx.addIssue({ code: 'custom', path: ['fields', i], message: `"${field.name}" is a float and cannot hold flag bits` });
      if (field.missing !== undefined && field.type === 'f32')
        ctx.addIssue({ code: 'custom', path: ['fields', i], message: `"${field.name}" is a float; its missing value is NaN` });
    }
  });

export type ProfileField = z.infer<typeof fieldSchema>;

export interface ProfileSchema {
  version: number;
  recordBytes: number;
  fields: ProfileField[];
  /** Field by name. */
  field(name: string): ProfileField;
  /** Bit position of a flag, by flag name, and the field that holds it. */
  flag(name: string): { field: ProfileField; bit: number };
  /** Names a model or a strategy may refer to: every field name, and `flag:<name>` for each flag bit. */
  featureNames(): string[];
}

export function parseProfileSchema(json: unknown, source = 'profile schema'): ProfileSchema {
  const parsed = schemaFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const { version, recordBytes, fields } = parsed.data;
  const byName = new Map(fields.map((f) => [f.name, f]));
  const flags = new Map<string, { field: ProfileField; bit: number }>();
  for (const field of fields) for (const [name, bit] of Object.entries(field.bits ?? {})) flags.set(name, { field, bit });
  return {
    version,
    recordBytes,
    fields,
    field(name) {
      const field = byName.get(name);
      if (!field) throw new Error(`${source}: no profile field "${name}" (known: ${[...byName.keys()].join(', ')})`);
      return field;
    },
    flag(name) {
      const flag = flags.get(name);
      if (!flag) throw new Error(`${source}: no profile flag "${name}" (known: ${[...flags.keys()].join(', ')})`);
      return flag;
    },
    featureNames() {
      return [...byName.keys(), ...[...flags.keys()].map((f) => `flag:${f}`)];
    },
  };
}

export function loadProfileSchema(path: string): ProfileSchema {
  return parseProfileSchema(JSON.parse(readFileSync(path, 'utf8')), path);
}

/**
 * Reads one field of the record at `offset` as a number: NaN when the value is the field's "missing" sentinel
 * (or a NaN float). Little-endian, as the schema says.
 */
export function readField(records: Uint8Array, offset: number, field: ProfileField): number {
  const at = offset + field.offset;
  let value: number;
  switch (field.type) {
    case 'u8':
      value = records[at]!;
      break;
    case 'u16':
      value = records[at]! | (records[at + 1]! << 8);
      break;
    case 'u32':
      value = (records[at]! | (records[at + 1]! << 8) | (records[at + 2]! << 16) | (records[at + 3]! << 24)) >>> 0;
      break;
    case 'f32':
      return readFloat32(records, at);
  }
  return value === field.missing ? NaN : value;
}

const F32_SCRATCH = new Float32Array(1);
const F32_BYTES = new Uint8Array(F32_SCRATCH.buffer);
function readFloat32(bytes: Uint8Array, at: number): number {
  F32_BYTES[0] = bytes[at]!;
  F32_BYTES[1] = bytes[at + 1]!;
  F32_BYTES[2] = bytes[at + 2]!;
  F32_BYTES[3] = bytes[at + 3]!;
  return F32_SCRATCH[0]!;
}

/** Path of the bundled schema, resolved from this module so it works from src/ and dist/ alike. */
export const DEFAULT_PROFILE_SCHEMA_PATH = new URL('../../data/profile-schema.json', import.meta.url).pathname;
