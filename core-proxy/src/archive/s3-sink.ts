import { createHash } from 'node:crypto';
import {
  GetObjectCommand,
  GetObjectLockConfigurationCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import type { ArchiveTarget } from './archive-config.js';
import { type ArchiveSink, ArchiveSinkError, type SegmentStat } from './sink.js';
import { SEGMENT_DIR, parseSegmentName, sha256Hex } from './segment.js';

type S3Target = Extract<ArchiveTarget, { kind: 's3' }>;

/** How long one S3 request may take before it fails (a hung endpoint pauses archiving, no more). */
const REQUEST_TIMEOUT_MS = 30_000;
const CONNECT_TIMEOUT_MS = 5_000;

/** The HTTP status of an S3 error, if it has one. */
function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** An S3 error as a line with no credential: the SDK's error name and the status only. */
function describeError(error: unknown): string {
  const name = (error as { name?: string } | undefined)?.name ?? 'Error';
  const status = statusOf(error);
  return status === undefined ? name : `${name} (HTTP ${status})`;
}

/**
 * The S3 sink (`KEYBRAKE_ARCHIVE=s3://bucket/prefix`) through `@aws-sdk/client-s3`: AWS, MinIO,
 * Ceph, R2, GCS's S3 API, moto. Credentials come from the SDK's standard chain (the `AWS_*`
 * environment, profiles, instance roles) and are never logged: errors carry the SDK's error name
 * and HTTP status only.
 *
 * Write-once: a put is conditional (`If-None-Match: *`), and where it finds the name taken (412,
 * or a server that ignores the condition and shows the object on the `HEAD` before it) the stored
 * bytes are compared, never overwritten. Each object carries its SHA-256 checksum
 * (`x-amz-checksum-sha256`), which S3 checks on upload and returns on `HEAD`. With
 * `KEYBRAKE_ARCHIVE_OBJECT_LOCK=<days>` every segment is put with COMPLIANCE retention for that
 * many days; {@link S3Sink.prepare} refuses to start on a bucket without Object Lock.
 */
export class S3Sink implements ArchiveSink {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly objectLockDays: number | null;

  constructor(
    target: S3Target,
    options: {
      /** How long one request may take. @default 30000 */
      readonly requestTimeoutMs?: number;
    } = {},
  ) {
    this.bucket = target.bucket;
    this.prefix = target.prefix;
    this.objectLockDays = target.objectLockDays;
    // The SDK's notice that its releases after January 2027 need Node 22, printed on stderr by the
    // client's constructor, is no output of the proxy's nor of `keybrake audit verify-archive`
    // (whose stderr is its verdict). AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED is the SDK's
    // own switch for that one warning; a value the operator set is kept.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client = new S3Client({
      region: target.region,
      endpoint: target.endpoint,
      forcePathStyle: target.pathStyle,
      maxAttempts: 2,
      requestHandler: {
        requestTimeout: options.requestTimeoutMs ?? target.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
        connectionTimeout: Math.min(
          CONNECT_TIMEOUT_MS,
          options.requestTimeoutMs ?? target.requestTimeoutMs ?? CONNECT_TIMEOUT_MS,
        ),
        throwOnRequestTimeout: true,
      },
    });
  }

  describe(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  /**
   * Checks at start-up what the configuration promises: with Object Lock asked for, that the
   * bucket has it enabled. Throws `ArchiveSinkError('sink_misconfigured')` when the bucket says it
   * has not; a bucket that cannot be reached is `sink_unavailable` (archiving then waits for it).
   */
  async prepare(): Promise<void> {
    if (this.objectLockDays === null) return;
    let enabled: boolean;
    try {
      const answer = await this.client.send(new GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
      enabled = answer.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    } catch (error) {
      const status = statusOf(error);
      if (status === undefined || status >= 500) {
        throw new ArchiveSinkError(
          'sink_unavailable',
          `${this.describe()}: cannot read the bucket's Object Lock configuration: ${describeError(error)}`,
        );
      }
      enabled = false;
    }
    if (!enabled) {
      throw new ArchiveSinkError(
        'sink_misconfigured',
        `KEYBRAKE_ARCHIVE_OBJECT_LOCK is set but the bucket ${this.bucket} has no Object Lock enabled (it can only be enabled when the bucket is created, or on a versioned bucket): unset it, or use a bucket with Object Lock.`,
      );
    }
  }

  async put(name: string, body: Buffer, sha256: string): Promise<void> {
    const key = this.keyOf(name);
    if (sha256Hex(body) !== sha256) {
      throw new ArchiveSinkError(
        'sink_unavailable',
        `${this.describe()}: ${name}: the bytes do not have the SHA-256 given`,
      );
    }
    // A server that ignores If-None-Match would overwrite: look first.
    if ((await this.stat(name)) !== undefined) return this.sameOrConflict(name, body);
    const input: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
      ContentType: 'application/gzip',
      ChecksumAlgorithm: 'SHA256',
      ChecksumSHA256: Buffer.from(sha256, 'hex').toString('base64'),
      // Object Lock puts need an integrity header; S3 checks it on upload either way.
      ContentMD5: createHash('md5').update(body).digest('base64'),
      IfNoneMatch: '*',
      ...(this.objectLockDays === null
        ? {}
        : {
            ObjectLockMode: 'COMPLIANCE' as const,
            ObjectLockRetainUntilDate: new Date(Date.now() + this.objectLockDays * 86_400_000),
          }),
    };
    try {
      await this.client.send(new PutObjectCommand(input));
    } catch (error) {
      const status = statusOf(error);
      // Taken meanwhile (412), or being written by another put (409).
      if (status === 412 || status === 409) return this.sameOrConflict(name, body);
      throw this.unavailable(`cannot put ${name}`, error);
    }
  }

  async get(name: string): Promise<Buffer | undefined> {
    try {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(name) }));
      if (!answer.Body) return Buffer.alloc(0);
      return Buffer.from(await answer.Body.transformToByteArray());
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.unavailable(`cannot get ${name}`, error);
    }
  }

  async stat(name: string): Promise<SegmentStat | undefined> {
    try {
      const answer = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(name), ChecksumMode: 'ENABLED' }),
      );
      const checksum = answer.ChecksumSHA256;
      // A multipart object's checksum is of its parts ("…-N"): not the object's hash.
      const sha256 = checksum && !checksum.includes('-') ? Buffer.from(checksum, 'base64').toString('hex') : undefined;
      return { size: Number(answer.ContentLength ?? 0), ...(sha256 === undefined ? {} : { sha256 }) };
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.unavailable(`cannot stat ${name}`, error);
    }
  }

  async list(prefix?: string): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: `${this.prefix}${prefix?.startsWith(`${SEGMENT_DIR}/`) ? prefix : `${SEGMENT_DIR}/`}`,
            ContinuationToken: token,
          }),
        );
        for (const object of page.Contents ?? []) {
          const name = object.Key?.slice(this.prefix.length);
          if (name !== undefined && parseSegmentName(name) !== undefined) names.push(name);
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw this.unavailable('cannot list the segments', error);
    }
    return names.sort();
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }

  private async sameOrConflict(name: string, body: Buffer): Promise<void> {
    const stored = await this.get(name);
    if (stored !== undefined && stored.equals(body)) return;
    throw new ArchiveSinkError(
      'segment_conflict',
      `${this.describe()}: ${name} exists with other bytes${stored ? ` (sha256 ${sha256Hex(stored)})` : ''}; it is not overwritten`,
    );
  }

  private keyOf(name: string): string {
    if (parseSegmentName(name) === undefined) {
      throw new ArchiveSinkError(
        'sink_misconfigured',
        `${this.describe()}: ${JSON.stringify(name)} is not a segment name`,
      );
    }
    return `${this.prefix}${name}`;
  }

  private unavailable(what: string, error: unknown): ArchiveSinkError {
    // Not the SDK's error as a cause: it carries the signed request, access key id included.
    return new ArchiveSinkError('sink_unavailable', `${this.describe()}: ${what}: ${describeError(error)}`);
  }
}
