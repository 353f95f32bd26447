import { DEVICE_ID_KIND_NAMES } from '../engine/types.js';
import { DEVICE_KEY_BYTES, parseDeviceKeyHex, PLACEHOLDER_KEYS_HEX } from './device-key.js';
import { ProfileRecordWriter } from './profile-record.js';
import type { ProfileField, ProfileSchema } from './profile-schema.js';

/**
 * Device rows, the snapshot builder's input (format in data/README.md), turned into a profile record plus its
 * device keys. One row per device:
 * - device keys in columns named after the id kind (`oaid_md5`, `imei_md5`, ...): 32 hex digits, at least one;
 * - profile fields by schema name: a number, or null / an empty cell for "missing";
 * - a flags field (one with named bits) as the list of set flag names: a JSON array, or `|`-joined in CSV.
 * A row that breaks any rule is refused with the reason; nothing is guessed, clamped or wrapped.
 */
export const DEVICE_KEY_COLUMNS: readonly string[] = Object.values(DEVICE_ID_KIND_NAMES);

type Column = { kind: 'key'; name: string } | { kind: 'flags'; field: ProfileField } | { kind: 'number'; field: ProfileField };

const CSV_NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

export class DeviceRowEncoder {
  private readonly writer: ProfileRecordWriter;
  private readonly columns = new Map<string, Column>();
  private readonly keyBuffer = new Uint8Array(DEVICE_KEY_COLUMNS.length * DEVICE_KEY_BYTES);
  /** Key column of each key of the current row, in row order. */
  readonly keyColumns: string[] = [];
  private csvColumns: Column[] | undefined;

  constructor(schema: ProfileSchema) {
    this.writer = new ProfileRecordWriter(schema);
    for (const name of DEVICE_KEY_COLUMNS) this.columns.set(name, { kind: 'key', name });
    for (const field of schema.fields) this.columns.set(field.name, field.bits ? { kind: 'flags', field } : { kind: 'number', field });
  }

  /** The record of the last row encoded without error. */
  get record(): Uint8Array {
    return this.writer.record;
  }

  /** The device keys of the last row encoded without error, 16 bytes each. */
  get keys(): Uint8Array {
    return this.keyBuffer.subarray(0, this.keyColumns.length * DEVICE_KEY_BYTES);
  }

  /** One JSON Lines row. Returns why the row is bad, or undefined when record and keys are ready. */
  encodeJson(line: string): string | undefined {
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (error) {
      return `not valid JSON: ${(error as Error).message}`;
    }
    if (typeof row !== 'object' || row === null || Array.isArray(row)) return 'expected a JSON object';
    this.begin();
    for (const [name, value] of Object.entries(row)) {
      const column = this.columns.get(name);
      if (!column) return `unknown property "${name}" (neither a device key nor a profile field)`;
      const problem = value === null ? undefined : this.encodeJsonValue(column, name, value);
      if (problem) return problem;
    }
    return this.finish();
  }

  /** Reads the CSV header line; throws (the whole file is unusable) on unknown, repeated or missing columns. */
  useCsvHeader(line: string): void {
    const names = splitCsvLine(line);
    if (typeof names === 'string') throw new Error(`CSV header: ${names}`);
    const seen = new Set<string>();
    this.csvColumns = names.map((name) => {
      const column = this.columns.get(name);
      if (!column) throw new Error(`CSV header: unknown column "${name}" (known: ${[...this.columns.keys()].join(', ')})`);
      if (seen.has(name)) throw new Error(`CSV header: column "${name}" appears twice`);
      seen.add(name);
      return column;
    });
    if (!names.some((name) => this.columns.get(name)!.kind === 'key'))
      throw new Error(`CSV header: no device key column (need at least one of ${DEVICE_KEY_COLUMNS.join(', ')})`);
  }

  /** One CSV data row, after `useCsvHeader`. Returns why the row is bad, or undefined. */
  encodeCsv(line: string): string | undefined {
    const columns = this.csvColumns;
    if (!columns) throw new Error('encodeCsv before useCsvHeader');
    const cells = splitCsvLine(line);
    if (typeof cells === 'string') return cells;
    if (cells.length !== columns.length) return `${cells.length} cells, but the header has ${columns.length} columns`;
    this.begin();
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[i]!;
      if (cell === '') continue;
      const problem = this.encodeCsvCell(columns[i]!, cell);
      if (problem) return problem;
    }
    return this.finish();
  }

  private begin(): void {
    this.writer.clear();
    this.keyColumns.length = 0;
  }

  private finish(): string | undefined {
    if (this.keyColumns.length === 0) return `no device key (need at least one of ${DEVICE_KEY_COLUMNS.join(', ')})`;
    return undefined;
  }

  private encodeJsonValue(column: Column, name: string, value: unknown): string | undefined {
    switch (column.kind) {
      case 'key':
        if (typeof value !== 'string') return `${name} must be a 32-digit hex string or null, got ${describe(value)}`;
        return value === '' ? undefined : this.addKey(name, value);
      case 'flags':
        if (!Array.isArray(value) || !value.every((flag) => typeof flag === 'string'))
          return `${name} must be a list of flag names, got ${describe(value)}`;
        return this.writer.writeFlags(column.field, value);
      case 'number':
        if (typeof value !== 'number') return `${name} must be a number or null, got ${describe(value)}`;
        return this.writer.write(column.field, value);
    }
  }

  private encodeCsvCell(column: Column, cell: string): string | undefined {
    switch (column.kind) {
      case 'key':
        return this.addKey(column.name, cell);
      case 'flags': {
        const names = cell.split('|');
        if (names.includes('')) return `${column.field.name} "${cell}" has an empty flag name (write names joined by "|")`;
        return this.writer.writeFlags(column.field, names);
      }
      case 'number':
        if (!CSV_NUMBER.test(cell)) return `${column.field.name} must be a number or empty, got "${cell}"`;
        return this.writer.write(column.field, Number(cell));
    }
  }

  private addKey(column: string, hex: string): string | undefined {
    if (!parseDeviceKeyHex(hex, this.keyBuffer, this.keyColumns.length * DEVICE_KEY_BYTES))
      return `${column} ${JSON.stringify(hex)} is not a 32-digit hex MD5`;
    if (PLACEHOLDER_KEYS_HEX.has(hex.toLowerCase()))
      return `${column} ${hex} is the MD5 of a placeholder id (empty, "0", all zeros...) shared by unrelated devices`;
    this.keyColumns.push(column);
    return undefined;
  }
}

/** Splits one CSV line (RFC 4180 quoting: "a ""quoted"" cell"); returns the reason when quotes are unbalanced. */
function splitCsvLine(line: string): string[] | string {
  const cells: string[] = [];
  let at = 0;
  for (;;) {
    if (line[at] === '"') {
      let cell = '';
      let from = at + 1;
      for (;;) {
        const quote = line.indexOf('"', from);
        if (quote < 0) return `unterminated quoted cell starting at character ${at + 1}`;
        cell += line.slice(from, quote);
        if (line[quote + 1] === '"') {
          cell += '"';
          from = quote + 2;
          continue;
        }
        at = quote + 1;
        break;
      }
      cells.push(cell);
      if (at === line.length) return cells;
      if (line[at] !== ',') return `unexpected character after the quoted cell at character ${at + 1}`;
      at++;
    } else {
      const comma = line.indexOf(',', at);
      cells.push(line.slice(at, comma < 0 ? line.length : comma).trim());
      if (comma < 0) return cells;
      at = comma + 1;
    }
  }
}

function describe(value: unknown): string {
  return Array.isArray(value) ? 'a list' : typeof value === 'object' ? 'an object' : `${typeof value} ${JSON.stringify(value)}`;
}
