import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  type SegmentStorage,
  addOverlappingSegment,
  alterSignature,
  cutGzip,
  cutLastLines,
  directoryStorage,
  editRecord,
  rangeOf,
  resignSegment,
  runCli,
  swapSegments,
} from './archive-segments.js';
import { TEST_STORE, type TestProxy, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';

/**
 * Issue 23, on both stores (the shared suite): once the archiver has moved records 1..12 of a chain
 * of 14 into segments 1-4, 5-8 and 9-12 of a real directory sink and trimmed them from the live
 * store, `GET /audit/verify` and `keybrake audit verify` check the chain from genesis through every
 * segment to the live head, and name the first bad seq of each way the archive can be tampered
 * with; `GET /audit/export` still gives the whole chain; `/calls` says what is archived and where.
 */

interface Archived {
  readonly proxy: TestProxy;
  readonly keyId: string;
  readonly storage: SegmentStorage;
  /** `dir:/path`, as the proxy describes its sink. */
  readonly target: string;
  /** Runs `keybrake audit verify` against the proxy. */
  verifyCli(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** A proxy whose archiver keeps 2 records live and cuts segments of 4: 14 calls leave 1..12 archived. */
async function archivedProxy(): Promise<Archived> {
  const vendor = await startFakeVendor((_request, response) =>
    sendJson(response, 200, { id: `pi_${Math.random()}`, amount: 100, currency: 'usd' }),
  );
  const root = mkdtempSync(join(tmpdir(), 'keybrake-i23-archive-'));
  onTestFinished(() => rmSync(root, { recursive: true, force: true }));
  const target = `dir:${root}`;
  const proxy = await startProxy({
    env: {
      KEYBRAKE_STRIPE_BASE_URL: vendor.url,
      KEYBRAKE_ARCHIVE: target,
      KEYBRAKE_AUDIT_LIVE_RECORDS: '2',
      KEYBRAKE_ARCHIVE_SEGMENT_RECORDS: '4',
      KEYBRAKE_ARCHIVE_INTERVAL: '100ms',
    },
  });
  const key = await proxy.issueKey({
    vendor: 'stripe',
    usd_cap: 1000,
    allowed_endpoints: ['POST /v1/payment_intents'],
  });
  for (let i = 1; i <= 14; i += 1) expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
  // The archiver runs on its own timer: wait until it has caught up (12 archived, 2 live).
  for (let i = 0; ; i += 1) {
    const verified = (await proxy.admin('GET', '/audit/verify')).body;
    if (verified.archived_records === 12) break;
    if (i > 600) throw new Error(`the archive did not reach 12: ${JSON.stringify(verified)}`);
    await sleep(100);
  }
  return {
    proxy,
    keyId: key.key_id,
    storage: directoryStorage(root),
    target,
    verifyCli: () => runCli(['audit', 'verify'], { KEYBRAKE_URL: proxy.url, KEYBRAKE_API_KEY: proxy.apiKey }),
  };
}

/** `from..to`. */
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

const verify = async (proxy: TestProxy) => (await proxy.admin('GET', '/audit/verify')).body;

/** Tampers, checks what verification says, then puts the segments back as they were and checks it is ok again. */
async function tampered<T>(
  archived: Archived,
  tamper: () => Promise<T>,
  expected: Record<string, unknown> | ((tampering: T) => Record<string, unknown>),
): Promise<void> {
  const { storage } = archived;
  const before = new Map<string, Buffer>();
  for (const name of await storage.list()) before.set(name, await storage.read(name));
  const tampering = await tamper();
  const verdict = typeof expected === 'function' ? expected(tampering) : expected;
  expect(await verify(archived.proxy)).toMatchObject({ ok: false, ...verdict });
  for (const name of await storage.list()) if (!before.has(name)) await storage.remove(name);
  for (const [name, body] of before) await storage.write(name, body);
  expect(await verify(archived.proxy)).toMatchObject({ ok: true, records: 14, archived_records: 12 });
}

describe(`issue 23: one verification across archive and live (${TEST_STORE} store, directory sink)`, () => {
  it('verifies from genesis through every segment to the live head, on the API and the CLI', async () => {
    const archived = await archivedProxy();
    // The archiver cuts as the calls come (at most 4 a segment): they tile 1..12.
    const names = await archived.storage.list();
    expect(names.length).toBeGreaterThanOrEqual(3);
    expect(names.map(rangeOf).flatMap(({ firstSeq, lastSeq }) => range(firstSeq, lastSeq))).toEqual(range(1, 12));
    const verified = await verify(archived.proxy);
    expect(verified).toMatchObject({ ok: true, records: 14, archived_records: 12, segments: names.length });
    const cli = await archived.verifyCli();
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: true, records: 14, head: verified.head });

    // The export still runs from genesis (archived records read back), and verifies offline.
    const exported = await archived.proxy.call('/audit/export', {
      headers: { authorization: `Bearer ${archived.proxy.apiKey}` },
    });
    const text = await exported.text();
    expect(text.split('\n').filter((line) => line.includes('"type":"record"'))).toHaveLength(14);
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-i23-export-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'audit.jsonl'), text);
    const publicKey = (await archived.proxy.admin('GET', '/audit/checkpoints')).body.public_key.pem as string;
    writeFileSync(join(dir, 'proxy.pub.pem'), publicKey);
    const offline = await runCli([
      'audit',
      'verify-export',
      join(dir, 'audit.jsonl'),
      '--public-key',
      join(dir, 'proxy.pub.pem'),
    ]);
    expect(offline.code, offline.stderr).toBe(0);
    expect(JSON.parse(offline.stdout)).toMatchObject({ ok: true, records: 14, head: verified.head });
  });

  it('names the first bad seq of each tampering with the archive', async () => {
    const archived = await archivedProxy();
    const { storage } = archived;
    const names = await storage.list();
    const [s1, s2] = names as [string, string];
    const s3 = names.at(-1) as string;
    const [r2, r3] = [rangeOf(s2), rangeOf(s3)];
    // A segment deleted, in the middle and the newest (the store knows the archive reaches 12).
    await tampered(archived, () => storage.remove(s2), { first_bad_seq: r2.firstSeq, reason: 'segment_missing' });
    await tampered(archived, () => storage.remove(s3), { first_bad_seq: r3.firstSeq, reason: 'segment_missing' });
    // Two swapped, each under the other's name.
    await tampered(archived, () => swapSegments(storage, s1, s2), {
      first_bad_seq: 1,
      reason: 'segment_reordered',
      segment: s1,
    });
    // Truncated: the last lines cut (the checkpoint and the last record), and the gzip cut mid-stream.
    await tampered(archived, () => cutLastLines(storage, s3, 2), {
      first_bad_seq: r3.lastSeq,
      reason: 'segment_truncated',
    });
    // Line 1 is the header: `readable - 1` records survive whole.
    await tampered(
      archived,
      () => cutGzip(storage, s3, 0.6),
      (readable) => ({
        first_bad_seq: Math.min(r3.lastSeq, r3.firstSeq + Math.max(0, readable - 1)),
        reason: 'segment_truncated',
        segment: s3,
      }),
    );
    // A record edited inside a re-gzipped segment.
    await tampered(
      archived,
      () =>
        editRecord(storage, s3, r3.lastSeq, (record) => {
          record.status = 402;
        }),
      { first_bad_seq: r3.lastSeq, reason: 'record_edited' },
    );
    // A segment overlapping others (from the last record of the second to the end, well formed).
    await tampered(archived, () => addOverlappingSegment(storage, r2.lastSeq, r3.lastSeq), {
      first_bad_seq: r2.lastSeq,
      reason: 'segment_overlap',
    });
    // A checkpoint signature altered; a segment re-signed with another key.
    await tampered(archived, () => alterSignature(storage, s2, r2.lastSeq), {
      first_bad_seq: r2.firstSeq,
      reason: 'signature_invalid',
    });
    await tampered(archived, () => resignSegment(storage, s3), {
      first_bad_seq: r3.firstSeq,
      reason: 'checkpoint_untrusted',
    });

    // `keybrake audit verify` prints the failure and exits 1.
    await storage.remove(s1);
    const cli = await archived.verifyCli();
    expect(cli.code).toBe(1);
    expect(JSON.parse(cli.stderr)).toMatchObject({ ok: false, first_bad_seq: 1, reason: 'segment_missing' });
  });

  it('calls of a key whose records are archived: the live ones, and where the archived ones are', async () => {
    const archived = await archivedProxy();
    const all = (await archived.proxy.admin('GET', `/vault/keys/${archived.keyId}/calls`)).body;
    expect(all.archived).toEqual({
      through_seq: 12,
      archive: archived.target,
      segments: (await archived.storage.list()).length,
    });
    // Every call after the archive's end is listed, once; none is listed twice.
    const seqs = (all.calls as { seq: number }[]).map((call) => call.seq);
    expect(seqs.filter((seq) => seq > 12)).toEqual([13, 14]);
    expect(new Set(seqs).size).toBe(seqs.length);
    // The paged form, with the issue-22 cursor, says the same on every page.
    const first = (await archived.proxy.admin('GET', `/vault/keys/${archived.keyId}/calls?limit=1&after_seq=12`)).body;
    expect(first).toMatchObject({ calls: [{ seq: 13 }], archived: { through_seq: 12 } });
    const next = (
      await archived.proxy.admin('GET', `/vault/keys/${archived.keyId}/calls?limit=1&cursor=${first.next_cursor}`)
    ).body;
    expect(next).toMatchObject({ calls: [{ seq: 14 }], archived: { through_seq: 12, archive: archived.target } });
  });
});
