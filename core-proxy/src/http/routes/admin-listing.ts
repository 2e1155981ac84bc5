/**
 * Query parsing of the console's list endpoints (issue 22): `GET /vault/keys` and the paged form
 * of `GET /vault/keys/{id}/calls`. Every bad filter or cursor is 400 `invalid_request`.
 */
import { InvalidRequestError } from '../../errors.js';
import type { KeyStatus } from '../../keys/key-status.js';
import {
  DEFAULT_KEY_PAGE,
  KEY_SORTS,
  type KeyListQuery,
  type KeySort,
  MAX_KEY_PAGE,
  decodeKeyCursor,
} from '../../store/key-listing.js';

/** Default and largest page of the paged `calls`. */
export const DEFAULT_CALLS_PAGE = 100;
export const MAX_CALLS_PAGE = 1000;

const KEY_LIST_PARAMS = new Set([
  'status',
  'vendor',
  'label_prefix',
  'parent_key_id',
  'tainted',
  'sort',
  'limit',
  'cursor',
]);
const CALLS_PARAMS = new Set(['limit', 'cursor', 'after_seq']);
const STATUSES: readonly KeyStatus[] = ['active', 'revoked', 'expired'];

type Query = Record<string, unknown>;

/** One text parameter, or undefined; repeated, empty or over-long is refused. */
function text(query: Query, name: string, maxLength = 200): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new InvalidRequestError(`${name} must be given once.`);
  if (value.length === 0 || value.length > maxLength)
    throw new InvalidRequestError(`${name} must be 1 to ${maxLength} characters.`);
  return value;
}

function integer(query: Query, name: string, min: number, max: number): number | undefined {
  const value = text(query, name, 20);
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max)
    throw new InvalidRequestError(`${name} must be an integer from ${min} to ${max}.`);
  return Number(value);
}

function onlyKnown(query: Query, known: ReadonlySet<string>): void {
  for (const name of Object.keys(query)) {
    if (!known.has(name))
      throw new InvalidRequestError(`Unknown query parameter ${JSON.stringify(name.slice(0, 50))}.`);
  }
}

/** The query of `GET /vault/keys`. */
export function parseKeyListQuery(query: Query, now: number): KeyListQuery {
  onlyKnown(query, KEY_LIST_PARAMS);
  const status = text(query, 'status');
  if (status !== undefined && !STATUSES.includes(status as KeyStatus))
    throw new InvalidRequestError(`status must be one of ${STATUSES.join(', ')}.`);
  const sort = text(query, 'sort') ?? 'newest';
  if (!KEY_SORTS.includes(sort as KeySort))
    throw new InvalidRequestError(`sort must be one of ${KEY_SORTS.join(', ')}.`);
  const tainted = text(query, 'tainted');
  if (tainted !== undefined && tainted !== 'true' && tainted !== 'false')
    throw new InvalidRequestError('tainted must be true or false.');
  const cursor = text(query, 'cursor', 400);
  return {
    status: status as KeyStatus | undefined,
    vendor: text(query, 'vendor', 64),
    labelPrefix: text(query, 'label_prefix'),
    parentKeyId: text(query, 'parent_key_id', 100),
    tainted: tainted === undefined ? undefined : tainted === 'true',
    sort: sort as KeySort,
    limit: integer(query, 'limit', 1, MAX_KEY_PAGE) ?? DEFAULT_KEY_PAGE,
    after: cursor === undefined ? null : decodeKeyCursor(sort as KeySort, cursor),
    now,
  };
}

/** The paged form of `calls`, or null when none of its parameters is given (the contract's answer). */
export function parseCallsPage(query: Query): { afterSeq: number; limit: number } | null {
  onlyKnown(query, CALLS_PARAMS);
  if (Object.keys(query).length === 0) return null;
  const limit = integer(query, 'limit', 1, MAX_CALLS_PAGE) ?? DEFAULT_CALLS_PAGE;
  const afterSeq = integer(query, 'after_seq', 0, Number.MAX_SAFE_INTEGER);
  const cursor = text(query, 'cursor', 100);
  if (afterSeq !== undefined && cursor !== undefined)
    throw new InvalidRequestError('Give cursor or after_seq, not both.');
  return { afterSeq: cursor === undefined ? (afterSeq ?? 0) : decodeCallsCursor(cursor), limit };
}

/** The cursor of the next page of calls: after the page's last seq. */
export function encodeCallsCursor(seq: number): string {
  return Buffer.from(JSON.stringify({ a: seq })).toString('base64url');
}

function decodeCallsCursor(cursor: string): number {
  const invalid = new InvalidRequestError('cursor is not a cursor of this listing (take next_cursor as given).');
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid;
  try {
    const { a } = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { a?: unknown };
    if (typeof a === 'number' && Number.isSafeInteger(a) && a >= 0) return a;
  } catch {
    // falls through to the refusal
  }
  throw invalid;
}
