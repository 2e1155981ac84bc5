/**
 * Request and concurrency limits per vault key (issue 26): the rule both stores apply inside the
 * reservation, so a call over a limit reserves nothing and a call admitted is counted in the same
 * atomic write as its reservation. The embedded store runs {@link admitCall} in TypeScript; the
 * Redis store runs the same rule in `lua/reserve.ts` (step 7), numbered alike.
 *
 * Windows are fixed and aligned to the clock: the UTC second (`floor(now / 1000)`) and minute
 * (`floor(now / 60000)`). A key with `max_requests_per_second: N` admits at most N calls in each
 * second, so at most 2N within any 1,000 ms that straddle a boundary (N at the end of one second,
 * N at the start of the next): the burst this choice allows, documented in the README. A window
 * stored ahead of a replica's clock (clocks a few ms apart) is counted into, never reset: a
 * window only ever moves forward.
 *
 * Counted: calls admitted (reserved). Not counted: replays of a kept idempotent response (they
 * never reach the vendor, and are answered before this step), and every refused call, a limit
 * refusal included: a client retrying in a tight loop does not push its own window further out.
 */

/** The limits a key was issued with; `null`: no such limit. */
export interface KeyLimits {
  readonly maxRequestsPerSecond: number | null;
  readonly maxRequestsPerMinute: number | null;
  readonly maxConcurrent: number | null;
}

/** The largest value any limit accepts at issuance. */
export const MAX_LIMIT_VALUE = 1_000_000;

const SECOND_MS = 1000;
const MINUTE_MS = 60_000;

/** Whether a key has any limit at all (a key with none costs the stores no extra work). */
export function hasLimits(limits: KeyLimits | null | undefined): limits is KeyLimits {
  return (
    limits !== null &&
    limits !== undefined &&
    (limits.maxRequestsPerSecond !== null || limits.maxRequestsPerMinute !== null || limits.maxConcurrent !== null)
  );
}

/** One key of a reservation's chain as the limit step reads it (inside the store's write). */
export interface LimitState {
  readonly keyId: string;
  readonly limits: KeyLimits;
  readonly inFlight: number;
  /** The window (epoch seconds, minutes) the counts belong to; null: never counted. */
  readonly secondWindow: number | null;
  readonly secondCount: number;
  readonly minuteWindow: number | null;
  readonly minuteCount: number;
}

/** What the admitted call writes back for one key of the chain. */
export interface LimitUpdate {
  readonly keyId: string;
  readonly secondWindow: number | null;
  readonly secondCount: number;
  readonly minuteWindow: number | null;
  readonly minuteCount: number;
  /** 1 when the key has a concurrency limit (its in-flight count goes up), else 0. */
  readonly inFlightDelta: 0 | 1;
}

/** Room left after a call, across its key and every ancestor (the tightest one); null: no such limit. */
export interface LimitRoom {
  readonly requests: number | null;
  readonly concurrent: number | null;
}

/** The limit step's answer. */
export type LimitDecision =
  | { readonly kind: 'admitted'; readonly updates: readonly LimitUpdate[]; readonly room: LimitRoom }
  | {
      readonly kind: 'refused';
      readonly code: 'rate_limited' | 'concurrency_limited';
      /** The key whose limit refused it (the key itself or an ancestor). */
      readonly limitKeyId: string;
      /** Whole seconds, at least 1. */
      readonly retryAfterS: number;
    };

/** Seconds until a window ends, rounded up, at least 1 (`Retry-After` takes whole seconds). */
export function retryAfterSeconds(windowEndMs: number, now: number): number {
  return Math.max(1, Math.ceil((windowEndMs - now) / 1000));
}

/**
 * Step 7 of `Store.reserve`: for each key of the chain, nearest first, its per-second window,
 * then its per-minute window, then its in-flight count. The first limit that would be exceeded is
 * the refusal; otherwise every count the call takes, and the room it leaves.
 */
export function admitCall(chain: readonly LimitState[], now: number): LimitDecision {
  const second = Math.floor(now / SECOND_MS);
  const minute = Math.floor(now / MINUTE_MS);
  const updates: LimitUpdate[] = [];
  let requests: number | null = null;
  let concurrent: number | null = null;
  const tighter = (room: number | null, left: number): number => (room === null ? left : Math.min(room, left));
  for (const key of chain) {
    const { maxRequestsPerSecond: perSecond, maxRequestsPerMinute: perMinute, maxConcurrent } = key.limits;
    let secondWindow = key.secondWindow;
    let secondCount = key.secondCount;
    if (perSecond !== null) {
      if (secondWindow === null || second > secondWindow) [secondWindow, secondCount] = [second, 0];
      if (secondCount + 1 > perSecond) {
        return refusal('rate_limited', key.keyId, retryAfterSeconds((secondWindow + 1) * SECOND_MS, now));
      }
      secondCount += 1;
      requests = tighter(requests, perSecond - secondCount);
    }
    let minuteWindow = key.minuteWindow;
    let minuteCount = key.minuteCount;
    if (perMinute !== null) {
      if (minuteWindow === null || minute > minuteWindow) [minuteWindow, minuteCount] = [minute, 0];
      if (minuteCount + 1 > perMinute) {
        return refusal('rate_limited', key.keyId, retryAfterSeconds((minuteWindow + 1) * MINUTE_MS, now));
      }
      minuteCount += 1;
      requests = tighter(requests, perMinute - minuteCount);
    }
    if (maxConcurrent !== null) {
      // Nothing says when a call in flight ends: one second, the smallest `Retry-After`.
      if (key.inFlight + 1 > maxConcurrent) return refusal('concurrency_limited', key.keyId, 1);
      concurrent = tighter(concurrent, maxConcurrent - key.inFlight - 1);
    }
    if (hasLimits(key.limits)) {
      updates.push({
        keyId: key.keyId,
        secondWindow,
        secondCount,
        minuteWindow,
        minuteCount,
        inFlightDelta: maxConcurrent === null ? 0 : 1,
      });
    }
  }
  return { kind: 'admitted', updates, room: { requests, concurrent } };
}

function refusal(code: 'rate_limited' | 'concurrency_limited', limitKeyId: string, retryAfterS: number): LimitDecision {
  return { kind: 'refused', code, limitKeyId, retryAfterS };
}

/** A cap of one key of a chain, as the remaining-room header reads it. */
export interface CapRoom {
  readonly cap: number | null;
  readonly used: number;
  readonly dailyCap: number | null;
  readonly usedToday: number;
}

/**
 * Micro-dollars left under the tightest cap of the chain (lifetime or daily, own or any
 * ancestor's) once `costMicros` is reserved, at least 0. Every key has a cap, so a chain has one.
 */
export function remainingUnderCaps(chain: readonly CapRoom[], costMicros: number): number {
  let remaining = Number.POSITIVE_INFINITY;
  for (const key of chain) {
    if (key.cap !== null) remaining = Math.min(remaining, key.cap - key.used - costMicros);
    if (key.dailyCap !== null) remaining = Math.min(remaining, key.dailyCap - key.usedToday - costMicros);
  }
  return Number.isFinite(remaining) ? Math.max(0, remaining) : 0;
}
