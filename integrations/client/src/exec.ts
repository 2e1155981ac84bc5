import { spawn } from 'node:child_process';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { constants as osConstants } from 'node:os';
import { CAP_HIT_HEADER } from './cap-hit.js';
import {
  KEYBRAKE_EXIT_CODE_MAX,
  KEYBRAKE_EXIT_CODE_MIN,
  KEYBRAKE_EXIT_CODES,
  LIMIT_REFUSED_EXIT_CODE,
} from './exit-codes.js';
import { LIMIT_REFUSALS } from './limit-refusal.js';
import { deriveIdempotencyKey } from './idempotency.js';
import { ERROR_HEADER, TERMINAL_REFUSALS, type TerminalRefusal } from './refusal.js';

/** Options of {@link runExec}. */
export interface ExecOptions {
  /** The program to run and its arguments. */
  readonly command: readonly [string, ...string[]];
  /** The Keybrake proxy the program's vendor calls go to, e.g. `http://keybrake.keybrake.svc:8080`. */
  readonly proxyUrl: string;
  /** The vault key, handed to the program as `KEYBRAKE_VAULT_KEY`. */
  readonly vaultKey?: string;
  /**
   * Parts of the call's identity (in Argo: `{{workflow.uid}}`, `{{steps.name}}`, `{{item}}`);
   * the program gets `KEYBRAKE_IDEMPOTENCY_KEY = deriveIdempotencyKey(parts)`. Without them an
   * inherited `KEYBRAKE_IDEMPOTENCY_KEY` is passed on unchanged.
   */
  readonly idempotencyParts?: readonly string[];
  /** The program's environment before Keybrake's variables are set. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Where exec reports why it chose an exit code. @default process.stderr */
  readonly report?: (line: string) => void;
  /**
   * Issue 26: the longest `Retry-After` exec waits, after a limit refusal, before it exits 82 (so
   * that the engine's retry comes after it). @default 300
   */
  readonly maxRetryAfterS?: number;
}

/** What {@link runExec} ended with. */
export interface ExecOutcome {
  /** The exit code to end with (see {@link runExec}). */
  readonly exitCode: number;
  /** The last final Keybrake refusal the program met, if any. */
  readonly refusal: TerminalRefusal | undefined;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

function isTerminal(code: string | undefined): code is TerminalRefusal {
  return code !== undefined && (TERMINAL_REFUSALS as readonly string[]).includes(code);
}

function firstHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * A loopback relay in front of the proxy: the program's calls pass through it unchanged, and it
 * notes every final refusal the proxy gives (`X-Keybrake-Error`, `X-Keybrake-Cap-Hit`), whatever
 * SDK or language the program uses.
 */
async function startRelay(
  proxyUrl: string,
  onRefusal: (code: TerminalRefusal) => void,
  onLimit: (retryAfterS: number) => void,
): Promise<Server> {
  const target = new URL(proxyUrl);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  const basePath = target.pathname.replace(/\/+$/, '');
  const server = createServer((incoming, outgoing) => {
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
    }
    headers.host = target.host;
    const upstream = send(
      {
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        method: incoming.method,
        path: `${basePath}${incoming.url ?? '/'}`,
        headers,
      },
      (answer) => {
        const code = firstHeader(answer.headers, ERROR_HEADER);
        if (isTerminal(code)) onRefusal(code);
        else if (firstHeader(answer.headers, CAP_HIT_HEADER) === 'true') onRefusal('cap_exhausted');
        else if (code !== undefined && (LIMIT_REFUSALS as readonly string[]).includes(code)) {
          onLimit(Number(firstHeader(answer.headers, 'retry-after')) || 1);
        }
        const back: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) back[name] = value;
        }
        outgoing.writeHead(answer.statusCode ?? 502, back);
        answer.pipe(outgoing);
      },
    );
    upstream.on('error', () => {
      // Not the proxy's refusal: the program sees a 502, which its own retry logic may retry.
      if (!outgoing.headersSent) {
        outgoing.writeHead(502, { 'content-type': 'application/json' });
        outgoing.end(
          JSON.stringify({ error: { code: 'proxy_unreachable', message: 'keybrake-exec could not reach the proxy' } }),
        );
      } else outgoing.destroy();
    });
    incoming.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return server;
}

/**
 * Runs a program with what it needs to call vendors through Keybrake, and maps a final refusal
 * to an exit code. The program gets, besides its own environment:
 * - `KEYBRAKE_PROXY_URL`: a loopback relay to the proxy (point the vendor SDK's base URL at it);
 * - `KEYBRAKE_VAULT_KEY`: the vault key (use it as the vendor key);
 * - `KEYBRAKE_IDEMPOTENCY_KEY`: derived from `idempotencyParts` (or inherited).
 *
 * The exit code: 0 if the program exits 0; the program's own code if it is already one of
 * {@link KEYBRAKE_EXIT_CODES}; the code of the last final refusal the proxy gave the program if
 * it exits non-zero after one (a cap hit is 75: the program need not know the convention);
 * otherwise, if the proxy refused one of its calls by a request or concurrency limit (issue 26:
 * transient), 82 ({@link LIMIT_REFUSED_EXIT_CODE}), after waiting that refusal's `Retry-After` so
 * the engine's retry comes after it; otherwise the program's code (128 + signal number if a
 * signal ended it; 127 if it could not be started). A final refusal always wins over a limit one.
 */
export async function runExec(options: ExecOptions): Promise<ExecOutcome> {
  const report = options.report ?? ((line: string) => process.stderr.write(`${line}\n`));
  let refusal: TerminalRefusal | undefined;
  let limitRetryAfterS: number | undefined;
  const relay = await startRelay(
    options.proxyUrl,
    (code) => {
      refusal = code;
    },
    (retryAfterS) => {
      limitRetryAfterS = retryAfterS;
    },
  );
  try {
    const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
    env.KEYBRAKE_PROXY_URL = `http://127.0.0.1:${(relay.address() as AddressInfo).port}`;
    if (options.vaultKey !== undefined) env.KEYBRAKE_VAULT_KEY = options.vaultKey;
    if (options.idempotencyParts !== undefined && options.idempotencyParts.length > 0) {
      env.KEYBRAKE_IDEMPOTENCY_KEY = deriveIdempotencyKey(options.idempotencyParts);
    }
    const [program, ...args] = options.command;
    const child = spawn(program, args, { env, stdio: 'inherit' });
    const forward = (signal: NodeJS.Signals): void => {
      child.kill(signal);
    };
    process.on('SIGTERM', forward);
    process.on('SIGINT', forward);
    const ended = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
      (resolve) => {
        child.once('error', (error) => resolve({ code: null, signal: null, error }));
        child.once('exit', (code, signal) => resolve({ code, signal }));
      },
    );
    process.off('SIGTERM', forward);
    process.off('SIGINT', forward);
    if (ended.error !== undefined) {
      report(`keybrake-exec: could not start ${program}: ${ended.error.message}`);
      return { exitCode: 127, refusal };
    }
    const own = ended.signal !== null ? 128 + (osConstants.signals[ended.signal] ?? 0) : (ended.code ?? 1);
    if (own === 0) return { exitCode: 0, refusal };
    if (own >= KEYBRAKE_EXIT_CODE_MIN && own <= KEYBRAKE_EXIT_CODE_MAX) return { exitCode: own, refusal };
    if (refusal !== undefined) {
      const exitCode = KEYBRAKE_EXIT_CODES[refusal];
      report(`keybrake-exec: ${program} exited ${own} after Keybrake refused a call (${refusal}); exiting ${exitCode}`);
      return { exitCode, refusal };
    }
    if (limitRetryAfterS !== undefined) {
      const waitS = Math.min(limitRetryAfterS, options.maxRetryAfterS ?? 300);
      report(
        `keybrake-exec: ${program} exited ${own} after a Keybrake limit refused a call; waiting its Retry-After (${waitS} s), exiting ${LIMIT_REFUSED_EXIT_CODE} (retried)`,
      );
      await new Promise((resolve) => setTimeout(resolve, waitS * 1000));
      return { exitCode: LIMIT_REFUSED_EXIT_CODE, refusal };
    }
    return { exitCode: own, refusal };
  } finally {
    relay.closeAllConnections();
    await new Promise<void>((resolve) => relay.close(() => resolve()));
  }
}
