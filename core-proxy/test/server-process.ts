import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, onTestFinished } from 'vitest';
import { newSecrets } from './helpers.js';

/** The built CLI: `pnpm test` builds before running the suite. */
export const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/** A `keybrake serve` process, as `pnpm serve` runs it. */
export interface ServerProcess {
  readonly url: string;
  readonly child: ChildProcess;
  /** Everything the process wrote to stdout and stderr. */
  output(): string;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | string>;
}

/** Stops the server with `signal` unless it has ended already, and waits until it has. */
export async function stopServer(server: ServerProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    server.child.kill(signal);
    await server.exited;
  }
}

/** How to start the server. @default `node dist/cli.js serve` in this folder */
export interface SpawnOptions {
  readonly command?: readonly [string, ...string[]];
  readonly cwd?: string;
}

/** What a spawned server of one deployment is started with; replicas of the deployment share it. */
export interface ServerEnvironment {
  /** The issuer key (`KEYBRAKE_API_KEYS`). */
  readonly apiKey: string;
  /** The vendor secrets, fresh ones, to search the output for. */
  readonly secrets: Record<string, string>;
  /** The embedded store's folder, removed after the test. */
  readonly dataDir: string;
  /** The whole environment for {@link spawnServer}. */
  readonly env: Record<string, string>;
}

/** A fresh issuer key, fresh vendor secrets and a temporary data folder, plus `extra`. */
export function serverEnvironment(extra: Record<string, string> = {}): ServerEnvironment {
  const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-server-'));
  onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
  const secrets = newSecrets();
  const apiKey = `kb_admin_${randomUUID()}`;
  return {
    apiKey,
    secrets,
    dataDir,
    env: { ...secrets, KEYBRAKE_API_KEYS: apiKey, KEYBRAKE_DATA_DIR: dataDir, ...extra },
  };
}

/** Starts the server on a free port and waits until it listens. */
export async function spawnServer(env: Record<string, string>, options: SpawnOptions = {}): Promise<ServerProcess> {
  const [command, ...args] = options.command ?? [process.execPath, CLI, 'serve'];
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', KEYBRAKE_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearInterval(timer);
        resolve(match[1] as string);
      }
    }, 20);
    void exited.then(() => {
      clearInterval(timer);
      reject(new Error(`keybrake serve exited early:\n${output}`));
    });
  });
  return { url, child, output: () => output, exited };
}

/** Asserts that no secret appears in a process's output. */
export function expectNoLeak(output: string, secrets: readonly string[]): void {
  for (const secret of secrets) expect(output.includes(secret), 'server output leaks a secret').toBe(false);
}
