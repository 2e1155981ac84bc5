import { randomUUID } from 'node:crypto';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { GENESIS_HASH, chainEntry } from '../../audit/chain.js';
import { type AuditRecordJson, auditRecordJson, interruptedAuditInput } from '../../audit/record.js';
import { InvalidVaultKeyError, StoreUnavailableError } from '../../errors.js';
import { fractionText } from '../../alerts/alert-thresholds.js';
import { MAX_CHAIN_LENGTH } from '../../keys/key-depth.js';
import {
  ANCESTRY_WALK_LIMIT,
  childExpiresAt,
  keyDepthExceededError,
  parentHasRoom,
  parentInactiveError,
  parentMissingError,
} from '../key-family.js';
import { type KeyListPage, type KeyListQuery, catchUpDigest, listKeyPage } from '../key-listing.js';
import { hasLimits } from '../key-limits.js';
import { identityOfText, identityText } from '../key-identity.js';
import { RELEASE_LOCK_LUA, SEALED_COUNT_LUA, SEAL_APPEND_LUA } from './lua/audit-seal.js';
import { CREATE_KEY_LUA, MARK_SUBTREE_LUA } from './lua/family.js';
import { RESERVE_LUA } from './lua/reserve.js';
import { SETTLE_LUA } from './lua/settle.js';
import { ALERT_FAMILIES, RedisAlerts, alertsKey, defineAlertScripts } from './redis-alerts.js';
import { CLAIM_OBJECT_LUA, RECORD_OBJECT_LUA, RELEASE_OBJECT_LUA } from './lua/objects.js';
import { RedisArchive } from './redis-archive.js';
import { RedisExpiry } from './redis-expiry.js';
import { DEFAULT_RELIST_MS, FED, INDEX, RELIST_GRACE_MS, RedisListing, STATS, unlistedKey } from './redis-listing.js';
import { listEarlierKeys } from './redis-upgrade.js';
import {
  DEFAULT_IDEMPOTENCY_RETENTION_MS,
  type AlertClaimInput,
  type AlertClaimOutput,
  type AlertFinishInput,
  type ArchiveLeaseInput,
  type ArchiveState,
  type ArchivedSegmentInput,
  type AuditInput,
  type ExpiryPurgeInput,
  type ExpiryPurgeOutput,
  type AuditCheckpoint,
  type KeyAlerts,
  type ObjectClaimInput,
  type ObjectClaimOutput,
  type ObjectRecordInput,
  type ObjectReleaseInput,
  type PendingAudit,
  type AuditEntry,
  type AuditHead,
  type KeyChangesRead,
  type ReserveInput,
  type ReserveOutput,
  type SettleInput,
  type SettledObject,
  type Store,
  type StoredResponse,
  type VaultKeyRecord,
  type VaultKeyState,
  toStoreError,
  utcDay,
} from '../store.js';

/** Options of the Redis store. */
export interface RedisStoreOptions {
  /**
   * `redis://[:password@]host:port[/db]` for one Redis (with or without replicas behind it), or
   * `redis+cluster://host:port,host:port` for Redis Cluster (any reachable nodes as seeds).
   */
  readonly url: string;
  /** Prefix of every key, so several deployments can share a Redis. @default 'keybrake:' */
  readonly prefix?: string;
  /** A command not answered in this time fails the call closed (503). @default 2000 */
  readonly commandTimeoutMs?: number;
  /**
   * How long a reservation may stay unsettled before any replica's sweeper turns it into spend of
   * unknown outcome (its replica died mid-call). Must exceed the longest vendor call.
   * @default 600000 (10 minutes)
   */
  readonly reservationTtlMs?: number;
  /** How long kept idempotent responses live. @default DEFAULT_IDEMPOTENCY_RETENTION_MS (24h, the contract's minimum) */
  readonly idempotencyRetentionMs?: number;
  /** How often this replica looks for expired reservations. @default half the reservation TTL, at most 30000 */
  readonly sweepIntervalMs?: number;
  /** How often this replica seals new audit records into the chain. @default 1000 */
  readonly sealIntervalMs?: number;
  /**
   * How long the audit sealer lock lives without being renewed. A sealer that died holding it
   * blocks sealing for at most this long; tests shrink it to make locks expire mid-seal.
   * @default 2000
   */
  readonly sealLockTtlMs?: number;
  /**
   * Redis Cluster only (issue 26): how often this replica relists families whose alert fired but
   * whose listing for the senders was lost (a replica killed between the two). @default 30000
   */
  readonly alertRelistMs?: number;
}

/** The immutable part of a key and where its family lives; safe to cache forever. */
interface FamilyEntry {
  readonly record: VaultKeyRecord;
  readonly root: string;
  /**
   * The key and its ancestors, nearest first: the whole chain when it is within `MAX_KEY_DEPTH`,
   * else its first `MAX_CHAIN_LENGTH + 1` keys (a chain written before the limit, never used).
   */
  readonly chain: readonly string[];
  /** Issue 26: some key of the chain has a request or concurrency limit (the reserve script's step 7). */
  readonly limited: boolean;
  /** Issue 26: 1-based positions in `chain` of the keys with `max_concurrent`. */
  readonly concurrent: readonly number[];
}

/** What settle needs to know about a reservation made by this replica. */
interface PendingReservation {
  readonly root: string;
  readonly chain: readonly string[];
  readonly day: string;
  readonly idempotencyKey: string | null;
  /** Issue 26: 1-based chain positions whose in-flight sets hold the reservation (absent: none). */
  readonly conc?: readonly number[];
}

/**
 * An audit record as appended to a family's list, before the sealer gives it a place in the chain:
 * the record itself and an id, to recognise it if it is sealed twice.
 */
type FamilyAuditRecord = AuditInput & { readonly rid: string };

/** A reservation as kept in its family's reservations hash until settled or swept. */
interface ReservationEntry {
  readonly amount: number;
  readonly day: string;
  readonly chain: readonly string[];
  /** Whether the call holds an idempotency claim (read by the settle script). */
  readonly idem: boolean;
  readonly idem_key: string | null;
  /** Epoch ms after which any replica's sweeper may resolve it as unknown. */
  readonly deadline: number;
  readonly pending: PendingAudit;
  /** Issue 26: 1-based chain positions whose in-flight sets (`flightKey`) hold the call (absent: none). */
  readonly conc?: readonly number[];
}

interface ScriptCommands {
  kbReserve(...args: (string | number)[]): Promise<[string, string?, string?, (string | number)?, string?]>;
  kbSettle(...args: (string | number)[]): Promise<[number, number]>;
  kbCreateKey(...args: (string | number)[]): Promise<[string, string?]>;
  kbMarkSubtree(...args: (string | number)[]): Promise<number>;
  kbSealAppend(...args: (string | number)[]): Promise<number>;
  kbSealedCount(...args: (string | number)[]): Promise<number>;
  kbReleaseLock(...args: (string | number)[]): Promise<number>;
  kbClaimObject(...args: (string | number)[]): Promise<string[]>;
  kbReleaseObject(...args: (string | number)[]): Promise<number>;
  kbRecordObject(...args: (string | number)[]): Promise<number>;
}

type Client = (Redis | Cluster) & ScriptCommands;

/** Audit records of requests with no known key go to a shard of their own. */
const NO_KEY_SHARD = 'nokey';
const DAY_TTL_MS = 9 * 24 * 3600 * 1000;
const CACHE_LIMIT = 50_000;

const tag = (root: string): string => `{vk:${root}}`;
const keyHashKey = (root: string, id: string): string => `${tag(root)}:k:${id}`;
const dayKey = (root: string, id: string, day: string): string => `${tag(root)}:d:${id}:${day}`;
const reservationsKey = (root: string): string => `${tag(root)}:res`;
const membersKey = (root: string): string => `${tag(root)}:members`;
const idempotencyKey = (root: string, id: string, key: string): string => `${tag(root)}:i:${id}:${key}`;
/** Issue 26: a key's calls in flight, reservation ids scored by their deadlines (see `lua/reserve.ts`). */
const flightKey = (root: string, id: string): string => `${tag(root)}:fl:${id}`;
const auditListKey = (shard: string): string => `${tag(shard)}:audit`;
/** The seqs of a shard's sealed records, in the shard's order: beside the chain, in its slot. */
const sealedSeqsKey = (shard: string): string => `{audit}:sealed:${shard}`;
/** Issue 23: how many entries the archive's trim removed from the head of each shard's seqs list. */
const SEALED_TRIMMED = '{audit}:sealed-trimmed';
/** Issue 23: how many entries the archive's trim removed from the head of a family's audit list. */
const auditTrimmedKey = (shard: string): string => `${tag(shard)}:audit-trimmed`;
const CHAIN_HEAD = '{audit}:head';
const CHAIN = '{audit}:chain';
const CHAIN_RIDS = '{audit}:rids';
/** Signed checkpoints of the chain head: records -> checkpoint JSON. */
const CHECKPOINTS = '{audit}:checkpoints';
const SEAL_LOCK = '{audit}:lock';
/** Records per sealing script, and per page when records are checked against the chain. */
const SEAL_BATCH = 500;
/** Shards whose lengths are read in one go. */
const SHARD_CHUNK = 200;
const SHARDS = 'shards';
const DIRTY_SHARDS = 'audit-dirty';

/**
 * The shared store for many proxy replicas, on Redis or Redis Cluster.
 *
 * Keys: every key of one vault-key *family* (a root key and its descendants) shares the hash tag
 * `{vk:<root>}`, so one Lua script can check and reserve across a key and all its ancestors
 * atomically, even on Cluster. On the hot path a proxied call costs two scripts, each one round
 * trip and one AOF fsync: `reserve` before forwarding (revocation, expiry, taint, idempotency and
 * every cap, read inside the script) and `settle` after (spend, idempotent response, the audit
 * record and, on one Redis, its shard's mark for the sealer, in one step).
 *
 * Local caching: only what never changes is cached (which key a vault-key hash names, its vendor,
 * allowlist, caps and ancestors). Revocation, expiry and taint are always read inside `reserve`,
 * so a DELETE on one replica stops the very next call on every other.
 *
 * Audit chain with several writers: Redis Lua has no SHA-256, so the chain cannot be computed where
 * records are written. Each record is appended durably to its family's audit list inside `settle`
 * (or by a plain RPUSH for refused calls), before the response returns. A *sealer* then gives
 * records their global order: whichever replica holds the `{audit}:lock` reads unsealed records,
 * assigns consecutive `seq`s, computes `hash_n = sha256(hash_{n-1} || canonical_json(record_n))` in
 * Node, and appends them to the global chain with a script that succeeds only if the chain head
 * is still the one it read (so an expired lock can never fork the chain). Each replica seals every
 * second, and before answering `calls` or `verify`, so both always cover every record written.
 *
 * Durability: a record is durable when Redis has it on disk; run Redis with `appendonly yes` and
 * `appendfsync always` for the promise that an answered call's record survives a Redis crash.
 *
 * Fail closed: no offline queue, no automatic resend, a command timeout; any failure is a
 * `StoreUnavailableError` (503) and nothing is forwarded. ioredis reconnects by itself.
 */
export class RedisStore implements Store {
  private readonly redis: Client;
  /**
   * The sealer's and the sweeper's connection: on one Redis a second one, so that a seal's large
   * batches (hundreds of records each way) never hold the hot path's commands back in the
   * auto-pipeline, which sends nothing more until the batch in flight is answered. On Cluster,
   * which does not auto-pipeline, the same client.
   */
  private readonly background: Client;
  /** Redis Cluster: keys of different families and of the audit chain live in different slots. */
  private readonly cluster: boolean;
  private readonly families = new Map<string, FamilyEntry>();
  private readonly byHash = new Map<string, string>();
  private readonly pending = new Map<string, PendingReservation>();
  private readonly reservationTtlMs: number;
  private readonly retentionMs: number;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly sealLockTtlMs: number;
  /** This replica's seals run one at a time, in the order asked for. */
  private sealQueue: Promise<void> = Promise.resolve();
  /** Issue 23: each shard's count trimmed from its family list's head, as last read (the sealer's guess). */
  private readonly familyTrimmed = new Map<string, number>();
  /** A periodic seal is queued or running: a replica that is behind does not pile more up. */
  private periodicSealQueued = false;
  /** The console's listing indexes and change log (issue 22). */
  private readonly listing: RedisListing;
  /** The digest catch-up in flight: concurrent listings share it. */
  private digestRun: Promise<void> | null = null;
  /** Threshold and cap-hit alerts and their outbox (issue 26). */
  private readonly alerts: RedisAlerts;
  /** The audit archive's state, lease and trim (issue 23), on the background connection. */
  private readonly archive: RedisArchive;
  /** The removal of expired families (issue 23), on the background connection. */
  private readonly expiry: RedisExpiry;
  /** The keys an earlier release issued, listed once (`redis-upgrade.ts`): before a list or a purge reads the index. */
  private readonly listEarlier: () => Promise<number>;
  private earlierListed: Promise<number> | null = null;

  constructor(options: RedisStoreOptions) {
    const prefix = options.prefix ?? 'keybrake:';
    const timeout = options.commandTimeoutMs ?? 2000;
    const connection: RedisOptions = {
      commandTimeout: timeout,
      connectTimeout: timeout,
      enableOfflineQueue: false,
      // A command cut off by a dropped connection is never sent again: it may have run.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(50 * attempt, 500),
    };
    const cluster = /^rediss?\+cluster:\/\/(?:([^:@]*):?([^@]*)@)?(.+)$/.exec(options.url);
    this.cluster = cluster !== null;
    if (cluster) {
      const [, username, password, seeds] = cluster;
      const nodes = (seeds as string).split(',').map((hostPort) => {
        const [host, port] = hostPort.split(':');
        return { host: host as string, port: Number(port ?? 6379) };
      });
      this.redis = defineScripts(
        new Cluster(nodes, {
          keyPrefix: prefix,
          // Cluster connects lazily: queue until it is ready. The command timeout still bounds every
          // wait, so a call fails closed rather than hang.
          enableOfflineQueue: true,
          // Auto-pipelining batches commands of different slots together, which Cluster refuses.
          enableAutoPipelining: false,
          clusterRetryStrategy: (attempt) => Math.min(100 * attempt, 2000),
          redisOptions: {
            ...connection,
            username: username ? decodeURIComponent(username) : undefined,
            password: password ? decodeURIComponent(password) : undefined,
          },
        }),
      );
      this.background = this.redis;
    } else {
      const open = (): Client =>
        defineScripts(new Redis(options.url, { ...connection, keyPrefix: prefix, enableAutoPipelining: true }));
      this.redis = open();
      this.background = open();
    }
    this.listing = new RedisListing(this.redis, {
      families: () => this.background.smembers(SHARDS),
      restore: (root, keyId) => this.restoreLookups(root, keyId),
      reads: this.background,
    });
    this.listEarlier = () =>
      listEarlierKeys(this.background, {
        prefix,
        shards: SHARDS,
        noKeyShard: NO_KEY_SHARD,
        members: membersKey,
        keyHash: keyHashKey,
        toRecord,
      });
    this.alerts = new RedisAlerts({
      redis: this.redis,
      cluster: this.cluster,
      rootOf: (keyId) => this.rootOf(keyId),
      keyHashKey,
      dayKey,
      families: () => this.background.smembers(SHARDS),
      ...(options.alertRelistMs !== undefined ? { relistMs: options.alertRelistMs } : {}),
    });
    this.archive = new RedisArchive(this.background, {
      chain: CHAIN,
      rids: CHAIN_RIDS,
      head: CHAIN_HEAD,
      sealedTrimmed: SEALED_TRIMMED,
      auditList: auditListKey,
      auditTrimmed: auditTrimmedKey,
      sealedSeqs: sealedSeqsKey,
      shardOf: async (keyId) => (keyId === null ? NO_KEY_SHARD : ((await this.rootOf(keyId)) ?? NO_KEY_SHARD)),
      cluster: this.cluster,
    });
    this.expiry = new RedisExpiry(this.background, {
      prefix,
      keyHash: keyHashKey,
      reservations: reservationsKey,
      members: membersKey,
      auditList: auditListKey,
      sealedSeqs: sealedSeqsKey,
      sealedTrimmed: SEALED_TRIMMED,
      alerts: alertsKey,
      unlisted: unlistedKey,
      listIndexes: Object.values(INDEX),
      listStats: STATS,
      listFed: FED,
      shardSets: [SHARDS, DIRTY_SHARDS, ALERT_FAMILIES],
      newest: INDEX.newest,
      removed: (ids) => {
        for (const id of ids) {
          const cached = this.families.get(id);
          if (cached) this.byHash.delete(cached.record.keyHash);
          this.families.delete(id);
        }
      },
    });
    this.reservationTtlMs = options.reservationTtlMs ?? 600_000;
    this.sealLockTtlMs = options.sealLockTtlMs ?? 2000;
    this.retentionMs = options.idempotencyRetentionMs ?? DEFAULT_IDEMPOTENCY_RETENTION_MS;
    const every = (ms: number, task: () => Promise<unknown>): void => {
      const timer = setInterval(() => void task().catch(() => undefined), ms);
      timer.unref();
      this.timers.push(timer);
    };
    every(options.sealIntervalMs ?? 1000, () => this.sealDirtyShards());
    every(options.sweepIntervalMs ?? Math.min(30_000, this.reservationTtlMs / 2), () =>
      this.sweepExpiredReservations(Date.now()),
    );
    // Issue 24: changes whose caller died before listing them; a restarted replica looks soon.
    const relist = (): Promise<number> => this.listing.relistUnlisted(Date.now());
    every(DEFAULT_RELIST_MS, relist);
    const first = setTimeout(() => void relist().catch(() => undefined), RELIST_GRACE_MS);
    first.unref();
    this.timers.push(first);
  }

  createKey(record: VaultKeyRecord): Promise<VaultKeyRecord> {
    return this.run(async () => {
      const parent = record.parentKeyId === null ? undefined : await this.family(record.parentKeyId);
      if (record.parentKeyId !== null && !parent) throw parentMissingError();
      // Regression: issue 16. A family's ancestry never changes, so the depth is exact here; the
      // parent's state, which does change, is checked inside the script, which refuses a parent
      // with no room only once it found it active (the order of `Store.createKey`).
      const roomless = parent !== undefined && !parentHasRoom(parent.chain.length);
      const root = parent?.root ?? record.keyId;
      const expiresAt = parent ? childExpiresAt(record.expiresAt, parent.record.expiresAt) : record.expiresAt;
      const fields: (string | number)[] = [
        'key_id', record.keyId,
        'key_hash', record.keyHash,
        'vendor', record.vendor,
        'daily_cap', record.dailyCapMicros ?? '',
        'cap', record.capMicros ?? '',
        'allowed', JSON.stringify(record.allowedEndpoints),
        'label', record.agentRunLabel ?? '',
        'parent', record.parentKeyId ?? '',
        'root', root,
        'tainted', record.tainted ? '1' : '0',
        'created_at', record.createdAt,
        'expires_at', expiresAt,
        'spent', 0,
        'reserved', 0,
        'unknown', 0,
        'alerts', (record.alertFractions ?? []).map(fractionText).join(','),
      ]; // prettier-ignore
      // Issue 26: only a key with limits has their fields (the reserve script reads them only then).
      const limits = record.limits;
      if (limits?.maxRequestsPerSecond != null) fields.push('max_rps', limits.maxRequestsPerSecond);
      if (limits?.maxRequestsPerMinute != null) fields.push('max_rpm', limits.maxRequestsPerMinute);
      if (limits?.maxConcurrent != null) fields.push('max_conc', limits.maxConcurrent);
      // Issue 25: only a key issued to a workload identity has the field.
      const identity = identityText(record.identity);
      if (identity !== null) fields.push('identity', identity);
      const parentHash =
        record.parentKeyId === null ? keyHashKey(root, record.keyId) : keyHashKey(root, record.parentKeyId);
      // Issue 24: the family is findable before its key exists, so the backstop can find the key's
      // mark whenever the lookups and list entries below are lost. A root key's script never
      // refuses; one that fails leaves an empty family, removed at its expiry like any other.
      await Promise.all([
        this.redis.sadd(SHARDS, root),
        // Issue 23: a family is found by its root's expiry when it is due for removal.
        record.parentKeyId === null ? this.expiry.rootCreated(root, expiresAt) : 0,
      ]);
      const [created, tainted] = await this.redis.kbCreateKey(
        4,
        keyHashKey(root, record.keyId),
        membersKey(root),
        parentHash,
        unlistedKey(root),
        record.parentKeyId === null ? '0' : roomless ? '2' : '1',
        record.createdAt,
        ...fields,
      );
      if (created === 'parent_missing') throw parentMissingError();
      if (created === 'parent_inactive') throw parentInactiveError();
      if (created === 'parent_roomless') throw keyDepthExceededError();
      if (created !== 'ok')
        throw new StoreUnavailableError(new Error(`unexpected answer of the create script: ${created}`));
      // Indexes after the family data, so a lookup never finds a key that is not there.
      await Promise.all([
        this.redis.set(`h:${record.keyHash}`, `${record.keyId} ${root}`),
        this.redis.set(`root:${record.keyId}`, root),
      ]);
      const stored = { ...record, expiresAt, tainted: tainted === '1' };
      await this.listing.keyCreated(root, stored);
      return stored;
    });
  }

  findKeyByHash(keyHash: string): Promise<VaultKeyRecord | undefined> {
    return this.run(async () => {
      let keyId = this.byHash.get(keyHash);
      if (keyId === undefined) {
        const entry = await this.redis.get(`h:${keyHash}`);
        if (entry === null) return undefined;
        keyId = entry.split(' ')[0] as string;
        remember(this.byHash, keyHash, keyId);
      }
      return (await this.family(keyId))?.record;
    });
  }

  getKey(keyId: string, now: number): Promise<VaultKeyState | undefined> {
    return this.run(async () => {
      const root = await this.rootOf(keyId);
      if (root === undefined) return undefined;
      const [fields, today, flight] = await Promise.all([
        this.redis.hgetall(keyHashKey(root, keyId)),
        this.redis.hmget(dayKey(root, keyId, utcDay(now)), 'spent', 'reserved'),
        // Issue 26: the calls in flight, as the reserve script counts them (see `lua/reserve.ts`).
        this.redis.zrangebyscore(flightKey(root, keyId), `(${now}`, '+inf'),
      ]);
      if (!fields.key_id) return undefined;
      return {
        ...toRecord(fields),
        spentMicros: Number(fields.spent ?? 0),
        reservedMicros: Number(fields.reserved ?? 0),
        unknownMicros: Number(fields.unknown ?? 0),
        spentTodayMicros: Number(today[0] ?? 0),
        reservedTodayMicros: Number(today[1] ?? 0),
        inFlight:
          flight.length === 0
            ? 0
            : (await this.redis.hmget(reservationsKey(root), ...flight)).filter((entry) => entry !== null).length,
      };
    });
  }

  revokeKey(keyId: string, now: number): Promise<boolean> {
    return this.markSubtree(keyId, 'revoked_at', String(now));
  }

  taintKey(keyId: string): Promise<boolean> {
    return this.markSubtree(keyId, 'tainted', '1');
  }

  reserve(input: ReserveInput): Promise<ReserveOutput> {
    return this.run(async () => {
      // Steps 1 and 2 of `Store.reserve` here, on the cached immutable ancestry; 3 to 6 in the script.
      const family = await this.family(input.keyId);
      if (!family) return { kind: 'refused', code: 'invalid_vault_key' };
      const { root, chain, limited, concurrent } = family;
      // Regression: issue 16. Only a chain written before the depth limit can be longer; its
      // furthest caps would go unchecked, so it cannot be used at all.
      if (chain.length > MAX_CHAIN_LENGTH) return { kind: 'refused', code: 'key_depth_exceeded' };
      const day = utcDay(input.now);
      const idem = input.idempotency;
      const deadline = input.now + this.reservationTtlMs;
      const reservation: ReservationEntry = {
        amount: input.costMicros,
        day,
        chain,
        idem: idem !== null,
        idem_key: idem?.key ?? null,
        deadline,
        pending: input.pending,
        ...(concurrent.length > 0 ? { conc: concurrent } : {}),
      };
      const keys = [
        reservationsKey(root),
        idem ? idempotencyKey(root, input.keyId, idem.key) : reservationsKey(root),
        ...chain.flatMap((id) => [keyHashKey(root, id), dayKey(root, id, day)]),
        ...(limited ? chain.map((id) => flightKey(root, id)) : []),
      ];
      const result = await this.redis.kbReserve(
        keys.length,
        ...keys,
        input.reservationId,
        input.costMicros,
        input.now,
        chain.length,
        idem ? '1' : '0',
        idem?.fingerprint ?? '',
        input.sensitive ? '1' : '0',
        JSON.stringify(reservation),
        this.reservationTtlMs,
        DAY_TTL_MS,
        limited ? '1' : '0',
        deadline,
      );
      switch (result[0]) {
        case 'reserved': {
          this.pending.set(input.reservationId, {
            root,
            chain,
            day,
            idempotencyKey: idem?.key ?? null,
            ...(concurrent.length > 0 ? { conc: concurrent } : {}),
          });
          const [, tainted, remaining, requests, inFlightRoom] = result;
          const room = {
            remainingMicros: Number(remaining ?? 0),
            requests: requests ? Number(requests) : null,
            concurrent: inFlightRoom ? Number(inFlightRoom) : null,
          };
          return { kind: 'reserved', tainted: tainted === '1', room };
        }
        case 'replay':
          return { kind: 'replay', response: JSON.parse(result[1] as string) as StoredResponse };
        default:
          // Issue 26: a cap hit fires its alert; a failure to record it never changes the refusal.
          if (result[1] === 'cap_exhausted' && result[2]) {
            await this.alerts.capHit(root, result[2], input.costMicros, day).catch(() => undefined);
          }
          return {
            kind: 'refused',
            code: result[1] as Extract<ReserveOutput, { kind: 'refused' }>['code'],
            ...(result[2] ? { capKeyId: result[2] } : {}),
            ...(result[3] !== undefined ? { retryAfterS: Number(result[3]) } : {}),
          };
      }
    });
  }

  settle(input: SettleInput): Promise<boolean> {
    return this.run(async () => {
      const reservation = this.pending.get(input.reservationId);
      const family = reservation ?? (await this.unknownReservation(input.keyId));
      const length = await this.settleScript(
        input.reservationId,
        family,
        String(input.actualMicros),
        input.audit.outcome === 'unknown',
        input.idempotentResponse === null ? '' : JSON.stringify(input.idempotentResponse),
        JSON.stringify({ ...input.audit, rid: randomUUID() }),
        0,
        input.objects,
      );
      // Kept until the script ran, so a settlement retried after a store failure settles the same keys.
      this.pending.delete(input.reservationId);
      if (length < 0) return false;
      this.markDirtyOnCluster(family.root);
      return true;
    });
  }

  appendAudit(input: AuditInput): Promise<void> {
    return this.run(async () => {
      const shard = input.keyId === null ? NO_KEY_SHARD : ((await this.rootOf(input.keyId)) ?? NO_KEY_SHARD);
      // Listed before its first record lands, so a full seal (and verify's check) never misses a shard.
      if (shard === NO_KEY_SHARD) await this.redis.sadd(SHARDS, shard);
      const appending = this.redis.rpush(auditListKey(shard), JSON.stringify({ ...input, rid: randomUUID() }));
      // One Redis: the mark goes in the same pipeline, behind the record on the one connection.
      if (!this.cluster) void this.redis.sadd(DIRTY_SHARDS, shard).catch(() => undefined);
      await appending;
      this.markDirtyOnCluster(shard);
    });
  }

  listCalls(keyId: string): Promise<AuditRecordJson[]> {
    return this.run(async () => {
      const root = await this.rootOf(keyId);
      if (root === undefined) return [];
      await this.seal([root]);
      // Seqs first: every record they count was written before them. On one Redis the archive's
      // trim moves both lists' heads together (issue 23): both are read in one transaction.
      const [seqs, records] = await this.familyAudit(root);
      const calls: AuditRecordJson[] = [];
      records.forEach((raw, i) => {
        const record = JSON.parse(raw) as FamilyAuditRecord;
        if (record.keyId === keyId) calls.push(auditRecordJson(Number(seqs[i]), record));
      });
      return calls;
    });
  }

  /**
   * A family's sealed seqs and its records at the same positions. Issue 23: the archive's trim
   * removes both lists' heads, counting what it removed of each; on one Redis in one script, on
   * Cluster the family's list after its seqs. Positions are matched counted from the first record
   * ever, so records trimmed from one list and not yet from the other are left out (archived).
   */
  private async familyAudit(root: string): Promise<[string[], string[]]> {
    const exec = async (multi: ReturnType<Client['multi']>): Promise<unknown[]> =>
      ((await multi.exec()) ?? []).map(([error, value]) => {
        if (error) throw error;
        return value;
      });
    // Seqs first: every record they count was written before them.
    const read = this.cluster
      ? [
          ...(await exec(this.redis.multi().hget(SEALED_TRIMMED, root).lrange(sealedSeqsKey(root), 0, -1))),
          ...(await exec(this.redis.multi().get(auditTrimmedKey(root)).lrange(auditListKey(root), 0, -1))),
        ]
      : await exec(
          (this.redis as Redis)
            .multi()
            .hget(SEALED_TRIMMED, root)
            .lrange(sealedSeqsKey(root), 0, -1)
            .get(auditTrimmedKey(root))
            .lrange(auditListKey(root), 0, -1),
        );
    const [seqsFrom, seqs, recordsFrom, records] = read as [string | null, string[], string | null, string[]];
    const seqsBase = Number(seqsFrom ?? 0);
    const recordsBase = Number(recordsFrom ?? 0);
    const from = Math.max(seqsBase, recordsBase);
    const to = Math.min(seqsBase + seqs.length, recordsBase + records.length);
    const pairedSeqs: string[] = [];
    const pairedRecords: string[] = [];
    for (let position = from; position < to; position += 1) {
      pairedSeqs.push(seqs[position - seqsBase] as string);
      pairedRecords.push(records[position - recordsBase] as string);
    }
    return [pairedSeqs, pairedRecords];
  }

  listCallsPage(keyId: string, afterSeq: number, limit: number): Promise<AuditRecordJson[]> {
    // The family's records are one list in the family's slot: a page reads it whole (as `calls`).
    return this.run(async () => (await this.listCalls(keyId)).filter((call) => call.seq > afterSeq).slice(0, limit));
  }

  /** Once per process (again after a failure): see `redis-upgrade.ts`. */
  private earlierKeysListed(): Promise<number> {
    this.earlierListed ??= this.listEarlier().catch((error: unknown) => {
      this.earlierListed = null;
      throw error;
    });
    return this.earlierListed;
  }

  listKeys(query: KeyListQuery): Promise<KeyListPage> {
    return this.run(async () => {
      await this.earlierKeysListed();
      this.digestRun ??= catchUpDigest(this.listing, this, query.now).finally(() => {
        this.digestRun = null;
      });
      await this.digestRun;
      return listKeyPage(this.listing, this, query);
    });
  }

  readKeyChanges(position: string | null, limit: number): Promise<KeyChangesRead> {
    return this.run(() => this.listing.readKeyChanges(position, limit));
  }

  readAudit(afterSeq: number, limit: number): Promise<AuditEntry[]> {
    return this.run(async () => {
      if (limit <= 0) return [];
      // Issue 23: the chain's index 0 is the first live record, past those archived and trimmed.
      const raws = await this.archive.readChain(afterSeq, limit);
      return raws.map((raw, i) => {
        try {
          const entry = JSON.parse(raw) as { seq: number; record: string; prev: string; hash: string };
          return { seq: entry.seq, record: entry.record, prevHash: entry.prev, hash: entry.hash };
        } catch {
          // An unreadable entry: verification names it.
          return { seq: afterSeq + i + 1, record: '', prevHash: '', hash: '' };
        }
      });
    });
  }

  auditHead(): Promise<AuditHead> {
    // The shards marked dirty: what the periodic sealer would seal next.
    return this.run(async () => this.sealedHead(undefined));
  }

  completeAuditHead(): Promise<AuditHead> {
    // Every shard, not only those marked dirty: a mark can be lost (it is set after the record
    // lands, by a separate command), a record cannot.
    return this.run(async () => this.sealedHead(await this.redis.smembers(SHARDS)));
  }

  chainedAuditHead(): Promise<AuditHead> {
    return this.run(async () => {
      const [seq, hash] = await this.background.hmget(CHAIN_HEAD, 'seq', 'hash');
      return { records: Number(seq ?? 0), head: hash || GENESIS_HASH };
    });
  }

  private async sealedHead(shards: readonly string[] | undefined): Promise<AuditHead> {
    await this.seal(shards);
    const [seq, hash] = await this.redis.hmget(CHAIN_HEAD, 'seq', 'hash');
    return { records: Number(seq ?? 0), head: hash || GENESIS_HASH };
  }

  auditMissing(): Promise<number> {
    return this.run(async () => {
      const shards = await this.redis.smembers(SHARDS);
      const written = await this.shardLengths(shards, auditListKey);
      await this.seal(shards);
      // Each record's id against the chain's index, not the shard's own count of sealed records:
      // that count is what went wrong once, and a check must not trust what it checks.
      let missing = 0;
      for (const [i, shard] of shards.entries()) {
        for (let from = 0; from < (written[i] as number); from += SEAL_BATCH) {
          const raws = await this.redis.lrange(
            auditListKey(shard),
            from,
            Math.min(from + SEAL_BATCH, written[i] as number) - 1,
          );
          const rids = raws.map((raw) => {
            try {
              return String((JSON.parse(raw) as FamilyAuditRecord).rid);
            } catch {
              return '';
            }
          });
          // Trimmed meanwhile (issue 23: the archive's trim shortens the lists): nothing left to count.
          if (rids.length === 0) break;
          const known = await this.redis.hmget(CHAIN_RIDS, ...rids);
          const unknown = rids.filter((_, j) => known[j] === null);
          if (unknown.length === 0) continue;
          // A record the archive's trim removed after it was read here is archived, not missing: only
          // one still in its list, past the records trimmed from its seqs list, is counted (on
          // Cluster the chain index and the seqs list are trimmed before the family's list: issue 23).
          const [listedFrom, listedRaws] = (
            (await this.redis.multi().get(auditTrimmedKey(shard)).lrange(auditListKey(shard), 0, -1).exec()) ?? []
          ).map(([error, value]) => {
            if (error) throw error;
            return value;
          }) as [string | null, string[]];
          const positions = new Map<string, number>();
          listedRaws.forEach((raw, j) => {
            try {
              positions.set(String((JSON.parse(raw) as FamilyAuditRecord).rid), Number(listedFrom ?? 0) + j);
            } catch {
              // An unreadable record has no id to check.
            }
          });
          const again = await this.redis.hmget(CHAIN_RIDS, ...unknown);
          const archivedBelow = Number((await this.redis.hget(SEALED_TRIMMED, shard)) ?? 0);
          const listed = new Set(
            [...positions].filter(([, position]) => position >= archivedBelow).map(([rid]) => rid),
          );
          missing += unknown.filter((rid, j) => again[j] === null && listed.has(rid)).length;
        }
      }
      return missing;
    });
  }

  addCheckpoint(checkpoint: AuditCheckpoint): Promise<void> {
    return this.run(async () => {
      await this.redis.hsetnx(CHECKPOINTS, String(checkpoint.records), JSON.stringify(checkpoint));
    });
  }

  listCheckpoints(): Promise<AuditCheckpoint[]> {
    return this.run(async () =>
      Object.values(await this.redis.hgetall(CHECKPOINTS))
        .map((raw) => JSON.parse(raw) as AuditCheckpoint)
        .sort((a, b) => a.records - b.records),
    );
  }

  archiveState(): Promise<ArchiveState> {
    return this.run(() => this.archive.archiveState());
  }

  acquireArchiveLease(input: ArchiveLeaseInput): Promise<boolean> {
    return this.run(() => this.archive.acquireLease(input));
  }

  releaseArchiveLease(holder: string): Promise<void> {
    return this.run(() => this.archive.releaseLease(holder));
  }

  recordArchivedSegment(input: ArchivedSegmentInput): Promise<boolean> {
    return this.run(() => this.archive.recordSegment(input));
  }

  trimArchivedAudit(holder: string, limit: number): Promise<number> {
    return this.run(() => this.archive.trim(holder, limit));
  }

  purgeExpired(input: ExpiryPurgeInput): Promise<ExpiryPurgeOutput> {
    // Kept idempotent responses expire by their own TTL (`retentionMs`): none to count here.
    return this.run(async () => {
      // The expiry index of a store written before it is built from the key list's.
      await this.earlierKeysListed();
      return this.expiry.purge(input);
    });
  }

  ping(): Promise<void> {
    // Both connections: `calls` and `verify` seal on the background one first.
    return this.run(async () => {
      await Promise.all([this.redis.ping(), this.background === this.redis ? undefined : this.background.ping()]);
    });
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    const clients = this.background === this.redis ? [this.redis] : [this.redis, this.background];
    await Promise.all(
      clients.map(async (client) => {
        try {
          await client.quit();
        } catch {
          client.disconnect();
        }
      }),
    );
  }

  /**
   * Turns reservations whose deadline has passed (their replica died mid-call) into spend of
   * unknown outcome, with an audit record each. Safe to run on every replica at once: the
   * settle script acts only on a reservation that is still there and past its deadline.
   * @returns how many reservations were swept.
   */
  async sweepExpiredReservations(now: number): Promise<number> {
    let swept = 0;
    for (const root of await this.background.smembers(SHARDS)) {
      if (root === NO_KEY_SHARD) continue;
      const reservations = await this.background.hgetall(reservationsKey(root));
      for (const [reservationId, raw] of Object.entries(reservations)) {
        const reservation = JSON.parse(raw) as ReservationEntry;
        if (reservation.deadline > now) continue;
        // The record id is the reservation's: replicas sweeping at once build the same record,
        // and the script lets only one of them land.
        const record = interruptedAuditInput(reservation.pending, new Date(now).toISOString(), reservation.amount);
        const length = await this.settleScript(
          reservationId,
          {
            root,
            chain: reservation.chain,
            day: reservation.day,
            idempotencyKey: reservation.idem_key,
            ...(reservation.conc ? { conc: reservation.conc } : {}),
          },
          '',
          true,
          '',
          JSON.stringify({ ...record, rid: reservationId } satisfies FamilyAuditRecord),
          now,
          [],
          this.background,
        );
        if (length >= 0) {
          swept += 1;
          if (this.cluster) await this.background.sadd(DIRTY_SHARDS, root);
        }
      }
    }
    return swept;
  }

  private async settleScript(
    reservationId: string,
    reservation: PendingReservation,
    actual: string,
    unknown: boolean,
    response: string,
    record: string,
    sweepNow: number,
    objects: readonly SettledObject[] = [],
    client: Client = this.redis,
  ): Promise<number> {
    const { root, chain, day } = reservation;
    const objectTtlMs = objects.length > 0 ? await this.objectTtlMs(root, Date.now()) : OBJECT_TTL_MS;
    const keys = [
      reservationsKey(root),
      reservation.idempotencyKey === null
        ? reservationsKey(root)
        : idempotencyKey(root, chain[0] as string, reservation.idempotencyKey),
      auditListKey(root),
      ...chain.flatMap((id) => [keyHashKey(root, id), dayKey(root, id, day)]),
      ...(this.cluster ? [] : [DIRTY_SHARDS]),
      ...(reservation.conc ?? []).map((position) => flightKey(root, chain[position - 1] as string)),
      ...objects.map((object) => objectKey(root, object.objectId)),
    ];
    const [length, fired] = await client.kbSettle(
      keys.length,
      ...keys,
      reservationId,
      actual,
      unknown ? '1' : '0',
      response,
      this.retentionMs,
      record,
      sweepNow,
      chain.length,
      this.cluster ? '' : root,
      objects.length,
      objectTtlMs,
      ...objects.flatMap(({ state }) => [state.amount, state.currency, state.bookedMicros]),
    );
    await this.alerts.settled(root, fired).catch(() => undefined);
    return length;
  }

  keyAlerts(keyId: string): Promise<KeyAlerts> {
    return this.run(() => this.alerts.keyAlerts(keyId));
  }

  claimAlerts(input: AlertClaimInput): Promise<AlertClaimOutput> {
    return this.run(() => this.alerts.claim(input));
  }

  finishAlert(input: AlertFinishInput): Promise<void> {
    return this.run(() => this.alerts.finish(input));
  }

  /**
   * Marks a shard for the sealer after its record landed, on Redis Cluster (on one Redis the
   * settle script marks it). Not awaited: a lost mark delays sealing, never loses a record
   * (`completeAuditHead` seals every shard).
   */
  private markDirtyOnCluster(root: string): void {
    if (this.cluster) void this.redis.sadd(DIRTY_SHARDS, root).catch(() => undefined);
  }

  private markSubtree(keyId: string, field: string, value: string): Promise<boolean> {
    return this.run(async () => {
      const root = await this.rootOf(keyId);
      if (root === undefined) return false;
      // Member names come back with the prefix ioredis adds; the script gets them re-prefixed.
      const prefix = this.prefix();
      const change = field === 'revoked_at' ? 'revoked' : 'tainted';
      const at = field === 'revoked_at' ? Number(value) : Date.now();
      // The script refuses a stale member list (a child created meanwhile); each retry reads the
      // set again, and only keys being created in that very instant can make it stale again.
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const members = await this.redis.smembers(membersKey(root));
        const keys = members.map((member) => (member.startsWith(prefix) ? member.slice(prefix.length) : member));
        const unmarked = await this.unmarkedSubtree(keys, keyId, field);
        const marked = await this.redis.kbMarkSubtree(
          keys.length + 1,
          membersKey(root),
          ...keys,
          keyId,
          field,
          value,
          at,
        );
        if (marked === 1) await this.listing.subtreeChanged(root, unmarked, change, at);
        if (marked >= 0) return marked === 1;
      }
      throw new StoreUnavailableError(new Error('the key family kept changing while it was being marked'));
    });
  }

  /**
   * Issue 24, the backstop's part: a key whose family script ran but whose caller may have died
   * before its lookups were written gets them now (the same values its caller writes).
   */
  private async restoreLookups(root: string, keyId: string): Promise<VaultKeyRecord | undefined> {
    const fields = await this.background.hgetall(keyHashKey(root, keyId));
    if (!fields.key_id) return undefined;
    const record = toRecord(fields);
    await Promise.all([
      this.redis.set(`h:${record.keyHash}`, `${record.keyId} ${root}`),
      this.redis.set(`root:${record.keyId}`, root),
    ]);
    return record;
  }

  /** The keys of `keyId`'s subtree (among the family's member hashes) whose `field` is not set yet. */
  private async unmarkedSubtree(memberKeys: readonly string[], keyId: string, field: string): Promise<string[]> {
    const rows = await Promise.all(memberKeys.map((key) => this.redis.hmget(key, 'key_id', 'parent', field)));
    const children = new Map<string, string[]>();
    const unset = new Set<string>();
    for (const [id, parent, flag] of rows) {
      if (!id) continue;
      children.set(parent ?? '', [...(children.get(parent ?? '') ?? []), id]);
      if (!flag || flag === '0' || flag === '') unset.add(id);
    }
    const subtree: string[] = [];
    const queue = [keyId];
    const seen = new Set(queue);
    while (queue.length > 0) {
      const id = queue.shift() as string;
      if (unset.has(id)) subtree.push(id);
      for (const child of children.get(id) ?? []) if (!seen.has(child) && (seen.add(child), true)) queue.push(child);
    }
    return subtree;
  }

  private prefix(): string {
    return (this.redis.options as { keyPrefix?: string }).keyPrefix ?? '';
  }

  private async rootOf(keyId: string): Promise<string | undefined> {
    const cached = this.families.get(keyId);
    if (cached) return cached.root;
    return (await this.redis.get(`root:${keyId}`)) ?? undefined;
  }

  /** The key's immutable record, family root and ancestry, from the cache or read once. */
  private async family(keyId: string): Promise<FamilyEntry | undefined> {
    const cached = this.families.get(keyId);
    if (cached) return cached;
    const root = await this.rootOf(keyId);
    if (root === undefined) return undefined;
    const fields = await this.redis.hgetall(keyHashKey(root, keyId));
    if (!fields.key_id) return undefined;
    const record = toRecord(fields);
    const parent = record.parentKeyId === null ? undefined : await this.family(record.parentKeyId);
    // One key beyond the permitted chain is enough to tell that a chain is too long.
    const chain = [keyId, ...(parent?.chain ?? [])].slice(0, ANCESTRY_WALK_LIMIT);
    const concurrent = [
      ...(record.limits?.maxConcurrent != null ? [1] : []),
      ...(parent?.concurrent ?? []).map((position) => position + 1),
    ].filter((position) => position <= chain.length);
    const limited = hasLimits(record.limits) || (parent?.limited ?? false);
    const entry: FamilyEntry = { record, root, chain, limited, concurrent };
    remember(this.families, keyId, entry);
    return entry;
  }

  /**
   * The family whose objects a key's call tracks. Regression: issue 20: an unknown key failed
   * here as a 503 (store unavailable) while the embedded store made it a family of its own; both
   * refuse it as `invalid_vault_key` now.
   */
  /**
   * How long a family's tracked object is kept: until every key that could call on it has expired,
   * which is the root's expiry (a child never outlives its parent), plus `OBJECT_TTL_MARGIN_MS`;
   * `OBJECT_TTL_MS` at most. Regression: issue 23: every object was kept 8 days whatever its keys'
   * lifetime, so 550 charges a second on 1-hour keys held 8 days of objects (225 bytes each, the
   * soak's whole memory growth) where one hour's would do.
   */
  private async objectTtlMs(root: string, now: number): Promise<number> {
    const expiresAt = (await this.family(root))?.record.expiresAt ?? now + OBJECT_TTL_MS;
    return Math.min(OBJECT_TTL_MS, Math.max(0, expiresAt - now) + OBJECT_TTL_MARGIN_MS);
  }

  private async objectFamily(keyId: string): Promise<string> {
    const family = await this.family(keyId);
    if (!family) throw new InvalidVaultKeyError(true);
    return family.root;
  }

  /**
   * What settle knows of a reservation this replica did not make (or forgot): the key's family,
   * with the in-flight positions its reservation was made with (the same family entry's).
   */
  private async unknownReservation(keyId: string): Promise<PendingReservation> {
    const { root, chain, concurrent } = await this.familyOrThrow(keyId);
    return { root, chain, day: '', idempotencyKey: null, ...(concurrent.length > 0 ? { conc: concurrent } : {}) };
  }

  private async familyOrThrow(keyId: string): Promise<FamilyEntry> {
    const family = await this.family(keyId);
    if (!family) throw new StoreUnavailableError(new Error(`key ${keyId} vanished from the store`));
    return family;
  }

  private sealDirtyShards(): Promise<void> {
    if (this.periodicSealQueued) return Promise.resolve();
    this.periodicSealQueued = true;
    return this.seal(undefined).finally(() => {
      this.periodicSealQueued = false;
    });
  }

  /**
   * Seals the unsealed records of the given shards (`undefined`: the shards marked dirty, read
   * when the seal starts) into the global chain, under the sealer lock. One seal at a time per
   * replica; across replicas the lock, and the fencing inside the sealing script, keep them apart.
   */
  private seal(shards: readonly string[] | undefined): Promise<void> {
    const run = this.sealQueue
      .catch(() => undefined)
      .then(async () => this.sealNow(shards ?? (await this.background.smembers(DIRTY_SHARDS))));
    this.sealQueue = run;
    return run;
  }

  private async sealNow(shards: readonly string[]): Promise<void> {
    if (shards.length === 0) return;
    // A lock that expires mid-seal (an event loop stalled past its TTL) costs a retry, never a
    // record: the batch that finds the lock gone writes nothing, and the next one starts where
    // the chain and the bookkeeping, which always move together, say.
    const deadline = Date.now() + Math.max(10 * this.sealLockTtlMs, 1000);
    let pending: readonly string[] = shards;
    for (;;) {
      const token = await this.acquireSealLock(deadline);
      try {
        pending = await this.sealShards(pending, token);
      } finally {
        await this.background.kbReleaseLock(SEAL_LOCK, token).catch(() => undefined);
      }
      if (pending.length === 0) return;
      if (Date.now() > deadline) {
        await this.background.sadd(DIRTY_SHARDS, ...pending).catch(() => undefined);
        throw new StoreUnavailableError(new Error('audit sealer lock lost before every record was sealed'));
      }
    }
  }

  /**
   * The lock outlives a sealer that died holding it (a replica killed, Redis restarted from its
   * AOF) by at most its TTL, and waiters wait longer than that; a live sealer renews it with every
   * batch it lands.
   */
  private async acquireSealLock(deadline: number): Promise<string> {
    const token = randomUUID();
    while ((await this.background.set(SEAL_LOCK, token, 'PX', this.sealLockTtlMs, 'NX')) !== 'OK') {
      if (Date.now() > deadline) throw new StoreUnavailableError(new Error('audit sealer lock not acquired'));
      await new Promise((resolve) => setTimeout(resolve, Math.min(10, this.sealLockTtlMs)));
    }
    return token;
  }

  /** Seals what it can of the shards under the lock `token`; returns the shards left when the lock was lost. */
  private async sealShards(shards: readonly string[], token: string): Promise<readonly string[]> {
    for (let from = 0; from < shards.length; from += SHARD_CHUNK) {
      const chunk = shards.slice(from, from + SHARD_CHUNK);
      // Unmarked before reading: a record written after this is marked again by its writer.
      await this.background.srem(DIRTY_SHARDS, ...chunk);
      // Counted from each shard's first record ever: the archive's trim leaves these counts as they are.
      const [sealed, written] = await Promise.all([this.sealedCounts(chunk), this.writtenCounts(chunk)]);
      for (const [i, shard] of chunk.entries()) {
        if ((written[i] as number) <= (sealed[i] as number)) continue;
        let done: boolean;
        try {
          done = await this.sealShard(shard, token, sealed[i] as number, written[i] as number);
        } catch (error) {
          await this.background.sadd(DIRTY_SHARDS, ...chunk.slice(i)).catch(() => undefined);
          throw error;
        }
        if (!done) {
          await this.background.sadd(DIRTY_SHARDS, ...chunk.slice(i));
          return [...chunk.slice(i), ...shards.slice(from + SHARD_CHUNK)];
        }
      }
    }
    return [];
  }

  /**
   * Appends a shard's records from position `sealed` up to `written` (its length when this seal
   * started), a batch per script. Records the chain already has (sealed by a version that kept the
   * shard's bookkeeping in the shard's own slot) are recognised by their record id and only
   * recorded for the shard.
   *
   * Regression: issue 21. A seal used to read on until the shard's list was empty; under steady
   * traffic each batch found the one or two records written meanwhile, so the sealer ran
   * back-to-back (four commands and an AOF fsync for every record or two, on the connection the
   * hot path shares) instead of once per interval. Records written after the seal started are
   * marked dirty again by their writers and sealed by the next one.
   * @returns false when the lock was lost (the batch then wrote nothing).
   */
  private async sealShard(shard: string, token: string, sealed: number, written: number): Promise<boolean> {
    while (sealed < written) {
      const raws = await this.familyRecords(shard, sealed, Math.min(SEAL_BATCH, written - sealed));
      if (raws.length === 0) return true;
      const records = raws.map((raw) => JSON.parse(raw) as FamilyAuditRecord);
      const [head, known] = await Promise.all([
        this.background.hmget(CHAIN_HEAD, 'seq', 'hash'),
        this.background.hmget(CHAIN_RIDS, ...records.map((record) => record.rid)),
      ]);
      const expectedSeq = Number(head[0] ?? 0);
      const expectedHash = head[1] ?? '';
      let seq = expectedSeq;
      let hash = expectedHash;
      const quadruples: (string | number)[] = [];
      records.forEach((record, i) => {
        const existing = known[i];
        if (existing !== null && existing !== undefined) {
          quadruples.push(record.rid, existing, '', '');
          return;
        }
        seq += 1;
        const prev = hash === '' ? GENESIS_HASH : hash;
        const entry = chainEntry(prev, auditRecordJson(seq, record));
        hash = entry.hash;
        quadruples.push(
          record.rid,
          seq,
          JSON.stringify({ seq, rid: record.rid, record: entry.text, prev, hash }),
          hash,
        );
      });
      const appended = await this.background.kbSealAppend(
        CHAIN_HEAD,
        CHAIN,
        CHAIN_RIDS,
        SEAL_LOCK,
        sealedSeqsKey(shard),
        SEALED_TRIMMED,
        token,
        this.sealLockTtlMs,
        expectedSeq,
        expectedHash,
        sealed,
        shard,
        ...quadruples,
      );
      if (appended === -1) return false;
      // Under our lock nobody else seals: the chain was changed by a writer that takes no lock.
      if (appended < 0)
        throw new StoreUnavailableError(new Error(`audit chain changed under the sealer lock (${appended})`));
      sealed += records.length;
    }
    return true;
  }

  /** Each shard's records sealed, counted from its first ever (those trimmed by the archive too). */
  private async sealedCounts(shards: readonly string[]): Promise<number[]> {
    return Promise.all(
      shards.map(async (shard) =>
        Number(await this.background.kbSealedCount(sealedSeqsKey(shard), SEALED_TRIMMED, shard)),
      ),
    );
  }

  /** Each shard's records written, counted from its first ever (those trimmed by the archive too). */
  private async writtenCounts(shards: readonly string[]): Promise<number[]> {
    return Promise.all(
      shards.map(async (shard) => {
        const [trimmed, length] = await this.familyRead(
          this.background.multi().get(auditTrimmedKey(shard)).llen(auditListKey(shard)),
        );
        this.familyTrimmed.set(shard, Number(trimmed ?? 0));
        return Number(trimmed ?? 0) + Number(length);
      }),
    );
  }

  /**
   * A family's records from `position` (counted from its first record ever), at most `count`. Read
   * in one transaction with the count the archive's trim removed from the list's head, checked
   * against the count the read assumed (a plain transaction, not a script: a family's slot sees
   * only the hot path's scripts, issue 21). The trim removes only sealed records: never these.
   */
  private async familyRecords(shard: string, position: number, count: number): Promise<string[]> {
    let assumed = this.familyTrimmed.get(shard) ?? Number((await this.background.get(auditTrimmedKey(shard))) ?? 0);
    for (;;) {
      const [trimmed, raws] = await this.familyRead(
        this.background
          .multi()
          .get(auditTrimmedKey(shard))
          .lrange(auditListKey(shard), position - assumed, position - assumed + count - 1),
      );
      const now = Number(trimmed ?? 0);
      this.familyTrimmed.set(shard, now);
      if (now === assumed) return raws as string[];
      if (now > position)
        throw new StoreUnavailableError(
          new Error(`audit record ${position} of ${shard} was trimmed before it was sealed`),
        );
      assumed = now;
    }
  }

  private async familyRead(multi: ReturnType<Client['multi']>): Promise<unknown[]> {
    return ((await multi.exec()) ?? []).map(([error, value]) => {
      if (error) throw error;
      return value;
    });
  }

  /** `LLEN` of one list per shard, a chunk of shards at a time. */
  private async shardLengths(shards: readonly string[], key: (shard: string) => string): Promise<number[]> {
    const lengths: number[] = [];
    for (let from = 0; from < shards.length; from += SHARD_CHUNK) {
      lengths.push(
        ...(await Promise.all(shards.slice(from, from + SHARD_CHUNK).map((shard) => this.background.llen(key(shard))))),
      );
    }
    return lengths;
  }

  /** Runs a store operation, its failure typed as every store types it (`toStoreError`). */
  private async run<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw toStoreError(error);
    }
  }

  claimObject(input: ObjectClaimInput): Promise<ObjectClaimOutput> {
    return this.run(async () => {
      const root = await this.objectFamily(input.keyId);
      const result = await this.redis.kbClaimObject(
        objectKey(root, input.objectId),
        input.claimId,
        input.now,
        input.until,
        await this.objectTtlMs(root, input.now),
      );
      if (result[0] === 'busy') return { kind: 'busy' };
      const [, amount, currency, booked] = result;
      return {
        kind: 'claimed',
        state: amount && currency ? { amount: Number(amount), currency, bookedMicros: Number(booked ?? 0) } : null,
      };
    });
  }

  releaseObject(input: ObjectReleaseInput): Promise<void> {
    return this.run(async () => {
      const root = await this.objectFamily(input.keyId);
      const { state } = input;
      await this.redis.kbReleaseObject(
        objectKey(root, input.objectId),
        input.claimId,
        ...(state === undefined
          ? ['keep']
          : state === null
            ? ['forget']
            : ['set', state.amount, state.currency, state.bookedMicros]),
      );
    });
  }

  recordObject(input: ObjectRecordInput): Promise<void> {
    return this.run(async () => {
      const root = await this.objectFamily(input.keyId);
      await this.redis.kbRecordObject(
        objectKey(root, input.objectId),
        input.state.amount,
        input.state.currency,
        input.state.bookedMicros,
        await this.objectTtlMs(root, Date.now()),
      );
    });
  }
}

/** A tracked vendor object of a family (issue 17). */
const objectKey = (root: string, objectId: string): string => `${tag(root)}:obj:${objectId}`;
/** Keys live at most 7 days: an object's state outlives every key of its family. */
const OBJECT_TTL_MS = 8 * 24 * 3600 * 1000;
/**
 * Past the root's expiry an object is kept this much longer, though no key of its family can call
 * on it any more: for clocks that differ between replicas. A settlement that lands late (a call in
 * flight at expiry, settled by its replica or the sweeper within `KEYBRAKE_RESERVATION_TTL_MS`; one
 * held while the store was down) sets the TTL from its own time, so it too keeps this margin.
 */
const OBJECT_TTL_MARGIN_MS = 3600 * 1000;

/** Keeps a bounded cache: the oldest entry goes when the limit is reached. */
function remember<V>(cache: Map<string, V>, key: string, value: V): void {
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(key, value);
}

function toRecord(fields: Record<string, string>): VaultKeyRecord {
  const optionalNumber = (value: string | undefined): number | null =>
    value === undefined || value === '' ? null : Number(value);
  return {
    keyId: fields.key_id as string,
    keyHash: fields.key_hash as string,
    vendor: fields.vendor as string,
    dailyCapMicros: optionalNumber(fields.daily_cap),
    capMicros: optionalNumber(fields.cap),
    allowedEndpoints: JSON.parse(fields.allowed ?? '[]') as string[],
    agentRunLabel: fields.label ? fields.label : null,
    parentKeyId: fields.parent ? fields.parent : null,
    tainted: fields.tainted === '1',
    createdAt: Number(fields.created_at),
    expiresAt: Number(fields.expires_at),
    revokedAt: optionalNumber(fields.revoked_at),
    limits:
      fields.max_rps || fields.max_rpm || fields.max_conc
        ? {
            maxRequestsPerSecond: optionalNumber(fields.max_rps),
            maxRequestsPerMinute: optionalNumber(fields.max_rpm),
            maxConcurrent: optionalNumber(fields.max_conc),
          }
        : null,
    identity: identityOfText(fields.identity),
  };
}

/** Registers every script of the store on a client, and keeps its connection errors as events. */
function defineScripts(redis: Redis | Cluster): Client {
  // ioredis reports connection errors as events; the commands themselves fail closed.
  redis.on('error', () => undefined);
  redis.defineCommand('kbReserve', { lua: RESERVE_LUA });
  redis.defineCommand('kbSettle', { lua: SETTLE_LUA });
  redis.defineCommand('kbCreateKey', { lua: CREATE_KEY_LUA });
  redis.defineCommand('kbMarkSubtree', { lua: MARK_SUBTREE_LUA });
  redis.defineCommand('kbSealAppend', { numberOfKeys: 6, lua: SEAL_APPEND_LUA });
  redis.defineCommand('kbSealedCount', { numberOfKeys: 2, lua: SEALED_COUNT_LUA });
  redis.defineCommand('kbReleaseLock', { numberOfKeys: 1, lua: RELEASE_LOCK_LUA });
  redis.defineCommand('kbClaimObject', { numberOfKeys: 1, lua: CLAIM_OBJECT_LUA });
  redis.defineCommand('kbReleaseObject', { numberOfKeys: 1, lua: RELEASE_OBJECT_LUA });
  redis.defineCommand('kbRecordObject', { numberOfKeys: 1, lua: RECORD_OBJECT_LUA });
  defineAlertScripts(redis);
  return redis as Client;
}
