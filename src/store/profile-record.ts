import type { FieldType, ProfileField, ProfileSchema } from './profile-schema.js';

/**
 * Fills one profile record field by field, refusing values the field cannot hold: an integer field keeps its
 * type's range minus the `missing` marker (300 in a u8 is an error, never wrapped to 44), floats must be finite f32.
 * Missing values are written as the field's marker (NaN for floats), which is what readers expect.
 */
const INTEGER_MAX: Record<Exclude<FieldType, 'f32'>, number> = { u8: 0xff, u16: 0xffff, u32: 0xffffffff };
const F32_MAX = 3.4028234663852886e38;

export class ProfileRecordWriter {
  /** The record being filled; copy it out (e.g. `store.addDevice`) before the next `clear`. */
  readonly record: Uint8Array;
  private readonly view: DataView;
  private readonly blank: Uint8Array;

  constructor(readonly schema: ProfileSchema) {
    this.record = new Uint8Array(schema.recordBytes);
    this.view = new DataView(this.record.buffer);
    for (const field of schema.fields) this.writeMissing(field);
    this.blank = this.record.slice();
  }

  /** Every field back to missing, no flag set. */
  clear(): void {
    this.record.set(this.blank);
  }

  writeMissing(field: ProfileField): void {
    if (field.type === 'f32') this.view.setFloat32(field.offset, NaN, true);
    else this.writeInteger(field, field.missing ?? 0);
  }

  /** Writes a number, or returns why the field cannot hold it (the record is then unchanged). */
  write(field: ProfileField, value: number): string | undefined {
    if (field.type === 'f32') {
      if (!Number.isFinite(value) || Math.abs(value) > F32_MAX) return `${field.name} must be a finite 32-bit float, got ${value}`;
      this.view.setFloat32(field.offset, value, true);
      return undefined;
    }
    const { min, max } = integerRange(field);
    if (!Number.isInteger(value) || value < min || value > max)
      return `${field.name} must be an integer in ${min}..${max}${missingNote(field)}, got ${value}`;
    if (value === field.missing) return `${field.name} cannot be ${value}: that value marks it missing`;
    this.writeInteger(field, value);
    return undefined;
  }

  /** Sets the named bits of a flags field, or returns which name is unknown. */
  writeFlags(field: ProfileField, names: readonly string[]): string | undefined {
    const bits = field.bits ?? {};
    let value = 0;
    for (const name of names) {
      const bit = bits[name];
      if (bit === undefined) return `unknown flag "${name}" in ${field.name} (known: ${Object.keys(bits).join(', ')})`;
      value = (value | (1 << bit)) >>> 0;
    }
    const { max } = integerRange(field);
    if (value > max) return `${field.name} bits do not fit its ${field.type} field`;
    this.writeInteger(field, value);
    return undefined;
  }

  private writeInteger(field: ProfileField, value: number): void {
    if (field.type === 'u8') this.view.setUint8(field.offset, value);
    else if (field.type === 'u16') this.view.setUint16(field.offset, value, true);
    else this.view.setUint32(field.offset, value, true);
  }
}

/** The values an integer field can hold, the missing marker excluded when it sits at either end of the range. */
function integerRange(field: ProfileField): { min: number; max: number } {
  const max = INTEGER_MAX[field.type as Exclude<FieldType, 'f32'>];
  return { min: field.missing === 0 ? 1 : 0, max: field.missing === max ? max - 1 : max };
}

function missingNote(field: ProfileField): string {
  return field.missing === undefined ? '' : ` (${field.missing} marks it missing)`;
}
