/**
 * The key list of the operator's console (issue 22): filters, three orders and cursors, the same
 * on every store. A store keeps three sort indexes and a digest of its audit chain (see
 * {@link KeyListingIndex}); this file walks an index, reads each key's live state, filters and
 * pages, so both stores answer alike.
 *
 * The digest (calls, cap hits and refusals per key, and the `most_spent` / `closest_to_cap`
 * scores) is brought up to date from the audit chain before each page, never on the proxied call's
 * path: a call costs the stores nothing more than before. Only `newest` is kept by the key's own
 * insert (its score never changes).
 */
import { InvalidRequestError } from '../errors.js';
import { keyStatus, type KeyStatus } from '../keys/key-status.js';
import type { Micros } from '../pricing/money.js';
import { type AuditEntry, type AuditHead, type VaultKeyState, utcDay } from './store.js';

/** The orders of `GET /vault/keys`. */
export const KEY_SORTS = ['newest', 'most_spent', 'closest_to_cap'] as const;
export type KeySort = (typeof KEY_SORTS)[number];

/** Default and largest page of `GET /vault/keys`. */
export const DEFAULT_KEY_PAGE = 100;
export const MAX_KEY_PAGE = 500;

/**
 * Index entries one request walks at most. A page with selective filters may end short (even
 * empty) with a cursor: each request's work stays bounded, whatever the filters match.
 */
export const MAX_KEYS_SCANNED = 2000;

/** Where an index walk stands: the last entry returned. */
export interface IndexPosition {
  readonly keyId: string;
  readonly score: number;
}

/** Filters and page of {@link listKeyPage}; every filter is optional. */
export interface KeyListQuery {
  readonly status?: KeyStatus;
  readonly vendor?: string;
  readonly labelPrefix?: string;
  readonly parentKeyId?: string;
  readonly tainted?: boolean;
  readonly sort: KeySort;
  readonly limit: number;
  /** After this entry of the sort's index (a decoded cursor). */
  readonly after: IndexPosition | null;
  /** Epoch ms: status and today's spend are as of then. */
  readonly now: number;
}

/** Per-key counts of the audit digest. */
export interface KeyCallStats {
  readonly calls: number;
  readonly capHits: number;
  readonly refusals: number;
}

/** A listed key: its live state and its digest counts. */
export interface ListedKey {
  readonly key: VaultKeyState;
  readonly stats: KeyCallStats;
}

/** One page of {@link listKeyPage}. */
export interface KeyListPage {
  readonly keys: readonly ListedKey[];
  readonly next: IndexPosition | null;
}

/** Where the digest stands: the last audit seq it counted, and the UTC day of its `closest_to_cap` scores. */
export interface DigestProgress {
  readonly seq: number;
  readonly day: string;
}

/** The scores of one key in the `most_spent` and `closest_to_cap` indexes. */
export interface KeyScores {
  readonly keyId: string;
  readonly spent: Micros;
  readonly headroom: Micros;
}

/** One step of the digest, applied atomically only if the digest still stands at `from`. */
export interface DigestUpdate {
  readonly from: DigestProgress;
  readonly to: DigestProgress;
  /** Counts to add, per key. */
  readonly counts: ReadonlyMap<string, KeyCallStats>;
  /** Scores to set (absolute, read live: applying them twice is harmless). */
  readonly scores: readonly KeyScores[];
}

/** What a store provides for the key list: its indexes and its digest. */
export interface KeyListingIndex {
  /** Entries of a sort's index after `after`, in the sort's order, at most `count`. */
  scan(sort: KeySort, after: IndexPosition | null, count: number): Promise<IndexPosition[]>;
  /** Digest counts of these keys (zeros for a key with none). */
  stats(keyIds: readonly string[]): Promise<Map<string, KeyCallStats>>;
  progress(): Promise<DigestProgress>;
  /** Applies an update if the digest is still at `update.from` (another process may have moved it); false if not. */
  apply(update: DigestUpdate): Promise<boolean>;
}

/** The store reads the listing needs. */
export interface KeyListingReads {
  getKey(keyId: string, now: number): Promise<VaultKeyState | undefined>;
  readAudit(afterSeq: number, limit: number): Promise<AuditEntry[]>;
  /** On Redis this also seals the records marked for the sealer, so the digest sees them. */
  auditHead(): Promise<AuditHead>;
}

/** Records the digest reads per step. */
const DIGEST_BATCH = 1000;

const ZERO_STATS: KeyCallStats = { calls: 0, capHits: 0, refusals: 0 };

/**
 * Remaining USD (micros) against the key's tightest cap, as `closest_to_cap` orders it: the
 * lifetime cap less spend and reservations, and the daily cap less today's (UTC) spend and
 * reservations, whichever is smaller. A daily cap starts over at 00:00 UTC, so every daily-capped
 * key's score changes then: the digest re-scores them all at its first step of a new day.
 */
export function headroomMicros(key: VaultKeyState): Micros {
  const limits: Micros[] = [];
  if (key.capMicros !== null) limits.push(key.capMicros - key.spentMicros - key.reservedMicros);
  if (key.dailyCapMicros !== null) limits.push(key.dailyCapMicros - key.spentTodayMicros - key.reservedTodayMicros);
  return limits.length === 0 ? Number.MAX_SAFE_INTEGER : Math.min(...limits);
}

/** The scores of a key freshly issued: nothing spent. */
export function initialScores(key: {
  keyId: string;
  capMicros: Micros | null;
  dailyCapMicros: Micros | null;
}): KeyScores {
  const caps = [key.capMicros, key.dailyCapMicros].filter((cap): cap is Micros => cap !== null);
  return { keyId: key.keyId, spent: 0, headroom: caps.length === 0 ? Number.MAX_SAFE_INTEGER : Math.min(...caps) };
}

/** Whether a sort walks its index from the highest score down. */
export function descending(sort: KeySort): boolean {
  return sort !== 'closest_to_cap';
}

/**
 * One page: walks the sort's index from the cursor, reads each key live, keeps those the filters
 * match. At most {@link MAX_KEYS_SCANNED} entries per request; the cursor then points where the walk
 * stopped.
 */
export async function listKeyPage(
  index: KeyListingIndex,
  reads: KeyListingReads,
  query: KeyListQuery,
): Promise<KeyListPage> {
  const matched: VaultKeyState[] = [];
  let after = query.after;
  let scanned = 0;
  let exhausted = false;
  while (matched.length < query.limit && scanned < MAX_KEYS_SCANNED) {
    const want = Math.min(Math.max(query.limit - matched.length, 50), MAX_KEYS_SCANNED - scanned);
    const entries = await index.scan(query.sort, after, want);
    const states = await Promise.all(entries.map((entry) => reads.getKey(entry.keyId, query.now)));
    for (const [i, entry] of entries.entries()) {
      scanned += 1;
      after = entry;
      const state = states[i];
      if (state && matches(state, query)) matched.push(state);
      if (matched.length === query.limit) break;
    }
    // A full page ends where it is: more may follow. A short scan is the index's end.
    if (matched.length < query.limit && entries.length < want) exhausted = true;
    if (exhausted) break;
  }
  const stats = await index.stats(matched.map((key) => key.keyId));
  return {
    keys: matched.map((key) => ({ key, stats: stats.get(key.keyId) ?? ZERO_STATS })),
    next: exhausted || after === null ? null : after,
  };
}

function matches(key: VaultKeyState, query: KeyListQuery): boolean {
  if (query.status !== undefined && keyStatus(key, query.now) !== query.status) return false;
  if (query.vendor !== undefined && key.vendor !== query.vendor) return false;
  if (query.labelPrefix !== undefined && !(key.agentRunLabel ?? '').startsWith(query.labelPrefix)) return false;
  if (query.parentKeyId !== undefined && key.parentKeyId !== query.parentKeyId) return false;
  if (query.tainted !== undefined && key.tainted !== query.tainted) return false;
  return true;
}

/**
 * Brings a store's digest up to date with its audit chain: counts each new record against its
 * key, and re-scores the keys those records touched and their ancestors (a child's spend is its
 * ancestors' spend too), read live. At the first step of a new UTC day it re-scores every key with a
 * daily cap. Safe to run in several processes at once: each step applies only where the digest
 * still stands where it read it, and starts over otherwise.
 */
export async function catchUpDigest(index: KeyListingIndex, reads: KeyListingReads, now: number): Promise<void> {
  await reads.auditHead();
  const day = utcDay(now);
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    const from = await index.progress();
    const entries = await reads.readAudit(from.seq, DIGEST_BATCH);
    if (entries.length === 0 && from.day === day) return;
    const counts = new Map<string, { calls: number; capHits: number; refusals: number }>();
    for (const entry of entries) {
      const record = parseRecord(entry.record);
      if (record?.key_id == null) continue;
      const count = counts.get(record.key_id) ?? { calls: 0, capHits: 0, refusals: 0 };
      count.calls += 1;
      if (record.reason === 'cap_exhausted') count.capHits += 1;
      if (record.outcome === 'blocked') count.refusals += 1;
      counts.set(record.key_id, count);
    }
    const touched = new Set(counts.keys());
    if (from.day !== day) for (const keyId of await dailyCappedKeys(index, reads, now)) touched.add(keyId);
    const scores: KeyScores[] = [];
    const seen = new Set<string>();
    for (const keyId of touched) {
      // The key, then its ancestors: their spend includes it.
      let next: string | null = keyId;
      while (next !== null && !seen.has(next)) {
        seen.add(next);
        const state: VaultKeyState | undefined = await reads.getKey(next, now);
        if (!state) break;
        scores.push({ keyId: next, spent: state.spentMicros, headroom: headroomMicros(state) });
        next = state.parentKeyId;
      }
    }
    const to = { seq: entries.at(-1)?.seq ?? from.seq, day };
    const applied = await index.apply({ from, to, counts, scores });
    if (applied && entries.length < DIGEST_BATCH) return;
  }
}

/** Every key with a daily cap, through the `newest` index. */
async function dailyCappedKeys(index: KeyListingIndex, reads: KeyListingReads, now: number): Promise<string[]> {
  const ids: string[] = [];
  let after: IndexPosition | null = null;
  for (;;) {
    const entries = await index.scan('newest', after, 500);
    const states = await Promise.all(entries.map((entry) => reads.getKey(entry.keyId, now)));
    for (const state of states) if (state && state.dailyCapMicros !== null) ids.push(state.keyId);
    if (entries.length < 500) return ids;
    after = entries.at(-1) as IndexPosition;
  }
}

function parseRecord(text: string): { key_id?: string | null; outcome?: string; reason?: string | null } | undefined {
  try {
    return JSON.parse(text) as { key_id?: string | null; outcome?: string; reason?: string | null };
  } catch {
    // An unreadable record (tampered): verification names it; the digest skips it.
    return undefined;
  }
}

/** The opaque cursor of a page: the sort it belongs to and the last entry returned. */
export function encodeKeyCursor(sort: KeySort, position: IndexPosition): string {
  return Buffer.from(JSON.stringify({ o: sort, s: position.score, k: position.keyId })).toString('base64url');
}

/** Reads a cursor back; a cursor that is not one of ours, or of another sort, is 400 `invalid_request`. */
export function decodeKeyCursor(sort: KeySort, cursor: string): IndexPosition {
  const invalid = new InvalidRequestError(
    'cursor is not a cursor of this listing (take next_cursor as given, with the same sort).',
  );
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) throw invalid;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid;
  }
  const { o, s, k } = (decoded ?? {}) as { o?: unknown; s?: unknown; k?: unknown };
  if (
    o !== sort ||
    typeof s !== 'number' ||
    !Number.isSafeInteger(s) ||
    typeof k !== 'string' ||
    !/^[\w-]{1,100}$/.test(k)
  )
    throw invalid;
  return { keyId: k, score: s };
}
