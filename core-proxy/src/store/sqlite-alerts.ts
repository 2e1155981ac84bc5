import type Database from 'better-sqlite3';
import { alertId, fractionText } from '../alerts/alert-thresholds.js';
import type { Micros } from '../pricing/money.js';
import type {
  AlertClaimInput,
  AlertClaimOutput,
  AlertEntry,
  AlertFinishInput,
  AlertState,
  AlertType,
  KeyAlerts,
  VaultKeyRecord,
} from './store.js';

/**
 * Threshold alerts' tables (issue 26): each key's thresholds, and the outbox, one row per alert
 * (its primary key, the alert id, is what makes an alert fire once per key, cap period and
 * threshold, whichever process of the data directory fires it).
 */
export const ALERTS_SCHEMA = `
CREATE TABLE IF NOT EXISTS key_alerts (
  key_id TEXT PRIMARY KEY,
  fractions TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_outbox (
  id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  type TEXT NOT NULL,
  cap TEXT NOT NULL,
  period TEXT NOT NULL,
  at_fraction REAL,
  spent INTEGER NOT NULL,
  cap_micros INTEGER NOT NULL,
  label TEXT,
  vendor TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  next_at INTEGER NOT NULL DEFAULT 0,
  lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alert_outbox_due ON alert_outbox(state, next_at);
CREATE INDEX IF NOT EXISTS alert_outbox_key ON alert_outbox(key_id, created_at);
`;

/** What firing needs of a key with thresholds; immutable once the key is written. */
interface AlertRule {
  readonly fractions: readonly { readonly value: number; readonly text: string }[];
  readonly cap: Micros | null;
  readonly dailyCap: Micros | null;
  readonly label: string | null;
  readonly vendor: string;
}

/** The fields of a key row a cap hit reads (see `ChainRow` in sqlite-store.ts). */
export interface CapHitRow {
  readonly key_id: string;
  readonly vendor: string;
  readonly agent_run_label: string | null;
  readonly cap: number | null;
  readonly daily_cap: number | null;
  readonly spent: number;
  readonly reserved: number;
  readonly day_spent: number | null;
  readonly day_reserved: number | null;
}

interface OutboxRow {
  id: string;
  key_id: string;
  type: AlertType;
  cap: 'lifetime' | 'daily';
  period: string;
  at_fraction: number | null;
  spent: number;
  cap_micros: number;
  label: string | null;
  vendor: string;
  created_at: number;
  state: AlertState;
  attempts: number;
  last_status: number | null;
  next_at: number;
}

const CACHED_RULES = 50_000;

/**
 * The embedded store's alerts. Every method runs inside the caller's transaction (a write of the
 * store's group commit, or a read): firing is decided on what that transaction reads and commits
 * with the settlement or refusal that fired it. Nothing is remembered across transactions but the
 * immutable rules, so a batch rolled back and run again fires exactly as the first time.
 */
export class SqliteAlerts {
  /** Rules by key id; null: the key has no thresholds. */
  private readonly rules = new Map<string, AlertRule | null>();

  constructor(
    private readonly deps: {
      readonly statement: (sql: string) => Database.Statement;
      /** Epoch ms of `created_at`. */
      readonly now: () => number;
    },
  ) {}

  /** Inside `createKey`'s transaction. */
  keyCreated(record: VaultKeyRecord): void {
    const fractions = record.alertFractions ?? [];
    if (fractions.length === 0) return;
    this.deps
      .statement('INSERT INTO key_alerts (key_id, fractions) VALUES (?, ?)')
      .run(record.keyId, fractions.map(fractionText).join(','));
  }

  /**
   * Inside a settlement (or recovery) that has just booked spend on these keys in `day`: fires
   * every threshold their spend has reached, of the lifetime cap and of the day's daily cap.
   */
  booked(keyIds: readonly string[], day: string): void {
    for (const keyId of keyIds) {
      const rule = this.rule(keyId);
      if (!rule) continue;
      const spent = (
        this.deps.statement('SELECT spent FROM vault_keys WHERE key_id = ?').get(keyId) as { spent: number }
      ).spent;
      const daySpent =
        rule.dailyCap === null
          ? 0
          : ((
              this.deps.statement('SELECT spent FROM daily_spend WHERE key_id = ? AND day = ?').get(keyId, day) as
                { spent: number } | undefined
            )?.spent ?? 0);
      for (const fraction of rule.fractions) {
        if (rule.cap !== null && spent >= fraction.value * rule.cap) {
          this.fire(keyId, rule, 'keybrake.alert.threshold', 'lifetime', 'lifetime', fraction, spent, rule.cap);
        }
        if (rule.dailyCap !== null && daySpent >= fraction.value * rule.dailyCap) {
          this.fire(keyId, rule, 'keybrake.alert.threshold', 'daily', day, fraction, daySpent, rule.dailyCap);
        }
      }
    }
  }

  /** Inside the `reserve` that refused a call on `key`'s cap (read in that transaction). */
  capHit(key: CapHitRow, cap: 'lifetime' | 'daily', day: string): void {
    const rule = this.rule(key.key_id);
    if (!rule) return;
    if (cap === 'lifetime') {
      this.fire(
        key.key_id,
        rule,
        'keybrake.alert.cap_hit',
        'lifetime',
        'lifetime',
        null,
        key.spent + key.reserved,
        key.cap ?? 0,
      );
    } else {
      const used = (key.day_spent ?? 0) + (key.day_reserved ?? 0);
      this.fire(key.key_id, rule, 'keybrake.alert.cap_hit', 'daily', day, null, used, key.daily_cap ?? 0);
    }
  }

  /** A read. */
  keyAlerts(keyId: string): KeyAlerts {
    const rule = this.rule(keyId);
    const rows = this.deps
      .statement('SELECT * FROM alert_outbox WHERE key_id = ? ORDER BY created_at, id')
      .all(keyId) as OutboxRow[];
    return { fractions: rule?.fractions.map((fraction) => fraction.value) ?? [], fired: rows.map(toEntry) };
  }

  /** A read: whether any alert is due, and the pending counts. */
  due(now: number): { readonly any: boolean; readonly pending: AlertClaimOutput['pending'] } {
    const any =
      this.deps
        .statement("SELECT 1 FROM alert_outbox WHERE state = 'pending' AND next_at <= ? AND lease_until <= ? LIMIT 1")
        .get(now, now) !== undefined;
    return { any, pending: this.pendingCounts() };
  }

  /** Inside a write. */
  claim(input: AlertClaimInput): AlertClaimOutput {
    const rows = this.deps
      .statement(
        `UPDATE alert_outbox SET lease_until = ?, attempts = attempts + 1
          WHERE id IN (SELECT id FROM alert_outbox
                        WHERE state = 'pending' AND next_at <= ? AND lease_until <= ?
                        ORDER BY next_at LIMIT ?)
          RETURNING *`,
      )
      .all(input.now + input.leaseMs, input.now, input.now, input.limit) as OutboxRow[];
    return { claimed: rows.map(toEntry), pending: this.pendingCounts() };
  }

  /** Inside a write. A delivered or failed alert stays so: a late second sender changes nothing. */
  finish(input: AlertFinishInput): void {
    this.deps
      .statement(
        `UPDATE alert_outbox SET state = ?, last_status = ?, next_at = ?, lease_until = 0
          WHERE id = ? AND state = 'pending'`,
      )
      .run(input.state, input.lastStatus, input.nextAttemptAt, input.id);
  }

  private pendingCounts(): AlertClaimOutput['pending'] {
    const counts = { 'keybrake.alert.threshold': 0, 'keybrake.alert.cap_hit': 0 };
    const rows = this.deps
      .statement("SELECT type, COUNT(*) AS n FROM alert_outbox WHERE state = 'pending' GROUP BY type")
      .all() as { type: AlertType; n: number }[];
    for (const row of rows) counts[row.type] = row.n;
    return counts;
  }

  private fire(
    keyId: string,
    rule: AlertRule,
    type: AlertType,
    cap: 'lifetime' | 'daily',
    period: string,
    fraction: AlertRule['fractions'][number] | null,
    spent: Micros,
    capMicros: Micros,
  ): void {
    // The id is the primary key: a second firing (another process, a later settlement) is ignored.
    this.deps
      .statement(
        `INSERT OR IGNORE INTO alert_outbox (id, key_id, type, cap, period, at_fraction, spent, cap_micros, label, vendor, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        alertId(keyId, type, cap, period, fraction?.text ?? ''),
        keyId,
        type,
        cap,
        period,
        fraction?.value ?? null,
        spent,
        capMicros,
        rule.label,
        rule.vendor,
        this.deps.now(),
      );
  }

  private rule(keyId: string): AlertRule | null {
    const cached = this.rules.get(keyId);
    if (cached !== undefined) return cached;
    const row = this.deps
      .statement(
        `SELECT a.fractions, k.cap, k.daily_cap, k.agent_run_label, k.vendor
           FROM vault_keys k LEFT JOIN key_alerts a ON a.key_id = k.key_id WHERE k.key_id = ?`,
      )
      .get(keyId) as
      | {
          fractions: string | null;
          cap: number | null;
          daily_cap: number | null;
          agent_run_label: string | null;
          vendor: string;
        }
      | undefined;
    if (!row) return null;
    const rule: AlertRule | null =
      row.fractions === null
        ? null
        : {
            fractions: row.fractions.split(',').map((text) => ({ value: Number(text), text })),
            cap: row.cap,
            dailyCap: row.daily_cap,
            label: row.agent_run_label,
            vendor: row.vendor,
          };
    if (this.rules.size >= CACHED_RULES) this.rules.clear();
    this.rules.set(keyId, rule);
    return rule;
  }
}

function toEntry(row: OutboxRow): AlertEntry {
  return {
    id: row.id,
    type: row.type,
    keyId: row.key_id,
    agentRunLabel: row.label,
    vendor: row.vendor,
    spentMicros: row.spent,
    capMicros: row.cap_micros,
    cap: row.cap,
    period: row.period,
    atFraction: row.at_fraction,
    createdAt: row.created_at,
    state: row.state,
    attempts: row.attempts,
    lastStatus: row.last_status,
    nextAttemptAt: row.next_at,
  };
}
