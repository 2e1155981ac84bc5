import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('pnpm serve (the contract entry point, from the repository root)', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('starts on the embedded store and stops cleanly on %s', async (signal) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-serve-'));
    onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
    const child = spawn('pnpm', ['serve'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        KEYBRAKE_PORT: '0',
        KEYBRAKE_DATA_DIR: dataDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
        if (match) {
          clearInterval(timer);
          resolve(match[1] as string);
        }
      }, 50);
      void exited.then(() => reject(new Error(output)));
    });
    // Dev mode: no KEYBRAKE_API_KEYS, so an issuer key was generated, printed and works.
    const issuerKey = /dev-issuer-key:\s+(kb_admin_\S+)/.exec(output)?.[1];
    expect(issuerKey).toBeDefined();
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect((await fetch(`${url}/audit/verify`, { headers: { authorization: `Bearer ${issuerKey}` } })).status).toBe(
      200,
    );
    child.kill(signal);
    expect(await exited).toBe(0);
  });
});
