import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync, constants as zlib } from 'node:zlib';
import { CheckpointSigner } from '../src/audit/checkpoints.js';
import { canonicalJson } from '../src/audit/canonical-json.js';
import { type EncodedSegment, encodeSegment, parseSegmentName, segmentName } from '../src/archive/segment.js';
import type { AuditCheckpoint, AuditEntry } from '../src/store/store.js';
import { expect } from 'vitest';
import { sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';
import { CLI } from './server-process.js';

/**
 * Issue 23's tamper tests: an attacker with write access to the archive (a directory, or a bucket)
 * deletes, renames, cuts, edits, adds or re-signs segments. These helpers do it to the segment
 * bytes; `SegmentStorage` says where they are kept.
 */

/** Where segments are kept, as an attacker with write access reaches them. */
export interface SegmentStorage {
  list(): Promise<string[]>;
  read(name: string): Promise<Buffer>;
  write(name: string, body: Buffer): Promise<void>;
  remove(name: string): Promise<void>;
}

/** The segments of a directory sink (`dir:<root>`). */
export function directoryStorage(root: string): SegmentStorage {
  return {
    list: async () =>
      readdirSync(join(root, 'segments'))
        .map((file) => `segments/${file}`)
        .filter((name) => parseSegmentName(name) !== undefined)
        .sort(),
    read: async (name) => readFileSync(join(root, name)),
    write: async (name, body) => {
      mkdirSync(join(root, 'segments'), { recursive: true });
      writeFileSync(join(root, name), body);
    },
    remove: async (name) => rmSync(join(root, name)),
  };
}

/** The text lines of a segment. */
export function segmentLines(body: Buffer): string[] {
  const lines = gunzipSync(body).toString('utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

/** A segment's bytes from its lines, gzip as the archiver writes it. */
export function segmentBody(lines: readonly string[]): Buffer {
  return gzipSync(Buffer.from(`${lines.join('\n')}\n`));
}

/** How many lines of a gzip cut short can still be read whole: what a verifier can check. */
export function completeLinesOf(cut: Buffer): number {
  const text = gunzipSync(cut, { finishFlush: zlib.Z_SYNC_FLUSH }).toString('utf8');
  return text.split('\n').length - 1;
}

/** The first and last seq of a segment name. */
export function rangeOf(name: string): { firstSeq: number; lastSeq: number } {
  const range = parseSegmentName(name);
  if (!range) throw new Error(`not a segment name: ${name}`);
  return range;
}

/** Swaps two segments' names, as an attacker reordering the archive would. */
export async function swapSegments(storage: SegmentStorage, a: string, b: string): Promise<void> {
  const [bodyA, bodyB] = [await storage.read(a), await storage.read(b)];
  await storage.write(a, bodyB);
  await storage.write(b, bodyA);
}

/** Edits the record of seq `seq` in its segment, keeping its stored hash, and gzips it again. */
export async function editRecord(
  storage: SegmentStorage,
  name: string,
  seq: number,
  edit: (record: Record<string, unknown>) => void,
): Promise<void> {
  const lines = segmentLines(await storage.read(name)).map((line) => {
    const value = JSON.parse(line) as Record<string, any>;
    if (value.type !== 'record' || value.seq !== seq) return line;
    edit(value.record);
    return JSON.stringify(value);
  });
  await storage.write(name, segmentBody(lines));
}

/** Cuts the last `count` lines of a segment (its checkpoint lines first), gzipped again. */
export async function cutLastLines(storage: SegmentStorage, name: string, count: number): Promise<void> {
  const lines = segmentLines(await storage.read(name));
  await storage.write(name, segmentBody(lines.slice(0, lines.length - count)));
}

/** Cuts a segment's gzip bytes at `fraction`: returns how many whole lines remain readable. */
export async function cutGzip(storage: SegmentStorage, name: string, fraction: number): Promise<number> {
  const body = await storage.read(name);
  const cut = body.subarray(0, Math.floor(body.length * fraction));
  await storage.write(name, cut);
  return completeLinesOf(cut);
}

/** Alters one character of the signature of the checkpoint over `records`. */
export async function alterSignature(storage: SegmentStorage, name: string, records: number): Promise<void> {
  const lines = segmentLines(await storage.read(name)).map((line) => {
    const value = JSON.parse(line) as Record<string, any>;
    if (value.type !== 'checkpoint' || value.records !== records) return line;
    const signature = Buffer.from(value.signature as string, 'base64');
    signature[0] = (signature[0] as number) ^ 0x01;
    return JSON.stringify({ ...value, signature: signature.toString('base64') });
  });
  await storage.write(name, segmentBody(lines));
}

/**
 * Re-signs every checkpoint of a segment with a key of the attacker's and names that key in the
 * header: a segment that is consistent in itself, signed by a key the auditor does not trust.
 */
export async function resignSegment(storage: SegmentStorage, name: string): Promise<void> {
  const signer = new CheckpointSigner(generateKeyPairSync('ed25519').privateKey);
  const lines = segmentLines(await storage.read(name)).map((line, i) => {
    const value = JSON.parse(line) as Record<string, any>;
    if (i === 0)
      return JSON.stringify({ ...value, public_keys: [{ key_id: signer.keyId, pem: signer.publicKeyPem() }] });
    if (value.type !== 'checkpoint') return line;
    return JSON.stringify({
      type: 'checkpoint',
      ...signer.sign({ records: value.records, head: value.head }, value.at),
    });
  });
  await storage.write(name, segmentBody(lines));
}

/**
 * Writes, beside the others, a segment overlapping them: records `firstSeq..lastSeq` taken from
 * the segments that hold them, with their checkpoint at `lastSeq` (a well-formed segment in itself).
 */
export async function addOverlappingSegment(
  storage: SegmentStorage,
  firstSeq: number,
  lastSeq: number,
): Promise<string> {
  const header: Record<string, unknown>[] = [];
  const records: string[] = [];
  const checkpoints: string[] = [];
  for (const name of await storage.list()) {
    for (const line of segmentLines(await storage.read(name))) {
      const value = JSON.parse(line) as Record<string, any>;
      if (value.type === 'record' && value.seq >= firstSeq && value.seq <= lastSeq) records.push(line);
      if (value.type === 'checkpoint' && value.records === lastSeq) checkpoints.push(line);
      if (value.type === 'keybrake.audit.segment') header.push(value);
    }
  }
  const first = JSON.parse(records[0] as string) as { prev_hash: string };
  const last = JSON.parse(records.at(-1) as string) as { hash: string };
  const name = segmentName(firstSeq, lastSeq);
  const lines = [
    JSON.stringify({
      ...header[0],
      first_seq: firstSeq,
      last_seq: lastSeq,
      prev_hash: first.prev_hash,
      head: last.hash,
    }),
    ...records,
    ...checkpoints,
  ];
  await storage.write(name, segmentBody(lines));
  return name;
}

/** A real proxy's chain, as its export and its log show it. */
export interface RealChain {
  readonly entries: AuditEntry[];
  readonly checkpoints: AuditCheckpoint[];
  readonly publicKey: { key_id: string; pem: string };
  /** The auditor's copy of the checkpoints: the proxy's `audit checkpoint` log lines. */
  readonly checkpointLog: string;
}

/**
 * Records 1..12 of a real proxy's chain (embedded store; the vendor is a fake of our own, one
 * answer per charge), checkpointed at 3, 4, 8 and 12. The proxy closes when the calling test
 * finishes.
 */
export async function chainOfTwelve(): Promise<RealChain> {
  const vendor = await startFakeVendor((_request, response) =>
    sendJson(response, 200, { id: `pi_${Math.random()}`, amount: 100, currency: 'usd' }),
  );
  const proxy = await startProxy({ store: 'embedded', env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
  const key = await proxy.issueKey({
    vendor: 'stripe',
    usd_cap: 1000,
    allowed_endpoints: ['POST /v1/payment_intents'],
  });
  for (let i = 1; i <= 12; i += 1) {
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    if ([3, 4, 8, 12].includes(i)) expect((await proxy.admin('POST', '/audit/checkpoints')).status).toBe(201);
  }
  const exported = await proxy.call('/audit/export', { headers: { authorization: `Bearer ${proxy.apiKey}` } });
  const { entries, checkpoints } = parseExport(await exported.text());
  expect(entries).toHaveLength(12);
  const publicKey = (await proxy.admin('GET', '/audit/checkpoints')).body.public_key as { key_id: string; pem: string };
  const checkpointLog = proxy
    .logs()
    .filter((line) => line.includes('"msg":"audit checkpoint"'))
    .join('');
  return { entries, checkpoints, publicKey, checkpointLog };
}

/** The chain of {@link chainOfTwelve} as segments 1-4, 5-8 and 9-12, by the archive's own encoder. */
export function segmentsOfTwelve(chain: RealChain): EncodedSegment[] {
  return (
    [
      [1, 4],
      [5, 8],
      [9, 12],
    ] as const
  ).map(([first, last]) =>
    encodeSegment({
      entries: chain.entries.slice(first - 1, last),
      checkpoints: chain.checkpoints,
      publicKeys: [chain.publicKey],
    }),
  );
}

/** An audit export's records and checkpoints, as a store holds them. */
export function parseExport(text: string): { entries: AuditEntry[]; checkpoints: AuditCheckpoint[] } {
  const entries: AuditEntry[] = [];
  const checkpoints: AuditCheckpoint[] = [];
  for (const line of text.split('\n').slice(1)) {
    if (line.trim() === '') continue;
    const value = JSON.parse(line) as Record<string, any>;
    if (value.type === 'record') {
      entries.push({
        seq: value.seq,
        record: canonicalJson(value.record),
        prevHash: value.prev_hash,
        hash: value.hash,
      });
    } else {
      checkpoints.push({
        records: value.records,
        head: value.head,
        at: value.at,
        key_id: value.key_id,
        signature: value.signature,
      });
    }
  }
  return { entries, checkpoints };
}

/** A CLI run: its exit code and its output. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `keybrake <args>` (the built CLI) with the environment given. */
export function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { PATH: process.env.PATH ?? '', ...env } },
      (error, stdout, stderr) => {
        resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}
