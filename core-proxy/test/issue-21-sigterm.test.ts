import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch as undiciFetch } from 'undici';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { adminClient } from './helpers.js';
import { expectNoLeak, serverEnvironment, spawnServer } from './server-process.js';

/**
 * Issue 21: `keybrake serve` on the embedded store sometimes ignored SIGTERM, its main thread
 * waiting in a futex. Closing the store ended the WAL checkpointer thread with
 * `worker.terminate()`, which could land while the thread was inside a native better-sqlite3 call
 * (a checkpoint). The thread is now asked to stop and ends by itself between two steps. Each run
 * here puts a fresh server under write load until its checkpointer thread is checkpointing (the
 * WAL has passed the thread's 1,000 pages and been folded back), sends SIGTERM with the load still
 * running, and waits for the process to end: it must exit 0, having drained and closed its store.
 */

const RUNS = 8;
/** The checkpointer's threshold (`CHECKPOINT_MIN_PAGES` in sqlite-store.ts). */
const CHECKPOINT_MIN_PAGES = 1000;

/** Frames in the WAL: the wal-index header's `mxFrame` (offset 16 of `-shm`), 0 before it exists. */
function walFrames(databasePath: string): number {
  if (!existsSync(`${databasePath}-shm`)) return 0;
  const fd = openSync(`${databasePath}-shm`, 'r');
  try {
    const header = Buffer.alloc(4);
    return readSync(fd, header, 0, 4, 16) === 4 ? header.readUInt32LE(0) : 0;
  } finally {
    closeSync(fd);
  }
}

describe('issue 21: keybrake serve exits on SIGTERM while its WAL checkpointer thread is busy (stripe-mock)', () => {
  it(`exits 0 on SIGTERM under write load, ${RUNS} times over`, { timeout: 600_000 }, async () => {
    for (let run = 0; run < RUNS; run += 1) {
      const environment = serverEnvironment({ KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl') });
      const server = await spawnServer(environment.env);
      onTestFinished(async () => {
        if (server.child.exitCode === null && server.child.signalCode === null) {
          server.child.kill('SIGKILL');
          await server.exited;
        }
      });
      const admin = adminClient(server.url, environment.apiKey);
      const issued = await admin('POST', '/vault/keys', {
        vendor: 'stripe',
        usd_cap: 1_000_000,
        allowed_endpoints: ['POST /v1/payment_intents'],
        expires_in: '1h',
      });
      expect(issued.status).toBe(201);
      const vaultKey = (issued.body as { vault_key: string }).vault_key;

      const agent = new Agent({ connections: 32 });
      let stopping = false;
      let answered = 0;
      const statuses = new Set<number>();
      // Calls until the server stops answering (connection refused or reset once it closes).
      const loops = Array.from({ length: 32 }, async () => {
        while (!stopping || server.child.exitCode === null) {
          try {
            const response = await undiciFetch(`${server.url}/stripe/v1/payment_intents`, {
              method: 'POST',
              headers: { authorization: `Bearer ${vaultKey}`, 'content-type': 'application/x-www-form-urlencoded' },
              body: 'amount=100&currency=usd',
              dispatcher: agent,
            });
            await response.arrayBuffer();
            statuses.add(response.status);
            answered += 1;
          } catch {
            if (stopping) return;
          }
        }
      });

      // Until the checkpointer thread has folded a WAL of its threshold back at least once.
      const database = join(environment.dataDir, 'keybrake.sqlite3');
      let longest = 0;
      for (;;) {
        const frames = walFrames(database);
        longest = Math.max(longest, frames);
        if (longest >= CHECKPOINT_MIN_PAGES && frames < longest) break;
        if (server.child.exitCode !== null) throw new Error(`keybrake serve exited:\n${server.output()}`);
        await sleep(5);
      }
      // Under load still, with the thread checkpointing every 200 ms.
      await sleep(50 + ((run * 37) % 200));
      stopping = true;
      server.child.kill('SIGTERM');
      expect(await server.exited, server.output()).toBe(0);
      await Promise.all(loops);
      await agent.close();
      expect(answered).toBeGreaterThan(0);
      // Calls answered before the close were forwarded (200) or, once it began, refused with 503.
      expect(
        [...statuses].every((status) => status === 200 || status === 503),
        [...statuses].join(','),
      ).toBe(true);
      expect(server.output()).toContain('draining in-flight calls');
      expectNoLeak(server.output(), Object.values(environment.secrets));
    }
  });
});
