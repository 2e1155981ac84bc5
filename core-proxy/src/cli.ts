#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.js';
import { startServer } from './server.js';

const USAGE = `keybrake: credential-enforcement proxy for AI agents

  keybrake serve                          run the proxy (configuration from the environment)
  keybrake keys issue --vendor V --usd-cap N | --daily-usd-cap N
                      --allow "POST /v1/charges" [--allow ...] --expires-in 1h
                      [--label L] [--parent KEY_ID] [--tainted]
  keybrake keys show KEY_ID
  keybrake keys revoke KEY_ID
  keybrake calls KEY_ID
  keybrake audit verify

Client commands talk to KEYBRAKE_URL (default http://127.0.0.1:8080) with the issuer key
KEYBRAKE_API_KEY (or the first of KEYBRAKE_API_KEYS). They print the API's JSON answer and
exit 1 on an error answer.
`;

/** Exit code of a command whose API call was refused (4xx/5xx). */
const EXIT_REFUSED = 1;
/** Exit code of a command used wrongly. */
const EXIT_USAGE = 2;

class UsageError extends Error {}

async function callAdmin(method: string, path: string, body?: unknown): Promise<number> {
  const env = process.env;
  const baseUrl = (
    env.KEYBRAKE_URL ?? `http://${env.KEYBRAKE_HOST ?? '127.0.0.1'}:${env.KEYBRAKE_PORT ?? '8080'}`
  ).replace(/\/+$/, '');
  const apiKey = env.KEYBRAKE_API_KEY ?? env.KEYBRAKE_API_KEYS?.split(',')[0]?.trim();
  if (!apiKey) throw new UsageError('Set KEYBRAKE_API_KEY to an issuer key.');
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${apiKey}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
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

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  switch (`${command ?? ''} ${command === 'keys' || command === 'audit' ? (sub ?? '') : ''}`.trim()) {
    case 'serve':
      await startServer(loadConfig());
      return -1; // keeps running until a signal
    case 'keys issue':
      return issue(rest);
    case 'keys show':
      return callAdmin('GET', `/vault/keys/${keyId(rest)}`);
    case 'keys revoke':
      return callAdmin('DELETE', `/vault/keys/${keyId(rest)}`);
    case 'calls':
      return callAdmin('GET', `/vault/keys/${keyId(sub ? [sub] : [])}/calls`);
    case 'audit verify':
      return callAdmin('GET', '/audit/verify');
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
