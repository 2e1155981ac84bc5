import { randomUUID } from 'node:crypto';
import type { ExpiryPurgeOutput, Store } from '../store/store.js';
import { defaultArchiveLeaseTtlMs } from './archiver.js';
import { SerialRounds } from './serial-rounds.js';

/** Options of {@link ExpiryPurger}. */
export interface ExpiryPurgerOptions {
  readonly store: Store;
  /**
   * The lease holder to run as: the archiver's own (`Archiver.holder`) when it runs, so that the
   * purge runs on the replica that archives and either one's renewal keeps the other's lease.
   * @default a fresh id (the archive is off: the purger takes the lease itself)
   */
  readonly holder?: string;
  /** How long a family stays after its root key expired, ms. */
  readonly keyRetentionMs: number;
  /** Time between rounds, ms (the archiver's `KEYBRAKE_ARCHIVE_INTERVAL`). */
  readonly intervalMs: number;
  /** Families removed per round at most; a round that reaches it is followed at once by the next. @default 1000 */
  readonly familiesPerRound?: number;
  /** How long the lease lasts unless renewed, ms. @default as the archiver's: max(30 s, 3 × intervalMs) capped at 5 min */
  readonly leaseTtlMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
  /** Called with what each round that removed something removed. */
  readonly onPurge?: (purged: ExpiryPurgeOutput) => void;
  /** Called with each failed round (the store's error: never a credential in it). */
  readonly onError?: (error: Error) => void;
}

/** Rows removed by kind, as `/metrics` counts them (`keybrake_expiry_purged_total{kind}`). */
export type PurgedKind = 'families' | 'keys' | 'spend_days' | 'idempotent_responses' | 'alerts' | 'vendor_objects';

/** What the purger knows, for `/metrics`. */
export interface ExpiryPurgerStatus {
  readonly purged: Readonly<Record<PurgedKind, number>>;
  /** Families past their retention kept in the last round (a call in flight, a pending alert, live audit records). */
  readonly kept: number;
  readonly rounds: number;
  /** Epoch ms of the last round that finished, 0 before any. */
  readonly lastRunAt: number;
  readonly lastError: { readonly at: number; readonly message: string } | undefined;
  readonly errors: number;
  readonly leader: boolean;
}

/** What one round did. */
export type ExpiryRoundOutcome = { readonly kind: 'not_leader' } | ({ readonly kind: 'purged' } & ExpiryPurgeOutput);

/**
 * Removes expired key families and kept responses past their retention (issue 23), on the
 * archiver's schedule and under its lease, so one replica at a time does it. Each round asks the
 * store for one bounded purge (`Store.purgeExpired`), which works in slices of a few families per
 * write: calls are never held back for long.
 */
export class ExpiryPurger {
  private readonly holder: string;
  private readonly ownLease: boolean;
  private readonly familiesPerRound: number;
  private readonly leaseTtlMs: number;
  private readonly now: () => number;
  private readonly rounds: SerialRounds<ExpiryRoundOutcome>;
  private status: {
    purged: Record<PurgedKind, number>;
    kept: number;
    rounds: number;
    lastRunAt: number;
    lastError: ExpiryPurgerStatus['lastError'];
    errors: number;
    leader: boolean;
  } = {
    purged: { families: 0, keys: 0, spend_days: 0, idempotent_responses: 0, alerts: 0, vendor_objects: 0 },
    kept: 0,
    rounds: 0,
    lastRunAt: 0,
    lastError: undefined,
    errors: 0,
    leader: false,
  };

  constructor(private readonly options: ExpiryPurgerOptions) {
    this.holder = options.holder ?? randomUUID();
    this.ownLease = options.holder === undefined;
    this.familiesPerRound = options.familiesPerRound ?? 1000;
    this.leaseTtlMs = options.leaseTtlMs ?? defaultArchiveLeaseTtlMs(options.intervalMs);
    this.now = options.now ?? Date.now;
    this.rounds = new SerialRounds({
      round: () => this.round(),
      nextDelayMs: (outcome) => (outcome.kind === 'purged' && outcome.more ? 0 : options.intervalMs),
      retryDelayMs: options.intervalMs,
    });
  }

  /** Runs a round now, then every `intervalMs` (at once again while a round hit its limit). */
  start(): void {
    this.rounds.start(0);
  }

  /** Stops after the round in flight; gives the lease up if it took it itself. */
  async stop(): Promise<void> {
    await this.rounds.stop();
    if (this.ownLease && this.status.leader) {
      await this.options.store.releaseArchiveLease(this.holder).catch(() => undefined);
    }
  }

  /** What `/metrics` shows. */
  snapshot(): ExpiryPurgerStatus {
    return { ...this.status, purged: { ...this.status.purged } };
  }

  /** One round, never overlapping another: for tests and the timer. */
  runOnce(): Promise<ExpiryRoundOutcome> {
    return this.rounds.runOnce();
  }

  private async round(): Promise<ExpiryRoundOutcome> {
    const { store } = this.options;
    try {
      const held = await store.acquireArchiveLease({ holder: this.holder, ttlMs: this.leaseTtlMs });
      this.status.leader = held;
      if (!held) return { kind: 'not_leader' };
      const now = this.now();
      const purged = await store.purgeExpired({
        now,
        keyRetentionMs: this.options.keyRetentionMs,
        limit: this.familiesPerRound,
      });
      const counts = this.status.purged;
      counts.families += purged.families;
      counts.keys += purged.keys;
      counts.spend_days += purged.spendDays;
      counts.idempotent_responses += purged.idempotentResponses;
      counts.alerts += purged.alerts;
      counts.vendor_objects += purged.vendorObjects;
      this.status.kept = purged.kept;
      this.status.rounds += 1;
      this.status.lastRunAt = now;
      if (purged.families + purged.idempotentResponses > 0) this.options.onPurge?.(purged);
      return { kind: 'purged', ...purged };
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      this.status.lastError = { at: this.now(), message: failure.message };
      this.status.errors += 1;
      this.options.onError?.(failure);
      throw failure;
    }
  }
}
