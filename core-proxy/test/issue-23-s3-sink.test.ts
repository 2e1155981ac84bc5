import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseArchiveTarget } from '../src/archive/archive-config.js';
import { S3Sink } from '../src/archive/s3-sink.js';
import { encodeSegment, segmentName, sha256Hex } from '../src/archive/segment.js';
import { CheckpointSigner } from '../src/audit/checkpoints.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { AuditCheckpoint, AuditEntry } from '../src/store/store.js';
import { type MotoServer, startMotoServer } from './moto-server.js';
import { testAuditInput } from './store-fixtures.js';

/**
 * Issue 23: the S3 sink through `@aws-sdk/client-s3` against a real S3 API (moto_server, started
 * here on a free loopback port): write-once puts, read-back with S3's own SHA-256 checksum, the
 * listing under a prefix, Object Lock retention, and a hung endpoint.
 */

let moto: MotoServer;
let locked: MotoServer;
const signer = CheckpointSigner.fromPem(CheckpointSigner.generatePem());
let entries: AuditEntry[] = [];
let checkpoints: AuditCheckpoint[] = [];
const sinks: S3Sink[] = [];

beforeAll(async () => {
  [moto, locked] = await Promise.all([startMotoServer(), startMotoServer({ objectLock: true })]);
  const store = new SqliteStore({ dataDir: mkdtempSync(join(tmpdir(), 'keybrake-i23-s3-')) });
  for (let i = 1; i <= 6; i += 1) {
    await store.appendAudit(
      testAuditInput(null, Date.UTC(2026, 5, 1, 12, 0, i), {
        vendor: 'openai',
        path: '/v1/chat/completions',
        outcome: 'blocked',
        reason: 'invalid_vault_key',
        status: 401,
        costMicros: 0,
      }),
    );
    if (i % 3 === 0) {
      const checkpoint = signer.sign(await store.auditHead(), new Date().toISOString());
      await store.addCheckpoint(checkpoint);
    }
  }
  entries = await store.readAudit(0, 6);
  checkpoints = await store.listCheckpoints();
  await store.close();
});

afterEach(async () => {
  vi.unstubAllEnvs();
  await Promise.all(sinks.splice(0).map((sink) => sink.close()));
});

afterAll(async () => {
  await Promise.all([moto?.stop(), locked?.stop()]);
});

function sinkOf(
  server: MotoServer,
  prefix: string,
  env: Record<string, string> = {},
  requestTimeoutMs?: number,
): S3Sink {
  const serverEnv = { ...server.env(prefix), ...env };
  // The SDK reads its credentials from the process environment, as a proxy's would.
  vi.stubEnv('AWS_ACCESS_KEY_ID', serverEnv.AWS_ACCESS_KEY_ID);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', serverEnv.AWS_SECRET_ACCESS_KEY);
  const target = parseArchiveTarget(serverEnv.KEYBRAKE_ARCHIVE as string, serverEnv);
  if (target.kind !== 's3') throw new Error('not s3');
  const sink = new S3Sink(target, { requestTimeoutMs });
  sinks.push(sink);
  return sink;
}

describe('issue 23: the S3 sink (moto_server)', () => {
  it('puts once, reads back with the size and S3 checksum, lists only its own segments, and never overwrites', async () => {
    const sink = sinkOf(moto, 'deploy-a/audit');
    expect(sink.describe()).toBe(`s3://${moto.bucket}/deploy-a/audit/`);
    expect(sink.describe()).not.toContain('moto-test');
    const first = encodeSegment({ entries: entries.slice(0, 3), checkpoints, publicKeys: [] });
    const second = encodeSegment({ entries: entries.slice(3), checkpoints, publicKeys: [] });
    expect(await sink.list()).toEqual([]);
    expect(await sink.stat(first.name)).toBeUndefined();
    expect(await sink.get(first.name)).toBeUndefined();

    await sink.put(second.name, second.body, second.sha256);
    await sink.put(first.name, first.body, first.sha256);
    await sink.put(first.name, first.body, first.sha256); // idempotent
    expect(await sink.list()).toEqual([first.name, second.name]);
    expect(await sink.stat(first.name)).toEqual({ size: first.body.length, sha256: first.sha256 });
    expect((await sink.get(second.name))?.equals(second.body)).toBe(true);

    // Another deployment's prefix, and objects that are not segments, are not listed.
    const other = sinkOf(moto, 'deploy-b/audit');
    expect(await other.list()).toEqual([]);
    const client = moto.client();
    await client.send(new PutObjectCommand({ Bucket: moto.bucket, Key: 'deploy-a/audit/segments/README', Body: 'x' }));
    client.destroy();
    expect(await sink.list()).toEqual([first.name, second.name]);

    const forged = encodeSegment({
      entries: entries.slice(0, 3),
      checkpoints,
      publicKeys: [],
      createdAt: '2030-01-01T00:00:00.000Z',
    });
    await expect(sink.put(first.name, forged.body, forged.sha256)).rejects.toMatchObject({
      reason: 'segment_conflict',
    });
    expect((await sink.get(first.name))?.equals(first.body)).toBe(true);
    await expect(sink.put(segmentName(9, 9), first.body, sha256Hex(second.body))).rejects.toMatchObject({
      reason: 'sink_unavailable',
    });
  });

  it('puts segments with COMPLIANCE retention on a bucket with Object Lock, and refuses to start on one without', async () => {
    const sink = sinkOf(locked, 'audit', { KEYBRAKE_ARCHIVE_OBJECT_LOCK: '30' });
    await sink.prepare();
    const segment = encodeSegment({ entries: entries.slice(0, 3), checkpoints, publicKeys: [] });
    await sink.put(segment.name, segment.body, segment.sha256);
    const client = locked.client();
    // The object's own lock headers (moto's GetObjectRetention answer does not parse in the SDK).
    const head = await client.send(new HeadObjectCommand({ Bucket: locked.bucket, Key: `audit/${segment.name}` }));
    client.destroy();
    expect(head.ObjectLockMode).toBe('COMPLIANCE');
    const days = ((head.ObjectLockRetainUntilDate?.getTime() ?? 0) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29);
    expect(days).toBeLessThanOrEqual(30);

    const unlocked = sinkOf(moto, 'audit', { KEYBRAKE_ARCHIVE_OBJECT_LOCK: '30' });
    await expect(unlocked.prepare()).rejects.toMatchObject({
      reason: 'sink_misconfigured',
      message: expect.stringMatching(/Object Lock/),
    });
    // Without the setting the same bucket is fine.
    await sinkOf(moto, 'audit').prepare();
  });

  it('fails a call to a hung endpoint as sink_unavailable, and works again once it answers', async () => {
    const sink = sinkOf(moto, 'hung', {}, 1500);
    const segment = encodeSegment({ entries: entries.slice(0, 3), checkpoints, publicKeys: [] });
    moto.pause();
    try {
      await expect(sink.put(segment.name, segment.body, segment.sha256)).rejects.toMatchObject({
        reason: 'sink_unavailable',
      });
    } finally {
      moto.resume();
    }
    await sink.put(segment.name, segment.body, segment.sha256);
    expect(await sink.stat(segment.name)).toEqual({ size: segment.body.length, sha256: segment.sha256 });
  });
});
