#!/usr/bin/env node
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseArgs } from 'node:util';
import { CheckpointSigner, trustedKeys, verificationJson } from './audit/checkpoints.js';
import { AuditExportError, checkpointsFromText, verifyExportFile } from './audit/export.js';
import { parseArchiveTarget } from './archive/archive-config.js';
import { openSink } from './archive/open-sink.js';
import type { ArchiveSink } from './archive/sink.js';
import { archiveFailureJson, verifyArchive } from './archive/verify.js';
import { ConfigError, loadConfig } from './config.js';
import { serve } from './http/workers.js';

const USAGE = `keybrake: credential-enforcement proxy for AI agents

  keybrake serve [--workers N]            run the proxy (configuration from the environment);
                                          --workers (KEYBRAKE_WORKERS): N processes on one port
                                          and one data directory
  keybrake keys issue --vendor V --usd-cap N | --daily-usd-cap N
                      --allow "POST /v1/charges" [--allow ...] --expires-in 1h
                      [--label L] [--parent KEY_ID] [--tainted]
  keybrake keys show KEY_ID
  keybrake keys revoke KEY_ID
  keybrake calls KEY_ID
  keybrake audit verify                   verify the chain from genesis through the archive to the
                                          live head, and every signed checkpoint (on the proxy);
                                          exit 1 when it does not verify
  keybrake audit checkpoints              the signing public key and every checkpoint
  keybrake audit export [--out FILE]      the whole audit log as JSON Lines, for an auditor
  keybrake audit verify-export FILE [--public-key PEM_FILE]... [--checkpoints FILE]...
                                          verify an export offline: no proxy, no store. Pin the
                                          proxy's public key; --checkpoints takes checkpoints kept
                                          elsewhere (e.g. the proxy's log) that the export must hold
  keybrake audit verify-archive --sink dir:/path|s3://bucket/prefix --public-key PEM_FILE
                      [--public-key PEM_FILE]... [--checkpoints FILE]...
                                          verify an archive offline: every segment, in order, from
                                          genesis, against the pinned key; --checkpoints (e.g. the
                                          proxy's log) proves the newest segments are all there.
                                          S3 credentials from the standard AWS environment;
                                          KEYBRAKE_ARCHIVE_S3_ENDPOINT/_REGION/_PATH_STYLE as for serve.
                                          Exit 0 verified, 1 not verified or unreadable, 2 usage
  keybrake audit keygen --out FILE        a new Ed25519 signing key (PKCS#8 PEM, mode 0600) for
                                          KEYBRAKE_AUDIT_SIGNING_KEY_FILE; prints its public key

Client commands (all but serve, verify-export, verify-archive and keygen) talk to KEYBRAKE_URL (default http://127.0.0.1:8080) with the issuer key
KEYBRAKE_API_KEY (or the first of KEYBRAKE_API_KEYS). They print the API's JSON answer and
exit 1 on an error answer.
`;

/** Exit code of a command whose API call was refused (4xx/5xx). */
const EXIT_REFUSED = 1;
/** Exit code of a command used wrongly. */
const EXIT_USAGE = 2;

class UsageError extends Error {}

function adminRequest(method: string, path: string, body?: unknown): Promise<Response> {
  const env = process.env;
  const baseUrl = (
    env.KEYBRAKE_URL ?? `http://${env.KEYBRAKE_HOST ?? '127.0.0.1'}:${env.KEYBRAKE_PORT ?? '8080'}`
  ).replace(/\/+$/, '');
  const apiKey = env.KEYBRAKE_API_KEY ?? env.KEYBRAKE_API_KEYS?.split(',')[0]?.trim();
  if (!apiKey) throw new UsageError('Set KEYBRAKE_API_KEY to an issuer key.');
  return fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function callAdmin(method: string, path: string, body?: unknown): Promise<number> {
  const response = await adminRequest(method, path, body);
  const text = await response.text();
  let output = text;
  try {
    output = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // not JSON: print as it came
  }
  (response.ok ? process.stdout : process.stderr).write(`${output}\n`);
  return response.ok ? 0 : EXIT_REFUSED;
}

function cap(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new UsageError(`${flag} must be a number.`);
  return value;
}

async function issue(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      vendor: { type: 'string' },
      'usd-cap': { type: 'string' },
      'daily-usd-cap': { type: 'string' },
      allow: { type: 'string', multiple: true },
      'expires-in': { type: 'string' },
      label: { type: 'string' },
      parent: { type: 'string' },
      tainted: { type: 'boolean' },
    },
  });
  const expiresIn = values['expires-in'];
  return callAdmin('POST', '/vault/keys', {
    vendor: values.vendor,
    usd_cap: cap(values['usd-cap'], '--usd-cap'),
    daily_usd_cap: cap(values['daily-usd-cap'], '--daily-usd-cap'),
    allowed_endpoints: values.allow,
    expires_in: expiresIn !== undefined && /^\d+$/.test(expiresIn) ? Number(expiresIn) : expiresIn,
    agent_run_label: values.label,
    parent_key_id: values.parent,
    tainted: values.tainted,
  });
}

function keyId(args: string[]): string {
  const id = args[0];
  if (!id) throw new UsageError('A KEY_ID is required.');
  return encodeURIComponent(id);
}

async function exportAudit(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: 'string' } } });
  const response = await adminRequest('GET', '/audit/export');
  if (!response.ok || !response.body) {
    process.stderr.write(`${await response.text()}\n`);
    return EXIT_REFUSED;
  }
  const out = values.out ? createWriteStream(values.out, { mode: 0o600 }) : process.stdout;
  await pipeline(Readable.fromWeb(response.body as WebReadableStream), out);
  return 0;
}

async function verifyExport(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { 'public-key': { type: 'string', multiple: true }, checkpoints: { type: 'string', multiple: true } },
  });
  const file = positionals[0];
  if (!file || positionals.length > 1) throw new UsageError('verify-export takes one export FILE.');
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      throw new UsageError(`Cannot read ${path}.`);
    }
  };
  let result;
  try {
    result = await verifyExportFile(file, {
      publicKeyPems: (values['public-key'] ?? []).map(read),
      extraCheckpoints: (values.checkpoints ?? []).flatMap((path) => checkpointsFromText(read(path))),
    });
  } catch (error) {
    if (error instanceof AuditExportError || (error as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`${JSON.stringify({ ok: false, error: (error as Error).message }, null, 2)}\n`);
      return EXIT_REFUSED;
    }
    throw error;
  }
  const output = result.ok
    ? { ...verificationJson(result), keys_pinned: result.keysPinned, exported_at: result.exportedAt }
    : verificationJson(result);
  (result.ok ? process.stdout : process.stderr).write(`${JSON.stringify(output, null, 2)}\n`);
  if (result.ok && !result.keysPinned) {
    process.stderr.write('keybrake: the public key came from the export itself; pin it with --public-key.\n');
  }
  return result.ok ? 0 : EXIT_REFUSED;
}

/** `audit verify`: the proxy's answer, exit 1 when the chain does not verify (a 200 with `ok: false`). */
async function verifyOnProxy(): Promise<number> {
  const response = await adminRequest('GET', '/audit/verify');
  const text = await response.text();
  let body: { ok?: unknown } | undefined;
  try {
    body = JSON.parse(text) as { ok?: unknown };
  } catch {
    // not JSON: printed as it came
  }
  const verified = response.ok && body?.ok === true;
  (verified ? process.stdout : process.stderr).write(`${body ? JSON.stringify(body, null, 2) : text}\n`);
  return verified ? 0 : EXIT_REFUSED;
}

/**
 * The sink an auditor names: `dir:/path` or `s3://bucket/prefix` (S3 credentials from the standard
 * AWS environment; `KEYBRAKE_ARCHIVE_S3_ENDPOINT`, `_REGION`, `_PATH_STYLE` as for `serve`).
 */
async function segmentSource(spec: string): Promise<ArchiveSink> {
  let target;
  try {
    target = parseArchiveTarget(spec, process.env);
  } catch (error) {
    throw new UsageError(`--sink must be dir:/path or s3://bucket/prefix: ${(error as Error).message}`);
  }
  const sink = target.kind === 'off' ? undefined : await openSink(target);
  if (!sink) throw new UsageError('--sink must be dir:/path or s3://bucket/prefix, not off.');
  return sink;
}

/** `audit verify-archive`: the archive alone, offline, against pinned keys. */
async function verifyArchiveOffline(args: string[]): Promise<number> {
  let values: { sink?: string; 'public-key'?: string[]; checkpoints?: string[] };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        sink: { type: 'string' },
        'public-key': { type: 'string', multiple: true },
        checkpoints: { type: 'string', multiple: true },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (!values.sink) throw new UsageError('verify-archive needs --sink dir:/path or s3://bucket/prefix.');
  const pems = (values['public-key'] ?? []).map(readText);
  if (pems.length === 0)
    throw new UsageError('verify-archive needs --public-key PEM_FILE: the key the proxy signs with.');
  let trusted;
  try {
    trusted = trustedKeys(pems);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const checkpoints = (values.checkpoints ?? []).flatMap((path) => checkpointsFromText(readText(path)));
  const source = await segmentSource(values.sink);
  let result;
  try {
    result = await verifyArchive({ source, trusted, checkpoints, rejectUntrusted: true });
  } finally {
    await source.close();
  }
  const output = result.ok
    ? {
        ok: true,
        records: result.records,
        head: result.head,
        segments: result.segments,
        checkpoints: result.checkpoints,
        archive: source.describe(),
        // The newest checkpoint given, which the archive reaches: without one at the proxy's
        // head nothing shows that the newest segments are all there.
        newest_given_checkpoint: checkpoints.reduce((newest, checkpoint) => Math.max(newest, checkpoint.records), 0),
      }
    : { ...archiveFailureJson(result), archive: source.describe() };
  (result.ok ? process.stdout : process.stderr).write(`${JSON.stringify(output, null, 2)}\n`);
  if (result.ok && checkpoints.length === 0) {
    process.stderr.write(
      'keybrake: nothing here proves the newest segments are all there; add --checkpoints FILE with a later checkpoint (the proxy log).\n',
    );
  }
  return result.ok ? 0 : EXIT_REFUSED;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new UsageError(`Cannot read ${path}.`);
  }
}

function keygen(args: string[]): number {
  const { values } = parseArgs({ args, options: { out: { type: 'string' } } });
  if (!values.out) throw new UsageError('keygen needs --out FILE (the private key is never printed).');
  const pem = CheckpointSigner.generatePem();
  writeFileSync(values.out, pem, { mode: 0o600, flag: 'wx' });
  const signer = CheckpointSigner.fromPem(pem);
  process.stdout.write(`key_id ${signer.keyId}\n${signer.publicKeyPem()}`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  switch (`${command ?? ''} ${command === 'keys' || command === 'audit' ? (sub ?? '') : ''}`.trim()) {
    case 'serve': {
      let values: { workers?: string };
      try {
        ({ values } = parseArgs({ args: argv.slice(1), options: { workers: { type: 'string' } } }));
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      const env = values.workers === undefined ? process.env : { ...process.env, KEYBRAKE_WORKERS: values.workers };
      await serve(loadConfig(env));
      return -1; // keeps running until a signal
    }
    case 'keys issue':
      return issue(rest);
    case 'keys show':
      return callAdmin('GET', `/vault/keys/${keyId(rest)}`);
    case 'keys revoke':
      return callAdmin('DELETE', `/vault/keys/${keyId(rest)}`);
    case 'calls':
      return callAdmin('GET', `/vault/keys/${keyId(sub ? [sub] : [])}/calls`);
    case 'audit verify':
      return verifyOnProxy();
    case 'audit verify-archive':
      return verifyArchiveOffline(rest);
    case 'audit checkpoints':
      return callAdmin('GET', '/audit/checkpoints');
    case 'audit export':
      return exportAudit(rest);
    case 'audit verify-export':
      return verifyExport(rest);
    case 'audit keygen':
      return keygen(rest);
    case 'help':
    case '--help':
    case '':
      process.stdout.write(USAGE);
      return command ? 0 : EXIT_USAGE;
    default:
      throw new UsageError(`Unknown command: ${argv.join(' ')}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError || error instanceof ConfigError) {
      process.stderr.write(`keybrake: ${error.message}\n\n${error instanceof UsageError ? USAGE : ''}`);
      process.exitCode = EXIT_USAGE;
    } else {
      process.stderr.write(`keybrake: ${(error as Error).message}\n`);
      process.exitCode = EXIT_REFUSED;
    }
  },
);
