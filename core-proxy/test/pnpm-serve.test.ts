import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { spawnServer } from './server-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

describe('pnpm serve (the contract entry point, from the repository root)', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('starts on the embedded store and stops cleanly on %s', async (signal) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-serve-'));
    onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
    const server = await spawnServer({ KEYBRAKE_DATA_DIR: dataDir }, { command: ['pnpm', 'serve'], cwd: ROOT });
    // Dev mode: no KEYBRAKE_API_KEYS, so an issuer key was generated, printed and works.
    const issuerKey = /dev-issuer-key:\s+(kb_admin_\S+)/.exec(server.output())?.[1];
    expect(issuerKey).toBeDefined();
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
    const verify = await fetch(`${server.url}/audit/verify`, { headers: { authorization: `Bearer ${issuerKey}` } });
    expect(verify.status).toBe(200);
    server.child.kill(signal);
    expect(await server.exited).toBe(0);
  });
});
