/**
 * The embedded store's part of request and concurrency limits (issue 26; the rule is
 * `key-limits.ts`): the columns, and the statements the reservation and its settlement run for a
 * chain with a limit. A chain with none runs none of them.
 */
import type Database from 'better-sqlite3';
import type { KeyLimits, LimitState, LimitUpdate } from './key-limits.js';

/** Columns of `vault_keys` for limits, added to a file written before them. */
const KEY_COLUMNS: readonly (readonly [string, string])[] = [
  ['max_rps', 'INTEGER'],
  ['max_rpm', 'INTEGER'],
  ['max_concurrent', 'INTEGER'],
  ['in_flight', 'INTEGER NOT NULL DEFAULT 0'],
  ['rps_window', 'INTEGER'],
  ['rps_count', 'INTEGER NOT NULL DEFAULT 0'],
  ['rpm_window', 'INTEGER'],
  ['rpm_count', 'INTEGER NOT NULL DEFAULT 0'],
];

/** The limit columns of a `vault_keys` row. */
export interface LimitColumns {
  max_rps: number | null;
  max_rpm: number | null;
  max_concurrent: number | null;
  in_flight: number;
  rps_window: number | null;
  rps_count: number;
  rpm_window: number | null;
  rpm_count: number;
}

/**
 * Adds the limit columns where missing: to `vault_keys`, and to `reservations` the ids of the
 * keys whose in-flight count the reservation holds (JSON, null for none). Inside the open's
 * schema transaction.
 */
export function addLimitColumns(db: Database.Database): void {
  const missing = (table: string, columns: readonly (readonly [string, string])[]): (readonly [string, string])[] => {
    const have = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
    return columns.filter(([name]) => !have.has(name));
  };
  for (const [name, type] of missing('vault_keys', KEY_COLUMNS)) {
    db.exec(`ALTER TABLE vault_keys ADD COLUMN ${name} ${type}`);
  }
  for (const [name, type] of missing('reservations', [['in_flight_keys', 'TEXT']])) {
    db.exec(`ALTER TABLE reservations ADD COLUMN ${name} ${type}`);
  }
}

/** A row's limits, or null when it has none. */
export function limitsOfRow(row: LimitColumns): KeyLimits | null {
  if (row.max_rps === null && row.max_rpm === null && row.max_concurrent === null) return null;
  return { maxRequestsPerSecond: row.max_rps, maxRequestsPerMinute: row.max_rpm, maxConcurrent: row.max_concurrent };
}

/** What the limit step reads of a chain row with limits. */
export function limitStateOfRow(row: LimitColumns & { key_id: string }, limits: KeyLimits): LimitState {
  return {
    keyId: row.key_id,
    limits,
    inFlight: row.in_flight,
    secondWindow: row.rps_window,
    secondCount: row.rps_count,
    minuteWindow: row.rpm_window,
    minuteCount: row.rpm_count,
  };
}

type StatementOf = (sql: string) => Database.Statement;

/** Writes an admitted call's counts; returns the JSON of the keys whose in-flight count it took, or null. */
export function countAdmittedCall(statement: StatementOf, updates: readonly LimitUpdate[]): string | null {
  const holding: string[] = [];
  for (const update of updates) {
    statement(
      `UPDATE vault_keys SET rps_window = ?, rps_count = ?, rpm_window = ?, rpm_count = ?, in_flight = in_flight + ?
         WHERE key_id = ?`,
    ).run(
      update.secondWindow,
      update.secondCount,
      update.minuteWindow,
      update.minuteCount,
      update.inFlightDelta,
      update.keyId,
    );
    if (update.inFlightDelta === 1) holding.push(update.keyId);
  }
  return holding.length === 0 ? null : JSON.stringify(holding);
}

/** Releases the in-flight counts a reservation held (its settlement, release or recovery). */
export function releaseInFlight(statement: StatementOf, inFlightKeys: string | null | undefined): void {
  if (!inFlightKeys) return;
  for (const keyId of JSON.parse(inFlightKeys) as string[]) {
    statement('UPDATE vault_keys SET in_flight = MAX(0, in_flight - 1) WHERE key_id = ?').run(keyId);
  }
}
