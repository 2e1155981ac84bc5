import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { TEST_STORE } from './helpers.js';
import { freePort } from './ports.js';
import { CLI, expectNoLeak, serverEnvironment, spawnServer } from './server-process.js';

/**
 * The contract ("Starting it"): `pnpm serve` runs in the foreground and stops cleanly on SIGTERM
 * and SIGINT. An acceptance test, a log collector that stalls, Kubernetes or systemd may hold the
 * proxy's stdout as a pipe nobody reads. The proxy used to log through pino's synchronous
 * destination: once the pipe was full its main thread sat in that write (or in sonic-boom's
 * EAGAIN retry loop), so it answered nothing and never ran its signal handler.
 *
 * Each case here starts the proxy with stdout (or stderr) a pipe the test never reads: a pipe of
 * Node's own (`stdio: 'pipe'`, which Node makes a socket pair) or a real kernel pipe (a FIFO)
 * filled to the brim before the proxy starts. It drives requests until the proxy reports log lines
 * dropped (so its log output is stalled beyond its bound), sends the signal and waits for the
 * exit: 0, with its store closed, so a second `serve` on the same store starts and verifies the
 * audit chain. Nothing is timed: a proxy that cannot stop fails by the test's timeout.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** A small log buffer, so that a few hundred requests are past it. */
const LOG_BUFFER_BYTES = 16 * 1024;

/** A FIFO whose read end the test holds and never reads, full before the proxy starts if `full`. */
function unreadPipe(full: boolean): { writeFd: number; capacity: number } {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-fifo-'));
  const path = join(dir, 'out');
  execFileSync('mkfifo', [path]);
  const readFd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  // Filled through a non-blocking description of its own; the proxy gets a blocking one, as a shell's `|` would give it.
  const fillFd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const writeFd = openSync(path, constants.O_WRONLY);
  const chunk = Buffer.from(`${'{"filler":true}'.padEnd(127, ' ')}\n`);
  let capacity = 0;
  while (full) {
    try {
      capacity += writeSync(fillFd, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw error;
    }
  }
  closeSync(fillFd);
  onTestFinished(() => {
    closeSync(writeFd);
    closeSync(readFd);
    rmSync(dir, { recursive: true, force: true });
  });
  return { writeFd, capacity };
}

/** The store of this project's runs: a fresh Redis prefix on the `redis` project, the data folder otherwise. */
function storeEnv(): Record<string, string> {
  return TEST_STORE === 'redis'
    ? { KEYBRAKE_REDIS_URL: inject('redisUrl'), KEYBRAKE_REDIS_PREFIX: `t:${randomUUID()}:` }
    : {};
}

interface Unread {
  /** Which stream the test never reads. */
  readonly stream: 'stdout' | 'stderr';
  /** Node's own pipe (a socket pair), a FIFO, or a FIFO full before the proxy starts. */
  readonly pipe: 'node' | 'fifo' | 'full fifo';
}

interface Started {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<number | string>;
  /** What the proxy wrote to the stream the test reads. */
  readonly read: () => string;
}

/** Starts the proxy on a known port with one of its streams unread, and waits until it answers `/readyz`. */
async function startUnread(
  command: readonly [string, ...string[]],
  env: Record<string, string>,
  unread: Unread,
): Promise<Started> {
  const port = await freePort();
  const unreadStdio = unread.pipe === 'node' ? 'pipe' : unreadPipe(unread.pipe === 'full fifo').writeFd;
  const stdio: ['ignore', 'pipe' | number, 'pipe' | number] =
    unread.stream === 'stdout' ? ['ignore', unreadStdio, 'pipe'] : ['ignore', 'pipe', unreadStdio];
  const [file, ...args] = command;
  const child = spawn(file, args, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      ...env,
      KEYBRAKE_HOST: '127.0.0.1',
      KEYBRAKE_PORT: String(port),
    },
    stdio,
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let read = '';
  const readStream = unread.stream === 'stdout' ? child.stderr : child.stdout;
  readStream?.on('data', (chunk: Buffer) => (read += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  let ended = false;
  void exited.then(() => (ended = true));
  for (;;) {
    if (ended) throw new Error(`keybrake serve exited early:\n${read}`);
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break;
    } catch {
      // Not listening yet.
    }
    await sleep(50);
  }
  return { child, url, exited, read: () => read };
}

/** `keybrake_log_lines_dropped_total` of the process that answered this scrape. */
async function droppedLines(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = /^keybrake_log_lines_dropped_total (\d+)/m.exec(text);
  return match ? Number(match[1]) : 0;
}

/**
 * Requests (each logs two lines, of 150 bytes and more) until the process that answers reports
 * dropped log lines; the count sent. With `--workers` the primary writes stdout (and counts what
 * it drops): there, into a pipe full from the start, four times the log buffer's worth.
 */
async function driveUntilDropped(url: string, droppedInPrimary: boolean): Promise<number> {
  let sent = 0;
  while (droppedInPrimary ? sent * 2 * 150 < 4 * LOG_BUFFER_BYTES : (await droppedLines(url)) === 0) {
    await Promise.all(
      Array.from({ length: 25 }, async () => {
        const response = await fetch(`${url}/healthz`);
        expect(response.status).toBe(200);
        await response.arrayBuffer();
      }),
    );
    sent += 25;
  }
  return sent;
}

/** A second `serve` on the same store starts and verifies the audit chain, then stops cleanly. */
async function expectStoreReopens(env: Record<string, string>, apiKey: string): Promise<void> {
  const again = await spawnServer(env);
  const verify = await fetch(`${again.url}/audit/verify`, { headers: { authorization: `Bearer ${apiKey}` } });
  expect(verify.status, again.output()).toBe(200);
  expect(((await verify.json()) as { ok?: unknown }).ok).toBe(true);
  again.child.kill('SIGTERM');
  expect(await again.exited, again.output()).toBe(0);
}

describe('contract: serve stops on SIGTERM/SIGINT with stdout unread', () => {
  const cases: readonly { name: string; command: readonly [string, ...string[]]; unread: Unread }[] = [
    // pnpm prints its `> keybrake@ serve` header before the proxy starts, and waits at its exit for a
    // header it could not write: its pipe starts empty here, as an acceptance test's would.
    { name: 'pnpm serve, FIFO', command: ['pnpm', 'serve'], unread: { stream: 'stdout', pipe: 'fifo' } },
    {
      name: 'keybrake serve --workers 2, full FIFO',
      command: [process.execPath, CLI, 'serve', '--workers', '2'],
      unread: { stream: 'stdout', pipe: 'full fifo' },
    },
    {
      name: 'keybrake serve, Node pipe',
      command: [process.execPath, CLI, 'serve'],
      unread: { stream: 'stdout', pipe: 'node' },
    },
    {
      name: 'keybrake serve, full FIFO',
      command: [process.execPath, CLI, 'serve'],
      unread: { stream: 'stdout', pipe: 'full fifo' },
    },
  ];
  for (const { name, command, unread } of cases) {
    it.each(['SIGTERM', 'SIGINT'] as const)(`${name}: exits 0 on %s and its store reopens`, async (signal) => {
      const environment = serverEnvironment({ ...storeEnv(), KEYBRAKE_LOG_BUFFER_BYTES: String(LOG_BUFFER_BYTES) });
      const server = await startUnread(command, environment.env, unread);
      const sent = await driveUntilDropped(server.url, command.includes('--workers'));
      expect(sent).toBeGreaterThan(0);
      // Calls are still answered with the log stalled: the proxy is not waiting on its stdout.
      const verify = await fetch(`${server.url}/audit/verify`, {
        headers: { authorization: `Bearer ${environment.apiKey}` },
      });
      expect(verify.status).toBe(200);
      server.child.kill(signal);
      expect(await server.exited, server.read()).toBe(0);
      if (unread.pipe === 'node' && server.child.stdout) {
        // Read now: what did reach the pipe carries no secret.
        let logged = '';
        server.child.stdout.on('data', (chunk: Buffer) => (logged += chunk.toString()));
        await new Promise((resolve) => server.child.stdout?.once('close', resolve));
        expect(logged).toContain('"msg":"incoming request"');
        expectNoLeak(logged, [...Object.values(environment.secrets), environment.apiKey]);
      }
      expectNoLeak(server.read(), [...Object.values(environment.secrets), environment.apiKey]);
      await expectStoreReopens(environment.env, environment.apiKey);
    });
  }

  it('keybrake serve in dev mode, stderr a full FIFO (its issuer key goes there): exits 0 on SIGTERM', async () => {
    const environment = serverEnvironment(storeEnv());
    const devEnv = { ...environment.env };
    delete devEnv.KEYBRAKE_API_KEYS;
    const server = await startUnread([process.execPath, CLI, 'serve'], devEnv, { stream: 'stderr', pipe: 'full fifo' });
    const issuerKey = readFileSync(join(environment.dataDir, 'dev-issuer-key'), 'utf8').trim();
    const verify = await fetch(`${server.url}/audit/verify`, { headers: { authorization: `Bearer ${issuerKey}` } });
    expect(verify.status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited, server.read()).toBe(0);
    expect(server.read()).toContain('draining in-flight calls');
    await expectStoreReopens(devEnv, issuerKey);
  });
});
