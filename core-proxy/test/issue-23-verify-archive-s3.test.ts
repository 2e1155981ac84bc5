import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSegmentName, segmentName } from '../src/archive/segment.js';
import {
  addOverlappingSegment,
  alterSignature,
  chainOfTwelve,
  cutGzip,
  cutLastLines,
  editRecord,
  type RealChain,
  runCli,
  segmentsOfTwelve,
  type SegmentStorage,
  swapSegments,
} from './archive-segments.js';
import { type MotoServer, startMotoServer } from './moto-server.js';

/**
 * Issue 23: `keybrake audit verify-archive --sink s3://...` against a real S3 API (moto_server),
 * with each kind of tampering done the way someone with write access to the bucket would: plain
 * S3 calls (DeleteObject, PutObject over a segment; the archive's own sink never overwrites). A
 * clean archive verifies; each tampered one is refused, naming the first bad seq. The records and
 * signed checkpoints are a real proxy's chain; the vendor is a fake of our own (one answer per call).
 */

let moto: MotoServer;
let client: S3Client;
let keyFile: string;
let root: string;

let chain: RealChain | undefined;

/**
 * Records 1..12 of a real proxy's chain, checkpointed at 3, 4, 8 and 12: made by the first test
 * that asks (the proxy closes when that test finishes), then shared.
 */
async function realChain(): Promise<RealChain> {
  if (chain) return chain;
  const made = await chainOfTwelve();
  writeFileSync(keyFile, made.publicKey.pem);
  chain = made;
  return chain;
}

beforeAll(async () => {
  moto = await startMotoServer();
  client = moto.client();
  root = mkdtempSync(join(tmpdir(), 'keybrake-archive-s3-'));
  keyFile = join(root, 'proxy.pub.pem');
}, 120_000);

afterAll(async () => {
  client?.destroy();
  await moto?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** The segments under `prefix` of the bucket, through plain S3 calls. */
function s3Storage(prefix: string): SegmentStorage {
  const key = (name: string): string => `${prefix}/${name}`;
  return {
    list: async () => {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: moto.bucket, Prefix: `${prefix}/` }));
      return (listed.Contents ?? [])
        .map((object) => (object.Key as string).slice(prefix.length + 1))
        .filter((name) => parseSegmentName(name) !== undefined)
        .sort();
    },
    read: async (name) => {
      const object = await client.send(new GetObjectCommand({ Bucket: moto.bucket, Key: key(name) }));
      return Buffer.from(await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
    },
    write: async (name, body) => {
      await client.send(new PutObjectCommand({ Bucket: moto.bucket, Key: key(name), Body: body }));
    },
    remove: async (name) => {
      await client.send(new DeleteObjectCommand({ Bucket: moto.bucket, Key: key(name) }));
    },
  };
}

let copies = 0;
/** A fresh archive of segments 1-4, 5-8, 9-12 under a prefix of its own in the bucket. */
async function freshArchive(): Promise<{ prefix: string; storage: SegmentStorage }> {
  const archive = await realChain();
  copies += 1;
  const prefix = `copy-${copies}/audit`;
  const storage = s3Storage(prefix);
  for (const segment of segmentsOfTwelve(archive)) await storage.write(segment.name, segment.body);
  return { prefix, storage };
}

function verifyArchive(prefix: string) {
  const env = moto.env(prefix);
  return runCli(['audit', 'verify-archive', '--sink', `s3://${moto.bucket}/${prefix}`, '--public-key', keyFile], {
    KEYBRAKE_ARCHIVE_S3_ENDPOINT: env.KEYBRAKE_ARCHIVE_S3_ENDPOINT as string,
    KEYBRAKE_ARCHIVE_S3_REGION: env.KEYBRAKE_ARCHIVE_S3_REGION as string,
    KEYBRAKE_ARCHIVE_S3_PATH_STYLE: '1',
    AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID as string,
    AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY as string,
  });
}

async function verdict(prefix: string): Promise<Record<string, unknown>> {
  const run = await verifyArchive(prefix);
  expect(run.code, run.stderr).toBe(1);
  // The verdict alone: no AWS SDK notice (its Node version warning) before it.
  return JSON.parse(run.stderr) as Record<string, unknown>;
}

const s1 = segmentName(1, 4);
const s2 = segmentName(5, 8);
const s3 = segmentName(9, 12);

describe('issue 23: keybrake audit verify-archive on an S3 bucket (moto_server), tampered through the S3 API', () => {
  it('verifies a clean archive', async () => {
    const { prefix } = await freshArchive();
    const archive = await realChain();
    const run = await verifyArchive(prefix);
    expect(run.code, run.stderr).toBe(0);
    // stderr holds keybrake's own notice (no --checkpoints given) and nothing else: no AWS SDK warning.
    expect(run.stderr).not.toContain('AWS SDK');
    expect(run.stderr.split('\n').filter((line) => line !== '')).toEqual([
      expect.stringMatching(/^keybrake: nothing here proves the newest segments are all there/),
    ]);
    expect(JSON.parse(run.stdout)).toMatchObject({
      ok: true,
      records: 12,
      head: archive.entries[11]?.hash,
      segments: 3,
    });
    // The credentials reach the SDK only: never the output.
    expect(`${run.stdout}${run.stderr}`).not.toContain(moto.env().AWS_SECRET_ACCESS_KEY);
  });

  it('a segment deleted from the bucket: the gap starts at its first seq', async () => {
    const { prefix, storage } = await freshArchive();
    await storage.remove(s2);
    expect(await verdict(prefix)).toMatchObject({ ok: false, first_bad_seq: 5, reason: 'segment_missing' });
  });

  it('a record edited in place (PutObject over the segment, its stored hash kept)', async () => {
    const { prefix, storage } = await freshArchive();
    await editRecord(storage, s2, 7, (record) => {
      record.cost_usd = 0.01;
    });
    expect(await verdict(prefix)).toMatchObject({ first_bad_seq: 7, reason: 'record_edited' });
  });

  it('two segments reordered (each put under the other’s name)', async () => {
    const { prefix, storage } = await freshArchive();
    await swapSegments(storage, s2, s3);
    expect(await verdict(prefix)).toMatchObject({ first_bad_seq: 5, reason: 'segment_reordered', segment: s2 });
  });

  it('a segment truncated: its last lines cut, or its gzip cut mid-stream', async () => {
    // Records 7, 8 and the checkpoint at 8 cut from segment 5-8: 7 is the first gone.
    const lines = await freshArchive();
    await cutLastLines(lines.storage, s2, 3);
    expect(await verdict(lines.prefix)).toMatchObject({ first_bad_seq: 7, reason: 'segment_truncated' });

    // Only the checkpoint lines cut (those at 3 and 4): nothing of segment 1-4 is signed any more.
    const unsigned = await freshArchive();
    await cutLastLines(unsigned.storage, s1, 2);
    expect(await verdict(unsigned.prefix)).toMatchObject({ first_bad_seq: 1, reason: 'segment_unsigned' });

    const gzip = await freshArchive();
    const readable = await cutGzip(gzip.storage, s3, 0.6);
    // Line 1 is the header, then records 9, 10, ...: `readable - 1` records survive.
    expect(await verdict(gzip.prefix)).toMatchObject({
      first_bad_seq: Math.min(9 + Math.max(0, readable - 1), 12),
      reason: 'segment_truncated',
      segment: s3,
    });
  });

  it('a segment overlapping others, and a checkpoint signature altered', async () => {
    const overlapping = await freshArchive();
    await addOverlappingSegment(overlapping.storage, 7, 12);
    expect(await verdict(overlapping.prefix)).toMatchObject({ first_bad_seq: 7, reason: 'segment_overlap' });

    // The only checkpoint of segment 5-8 (at 8): none of its records is vouched for.
    const signed = await freshArchive();
    await alterSignature(signed.storage, s2, 8);
    expect(await verdict(signed.prefix)).toMatchObject({ first_bad_seq: 5, reason: 'signature_invalid' });
  });
});
