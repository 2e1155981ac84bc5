/**
 * What a purge of expired key families removed (issue 23), counted the same way by the embedded
 * store and the Redis store as each adds up its families and slices into `Store.purgeExpired`'s
 * answer.
 */
import type { ExpiryPurgeOutput } from './store.js';

/** A purge's counts, without `more` (which only the whole call knows). */
export type ExpiryCounts = Omit<ExpiryPurgeOutput, 'more'>;

/** Nothing removed, nothing kept: where a purge's totals start. */
export const NO_EXPIRY_COUNTS: ExpiryCounts = {
  keys: 0,
  families: 0,
  spendDays: 0,
  idempotentResponses: 0,
  alerts: 0,
  vendorObjects: 0,
  kept: 0,
};

/** The sum of two purges' counts, field by field. */
export function addExpiryCounts(a: ExpiryCounts, b: ExpiryCounts): ExpiryCounts {
  return {
    keys: a.keys + b.keys,
    families: a.families + b.families,
    spendDays: a.spendDays + b.spendDays,
    idempotentResponses: a.idempotentResponses + b.idempotentResponses,
    alerts: a.alerts + b.alerts,
    vendorObjects: a.vendorObjects + b.vendorObjects,
    kept: a.kept + b.kept,
  };
}
