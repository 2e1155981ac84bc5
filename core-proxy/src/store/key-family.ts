import { InvalidRequestError, KeyDepthExceededError } from '../errors.js';
import { MAX_CHAIN_LENGTH, MAX_KEY_DEPTH } from '../keys/key-depth.js';

/**
 * The rules of a key family (a root key and its descendants) that both stores apply, each inside
 * its own atomic step: the embedded store in one transaction, the Redis store around and inside
 * `lua/family.ts`. The walks themselves are each store's own: the embedded store follows parent
 * links (`SqliteStore.ancestry`, a recursive CTE for the subtree), the Redis store caches the
 * immutable ancestry (`RedisStore.family`) and walks the subtree in `MARK_SUBTREE_LUA`. Both walk an
 * ancestry at most `MAX_CHAIN_LENGTH + 1` keys long: the whole permitted chain and one key more,
 * to tell a chain that is too long.
 */

/** Keys of an ancestry walk: the permitted chain plus the one that shows it is too long. */
export const ANCESTRY_WALK_LIMIT = MAX_CHAIN_LENGTH + 1;

/** `createKey` with a `parentKeyId` that names no key. */
export function parentMissingError(): InvalidRequestError {
  return new InvalidRequestError('parent_key_id names no vault key.');
}

/** `createKey` with a parent that is revoked, or expired at the child's `createdAt`. */
export function parentInactiveError(): InvalidRequestError {
  return new InvalidRequestError('The parent key is not active.');
}

/**
 * Whether a parent whose ancestry walk (the parent first) has `parentChainLength` keys has room for
 * a child. Checked after the parent is found active, on both stores.
 */
export function parentHasRoom(parentChainLength: number): boolean {
  return parentChainLength <= MAX_KEY_DEPTH;
}

/** `createKey` under a parent with no room left. */
export function keyDepthExceededError(): KeyDepthExceededError {
  return new KeyDepthExceededError(MAX_KEY_DEPTH);
}

/** A child never outlives its parent. */
export function childExpiresAt(requestedExpiresAt: number, parentExpiresAt: number): number {
  return Math.min(requestedExpiresAt, parentExpiresAt);
}
