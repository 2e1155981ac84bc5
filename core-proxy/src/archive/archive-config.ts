import { join, resolve } from 'node:path';
import { ConfigError, type Env, positiveInt, positiveNumber } from '../env.js';

/** Where the archive goes (`KEYBRAKE_ARCHIVE`). */
export type ArchiveTarget =
  | { readonly kind: 'off' }
  | { readonly kind: 'dir'; readonly path: string }
  | {
      readonly kind: 's3';
      readonly bucket: string;
      /** Key prefix, '' or ending in `/`. */
      readonly prefix: string;
      /** `KEYBRAKE_ARCHIVE_S3_ENDPOINT`: MinIO, Ceph, R2, GCS, moto. @default the AWS endpoint of the region */
      readonly endpoint: string | undefined;
      /** `KEYBRAKE_ARCHIVE_S3_REGION`, else `AWS_REGION`. @default 'us-east-1' */
      readonly region: string;
      /** `KEYBRAKE_ARCHIVE_S3_PATH_STYLE=1`: `endpoint/bucket/key` instead of `bucket.endpoint/key`. @default false */
      readonly pathStyle: boolean;
      /** `KEYBRAKE_ARCHIVE_OBJECT_LOCK`: days of COMPLIANCE retention per segment; null: none. */
      readonly objectLockDays: number | null;
      /** `KEYBRAKE_ARCHIVE_S3_TIMEOUT`: longest one S3 request may take, ms. @default 30000 */
      readonly requestTimeoutMs: number;
    };

/** The archive's configuration (issue 23), read by {@link readArchiveConfig}. */
export interface ArchiveConfig {
  readonly target: ArchiveTarget;
  /** Why the default was `off` (Redis): logged at start-up. */
  readonly warning: string | undefined;
  /** `KEYBRAKE_AUDIT_LIVE_RECORDS`: the newest records kept live. @default 1000000 */
  readonly liveRecords: number;
  /**
   * `KEYBRAKE_AUDIT_LIVE_HOURS` (decimals allowed: 0.5 is 30 minutes), or `KEYBRAKE_AUDIT_LIVE_SECONDS`
   * (which wins when both are set), in ms. @default 168 h
   */
  readonly liveMs: number;
  /** `KEYBRAKE_ARCHIVE_INTERVAL` (`30s`, `5m`, `500ms`; a bare number is seconds), in ms. @default 60 s */
  readonly intervalMs: number;
  /** `KEYBRAKE_ARCHIVE_SEGMENT_RECORDS`: most records per segment. @default 10000 */
  readonly segmentRecords: number;
}

function truthy(env: Env, name: string): boolean {
  const text = (env[name] ?? '').trim().toLowerCase();
  if (text === '' || text === '0' || text === 'false') return false;
  if (text === '1' || text === 'true') return true;
  throw new ConfigError(`${name} must be 1 or 0.`);
}

/** Parses `KEYBRAKE_ARCHIVE`: `dir:/path`, `s3://bucket/prefix` or `off`. */
export function parseArchiveTarget(text: string, env: Env = {}): ArchiveTarget {
  const value = text.trim();
  if (value === 'off') return { kind: 'off' };
  if (value.startsWith('dir:')) {
    const path = value.slice(4);
    if (path === '') throw new ConfigError('KEYBRAKE_ARCHIVE: dir: needs a path (dir:/var/lib/keybrake/archive).');
    return { kind: 'dir', path: resolve(path) };
  }
  const s3 = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(value);
  if (s3) {
    const bucket = s3[1] as string;
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new ConfigError(`KEYBRAKE_ARCHIVE: "${bucket}" is not an S3 bucket name.`);
    }
    const rawPrefix = (s3[2] ?? '').replace(/^\/+|\/+$/g, '');
    const endpoint = env.KEYBRAKE_ARCHIVE_S3_ENDPOINT || undefined;
    if (endpoint !== undefined) {
      try {
        new URL(endpoint);
      } catch {
        throw new ConfigError('KEYBRAKE_ARCHIVE_S3_ENDPOINT is not a URL.');
      }
    }
    const lock = env.KEYBRAKE_ARCHIVE_OBJECT_LOCK;
    return {
      kind: 's3',
      bucket,
      prefix: rawPrefix === '' ? '' : `${rawPrefix}/`,
      endpoint,
      region: env.KEYBRAKE_ARCHIVE_S3_REGION || env.AWS_REGION || 'us-east-1',
      pathStyle: truthy(env, 'KEYBRAKE_ARCHIVE_S3_PATH_STYLE'),
      objectLockDays: lock === undefined || lock === '' ? null : positiveInt(env, 'KEYBRAKE_ARCHIVE_OBJECT_LOCK', 1),
      requestTimeoutMs: env.KEYBRAKE_ARCHIVE_S3_TIMEOUT
        ? parseDurationMs('KEYBRAKE_ARCHIVE_S3_TIMEOUT', env.KEYBRAKE_ARCHIVE_S3_TIMEOUT)
        : 30_000,
    };
  }
  throw new ConfigError('KEYBRAKE_ARCHIVE must be dir:/path, s3://bucket/prefix or off.');
}

/** A duration: `500ms`, `30s`, `5m`, `2h`; a bare number is seconds. */
export function parseDurationMs(name: string, text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match?.[2] ?? 's'] as number;
  const ms = match ? Number(match[1]) * unit : Number.NaN;
  if (!(ms >= 1)) throw new ConfigError(`${name} must be a duration such as 30s, 5m or 500ms.`);
  return Math.round(ms);
}

/**
 * Reads the archive's configuration. The default: `dir:<data dir>/archive` on the embedded store;
 * on Redis `off`, with a warning, since a store of many replicas has no one directory to share.
 */
export function readArchiveConfig(env: Env, options: { dataDir: string; redis: boolean }): ArchiveConfig {
  const text = env.KEYBRAKE_ARCHIVE;
  const unset = text === undefined || text.trim() === '';
  const target = unset
    ? options.redis
      ? ({ kind: 'off' } as const)
      : ({ kind: 'dir', path: resolve(join(options.dataDir, 'archive')) } as const)
    : parseArchiveTarget(text, env);
  if (target.kind !== 's3' && env.KEYBRAKE_ARCHIVE_OBJECT_LOCK) {
    throw new ConfigError('KEYBRAKE_ARCHIVE_OBJECT_LOCK applies to an s3:// archive only.');
  }
  return {
    target,
    warning:
      unset && options.redis
        ? 'KEYBRAKE_ARCHIVE is not set: on Redis the audit archive is off, so Redis memory grows with every call. Set KEYBRAKE_ARCHIVE=s3://bucket/prefix (or dir:/shared/path).'
        : undefined,
    liveRecords: positiveInt(env, 'KEYBRAKE_AUDIT_LIVE_RECORDS', 1_000_000),
    liveMs: env.KEYBRAKE_AUDIT_LIVE_SECONDS
      ? Math.round(positiveNumber(env, 'KEYBRAKE_AUDIT_LIVE_SECONDS', 1) * 1000)
      : Math.round(positiveNumber(env, 'KEYBRAKE_AUDIT_LIVE_HOURS', 168) * 3_600_000),
    intervalMs: env.KEYBRAKE_ARCHIVE_INTERVAL
      ? parseDurationMs('KEYBRAKE_ARCHIVE_INTERVAL', env.KEYBRAKE_ARCHIVE_INTERVAL)
      : 60_000,
    segmentRecords: positiveInt(env, 'KEYBRAKE_ARCHIVE_SEGMENT_RECORDS', 10_000),
  };
}

/** The target as logs and metrics show it: never a credential (there is none in it). */
export function describeArchiveTarget(target: ArchiveTarget): string {
  if (target.kind === 'off') return 'off';
  if (target.kind === 'dir') return `dir:${target.path}`;
  return `s3://${target.bucket}/${target.prefix}`;
}
