import { describe, expect, it } from 'vitest';
import { closeOpenedAfterEach, storeBackends } from './store-backends.js';
import { GENESIS_HASH } from '../src/audit/chain.js';
import type { AuditInput } from '../src/store/store.js';
import { testAuditInput } from './store-fixtures.js';

/**
 * Issue 23: the store's part of the archive, the same on the embedded store, one Redis and a Redis
 * Cluster: the archive state, the archiver's lease, the fenced record of a segment.
 */

closeOpenedAfterEach();

const BACKENDS = storeBackends('keybrake-i23-');

function record(i: number): AuditInput {
  return testAuditInput(null, Date.UTC(2026, 5, 1, 12, 0, i), {
    outcome: 'blocked',
    reason: 'invalid_vault_key',
    status: 401,
    costMicros: 0,
  });
}

describe.each(BACKENDS)('issue 23: the archive in the store ($name)', (backend) => {
  it('starts with nothing archived', async () => {
    const store = await backend.open();
    expect(await store.archiveState()).toEqual({
      archivedThrough: 0,
      archivedHead: GENESIS_HASH,
      segments: 0,
      trimmedThrough: 0,
    });
  });

  it('gives the lease to one holder at a time, renews it for that holder, and frees it on release or expiry', async () => {
    const store = await backend.open();
    expect(await store.acquireArchiveLease({ holder: 'a', ttlMs: 60_000 })).toBe(true);
    expect(await store.acquireArchiveLease({ holder: 'b', ttlMs: 60_000 })).toBe(false);
    expect(await store.acquireArchiveLease({ holder: 'a', ttlMs: 60_000 })).toBe(true);
    await store.releaseArchiveLease('b'); // not b's to release
    expect(await store.acquireArchiveLease({ holder: 'b', ttlMs: 60_000 })).toBe(false);
    await store.releaseArchiveLease('a');
    expect(await store.acquireArchiveLease({ holder: 'b', ttlMs: 300 })).toBe(true);
    expect(await store.acquireArchiveLease({ holder: 'a', ttlMs: 60_000 })).toBe(false);
    // A holder that stops renewing loses the lease once its TTL passes.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(await store.acquireArchiveLease({ holder: 'a', ttlMs: 60_000 })).toBe(true);
  });

  it('records only the next segment, only for the lease holder, only with the chain hash of its last record', async () => {
    const store = await backend.open();
    for (let i = 1; i <= 6; i += 1) await store.appendAudit(record(i));
    const head = await store.completeAuditHead();
    expect(head.records).toBe(6);
    const entries = await store.readAudit(0, 6);
    const hashOf = (seq: number): string => entries[seq - 1]?.hash as string;
    const segment = { firstSeq: 1, lastSeq: 3, prevHash: GENESIS_HASH, head: hashOf(3) };

    expect(await store.recordArchivedSegment({ holder: 'a', ...segment })).toBe(false); // no lease
    expect(await store.acquireArchiveLease({ holder: 'a', ttlMs: 60_000 })).toBe(true);
    expect(await store.recordArchivedSegment({ holder: 'b', ...segment })).toBe(false); // not the holder
    expect(await store.recordArchivedSegment({ holder: 'a', ...segment, head: hashOf(2) })).toBe(false);
    expect(await store.recordArchivedSegment({ holder: 'a', ...segment, firstSeq: 2 })).toBe(false);
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 0, segments: 0 });

    expect(await store.recordArchivedSegment({ holder: 'a', ...segment })).toBe(true);
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 3, archivedHead: hashOf(3), segments: 1 });
    // Recorded once: the same segment again (a retry after a lost answer) changes nothing.
    expect(await store.recordArchivedSegment({ holder: 'a', ...segment })).toBe(false);
    // The next one must follow on: not overlap, not leave a gap.
    expect(
      await store.recordArchivedSegment({ holder: 'a', firstSeq: 3, lastSeq: 5, prevHash: hashOf(2), head: hashOf(5) }),
    ).toBe(false);
    expect(
      await store.recordArchivedSegment({ holder: 'a', firstSeq: 5, lastSeq: 6, prevHash: hashOf(4), head: hashOf(6) }),
    ).toBe(false);
    expect(
      await store.recordArchivedSegment({ holder: 'a', firstSeq: 4, lastSeq: 6, prevHash: hashOf(3), head: hashOf(6) }),
    ).toBe(true);
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 6, archivedHead: hashOf(6), segments: 2 });
  });
});
