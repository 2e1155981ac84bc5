import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { AuditRecordJson } from './record.js';
import {
  type AuditVerification,
  type ChainEntry,
  type CheckpointSigner,
  checkpointOf,
  parseStoredRecord,
  trustedKeys,
  verifyAuditChain,
} from './checkpoints.js';
import type { AuditCheckpoint, AuditEntry, AuditHead } from '../store/store.js';

/**
 * The audit export (`GET /audit/export`, `keybrake audit export`): JSON Lines, so any size streams.
 *
 *   line 1   {"type":"keybrake.audit.export","version":1,"exported_at":…,"records":N,"head":…,
 *             "public_keys":[{"key_id":…,"pem":…}]}
 *   then     {"type":"checkpoint","records":…,"head":…,"at":…,"key_id":…,"signature":…}  × M
 *   then     {"type":"record","seq":…,"prev_hash":…,"hash":…,"record":{…the calls entry…}}  × N
 *
 * `keybrake audit verify-export` checks it with no proxy and no store: the same chain and
 * checkpoint verification as `GET /audit/verify`, against public keys the auditor pins.
 */
export const EXPORT_TYPE = 'keybrake.audit.export';

export interface AuditExportHeader {
  readonly type: typeof EXPORT_TYPE;
  readonly version: 1;
  readonly exported_at: string;
  readonly records: number;
  readonly head: string;
  readonly public_keys: readonly { readonly key_id: string; readonly pem: string }[];
}

export function auditExportHeader(head: AuditHead, signer: CheckpointSigner, exportedAt: string): AuditExportHeader {
  return {
    type: EXPORT_TYPE,
    version: 1,
    exported_at: exportedAt,
    records: head.records,
    head: head.head,
    public_keys: [{ key_id: signer.keyId, pem: signer.publicKeyPem() }],
  };
}

/** A record line: the record as parsed (or its raw text when it is not JSON, which fails verification). */
export function exportRecordLine(entry: AuditEntry): Record<string, unknown> {
  return {
    type: 'record',
    seq: entry.seq,
    prev_hash: entry.prevHash,
    hash: entry.hash,
    record: parseStoredRecord(entry.record) ?? entry.record,
  };
}

/** An export that cannot be read as one. */
export class AuditExportError extends Error {
  override readonly name = 'AuditExportError';
}

/** Options of {@link verifyExportFile}. */
export interface VerifyExportOptions {
  /** SPKI PEM public keys to trust. Empty: trust the keys the export names (not pinned). */
  readonly publicKeyPems: readonly string[];
  /** Checkpoints the auditor holds from elsewhere (the proxy's log): the export must contain them. */
  readonly extraCheckpoints: readonly AuditCheckpoint[];
}

export type ExportVerification = AuditVerification & {
  /** False when the keys came from the export itself, which proves consistency but not origin. */
  readonly keysPinned: boolean;
  readonly exportedAt: string;
};

function parseLine(line: string, lineNumber: number): Record<string, unknown> {
  try {
    const value = JSON.parse(line) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw new AuditExportError(`line ${lineNumber}: not a JSON object`);
}

/**
 * Every checkpoint in a text of JSON lines: checkpoint objects, export checkpoint lines, or the
 * proxy's own log lines (`"msg":"audit checkpoint"`). Other lines are skipped.
 */
export function checkpointsFromText(text: string): AuditCheckpoint[] {
  const found: AuditCheckpoint[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim().startsWith('{')) continue;
    let value: Record<string, unknown>;
    try {
      value = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const candidate = (value.checkpoint as Record<string, unknown> | undefined) ?? value;
    const checkpoint = candidate && typeof candidate === 'object' ? checkpointOf(candidate) : undefined;
    if (checkpoint) found.push(checkpoint);
  }
  return found;
}

/** Verifies an export file offline: the chain, every checkpoint in it and every checkpoint given. */
export async function verifyExportFile(path: string, options: VerifyExportOptions): Promise<ExportVerification> {
  const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
  const iterator = lines[Symbol.asyncIterator]();
  try {
    const first = await iterator.next();
    if (first.done) throw new AuditExportError('the file is empty');
    const header = parseLine(first.value, 1);
    if (header.type !== EXPORT_TYPE || header.version !== 1) {
      throw new AuditExportError(`line 1: not a ${EXPORT_TYPE} version 1 header`);
    }
    const exportedKeys = Array.isArray(header.public_keys)
      ? (header.public_keys as { pem?: unknown }[]).map((key) => String(key.pem))
      : [];
    const keysPinned = options.publicKeyPems.length > 0;
    const trusted = trustedKeys(keysPinned ? options.publicKeyPems : exportedKeys);

    // The checkpoints come before the records, so the records are checked as they stream.
    const checkpoints: AuditCheckpoint[] = [...options.extraCheckpoints];
    let lineNumber = 1;
    let firstRecord: Record<string, unknown> | undefined;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      lineNumber += 1;
      if (next.value.trim() === '') continue;
      const line = parseLine(next.value, lineNumber);
      if (line.type === 'record') {
        firstRecord = line;
        break;
      }
      const checkpoint = line.type === 'checkpoint' ? checkpointOf(line) : undefined;
      if (!checkpoint) throw new AuditExportError(`line ${lineNumber}: expected a checkpoint or a record`);
      checkpoints.push(checkpoint);
    }
    const toEntry = (line: Record<string, unknown>): ChainEntry => ({
      seq: Number(line.seq),
      record: line.record && typeof line.record === 'object' ? (line.record as AuditRecordJson) : undefined,
      prevHash: String(line.prev_hash),
      hash: String(line.hash),
    });
    async function* entries(): AsyncGenerator<ChainEntry> {
      if (!firstRecord) return;
      yield toEntry(firstRecord);
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        lineNumber += 1;
        if (next.value.trim() === '') continue;
        const line = parseLine(next.value, lineNumber);
        if (line.type !== 'record') throw new AuditExportError(`line ${lineNumber}: expected a record`);
        yield toEntry(line);
      }
    }
    const head = { records: Number(header.records), head: String(header.head) };
    const result = await verifyAuditChain({
      head,
      entries: entries(),
      checkpoints,
      trusted,
      rejectUntrusted: keysPinned,
    });
    return { ...result, keysPinned, exportedAt: String(header.exported_at) };
  } finally {
    lines.close();
  }
}
