import type { FastifyBaseLogger } from 'fastify';
import type { SettleInput, Store } from '../store/store.js';

/** Options of {@link DeferredSettlements}. */
export interface DeferredSettlementsOptions {
  /** First retry delay; doubles up to `maxDelayMs`. @default 250 */
  readonly initialDelayMs?: number;
  /** @default 5000 */
  readonly maxDelayMs?: number;
  /** Settlements held at most; past it, a call is left to recovery. @default 10000 */
  readonly limit?: number;
}

/**
 * Settlements of calls the vendor answered while the store could not record them (down, disk full,
 * read-only). The reservation is already durable, so nothing is lost either way; holding the
 * settlement lets the real outcome (cost, vendor id, response for idempotent replay) reach the
 * audit log once the store is back, instead of the reservation being recovered as unknown spend.
 *
 * Retrying is safe: `settle` writes nothing when the reservation is already gone (settled by an
 * earlier try whose answer was lost, or recovered). If this process dies first, recovery turns the
 * reservation into an `unknown` record: at the next start (embedded store) or after
 * `KEYBRAKE_RESERVATION_TTL_MS` (Redis).
 */
export class DeferredSettlements {
  private readonly held = new Map<string, SettleInput>();
  private timer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private flushing: Promise<void> | undefined;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly limit: number;

  constructor(
    private readonly store: Store,
    private readonly log: FastifyBaseLogger,
    options: DeferredSettlementsOptions = {},
  ) {
    this.initialDelayMs = options.initialDelayMs ?? 250;
    this.maxDelayMs = options.maxDelayMs ?? 5000;
    this.limit = options.limit ?? 10_000;
    this.delayMs = this.initialDelayMs;
  }

  /** Settlements waiting for the store. */
  get size(): number {
    return this.held.size;
  }

  /** Holds a settlement to retry. False when the limit is reached (left to recovery). */
  hold(input: SettleInput): boolean {
    if (this.held.size >= this.limit) return false;
    this.held.set(input.reservationId, input);
    this.schedule();
    return true;
  }

  /** Tries every held settlement once, oldest first; stops at the first store failure. */
  flush(): Promise<void> {
    this.flushing ??= this.tryAll().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** One last try, then what is left is reported and left to recovery. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    if (this.held.size > 0) {
      this.log.warn(
        { settlements: this.held.size },
        'store still unavailable at shutdown: these calls stay reserved and are recovered as unknown spend',
      );
    }
    this.held.clear();
  }

  private schedule(): void {
    if (this.timer || this.held.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush().then(() => this.schedule());
    }, this.delayMs);
    this.timer.unref();
  }

  private async tryAll(): Promise<void> {
    for (const [reservationId, input] of this.held) {
      try {
        const settled = await this.store.settle(input);
        this.held.delete(reservationId);
        this.log.info(
          { keyId: input.keyId, outcome: input.audit.outcome, recorded: settled },
          settled ? 'deferred settlement recorded' : 'deferred settlement already resolved',
        );
        this.delayMs = this.initialDelayMs;
      } catch {
        this.delayMs = Math.min(this.delayMs * 2, this.maxDelayMs);
        return;
      }
    }
  }
}
