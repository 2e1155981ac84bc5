import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { formatEndpointPattern } from '../../keys/allowlist.js';
import { auditSnapshot } from '../../audit/checkpoints.js';
import { chainPages, chainVerificationJson, verifyArchiveAndStore } from '../../archive/verify.js';
import type { ArchiveSink } from '../../archive/sink.js';
import { auditExportHeader, exportRecordLine } from '../../audit/export.js';
import { InvalidRequestError, NotFoundError } from '../../errors.js';
import { assertWithinParent, parseIssueKeyInput } from '../../keys/key-issuance.js';
import { microsToUsd } from '../../pricing/money.js';
import { keyStatus } from '../../keys/key-status.js';
import { alertsView } from '../../alerts/alert-view.js';
import { identityView, keyView, limitsView } from './key-view.js';
import { adminAuthHook } from '../admin-auth.js';
import { assertKeyAccess, checkIssuanceAgainstPolicy, isOwnKey } from '../../identity/policy-check.js';
import type { VaultKeyRecord, VaultKeyState } from '../../store/store.js';
import { eventRoutes } from './events.js';
import { hashVaultKey, newKeyId, newVaultKey } from '../../keys/vault-keys.js';
import { encodeKeyCursor } from '../../store/key-listing.js';
import { encodeCallsCursor, parseCallsPage, parseKeyListQuery } from './admin-listing.js';

interface KeyParams {
  keyId: string;
}

/** The admin API: issue, read, revoke and taint vault keys, list their calls, verify the audit chain. */
export async function adminRoutes(app: FastifyInstance): Promise<void> {
  const kb = app.keybrake;
  // The admin API speaks JSON only: anything else is 415, not a string to misread.
  app.removeContentTypeParser('text/plain');
  // Workflow engines' HTTP tasks (Conductor's among them) send `Content-Type: application/json`
  // with the empty body of a DELETE or GET: no body, not a malformed one.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    void parseJson(request, text, done);
  });

  // Issue 25: issuer keys (operators) and, with an issuers file, bearer JWTs (workloads).
  app.addHook('onRequest', adminAuthHook({ apiKeyDigests: kb.apiKeyDigests, verifier: kb.tokenVerifier }));

  /** Issue 25: a workload reads or changes only its own keys, unless its policy says otherwise. */
  const assertAccess = (request: FastifyRequest, key: VaultKeyRecord, action: 'read' | 'manage'): void => {
    const caller = request.adminCaller;
    if (caller.kind === 'workload') assertKeyAccess(caller.identity, caller.grant, key.identity, action);
  };
  /** The key, or 404; 403 when the caller may not act on it (checked before any change). */
  const accessibleKey = async (
    request: FastifyRequest,
    keyId: string,
    action: 'read' | 'manage',
  ): Promise<VaultKeyState> => {
    const key = await kb.store.getKey(keyId, kb.now());
    if (!key) throw notFound();
    assertAccess(request, key, action);
    return key;
  };

  const archiveSink = (): ArchiveSink | undefined => kb.archiveSink;

  app.post('/vault/keys', { bodyLimit: 64 * 1024 }, async (request, reply) => {
    const input = parseIssueKeyInput(request.body, new Set(Object.keys(kb.config.vendorSecrets)), kb.config.vendors);
    const caller = request.adminCaller;
    // Issue 25: a workload's request is checked against its policy before anything is written.
    if (caller.kind === 'workload') checkIssuanceAgainstPolicy(input, caller.grant);
    const now = kb.now();
    let expiresAt = now + input.ttlSeconds * 1000;
    let tainted = input.tainted;
    if (input.parentKeyId !== null) {
      // The parent's vendor, allowlist and expiry never change; its state (revoked, expired,
      // tainted) and depth are checked again by the store, atomically with the insert.
      const parent = await kb.store.getKey(input.parentKeyId, now);
      if (!parent) throw new InvalidRequestError('parent_key_id names no vault key.');
      assertAccess(request, parent, 'read');
      if (keyStatus(parent, now) !== 'active') throw new InvalidRequestError('The parent key is not active.');
      if (parent.vendor !== input.vendor) throw new InvalidRequestError('A child key must be for its parent vendor.');
      assertWithinParent(input.allowedEndpoints, parent.allowedEndpoints);
      // A child never outlives its parent, and a child of a tainted key is tainted.
      expiresAt = Math.min(expiresAt, parent.expiresAt);
      tainted ||= parent.tainted;
    }
    const vaultKey = newVaultKey();
    const requested = {
      keyId: newKeyId(),
      keyHash: hashVaultKey(vaultKey),
      vendor: input.vendor,
      dailyCapMicros: input.dailyCapMicros,
      capMicros: input.capMicros,
      allowedEndpoints: input.allowedEndpoints.map(formatEndpointPattern),
      agentRunLabel: input.agentRunLabel,
      parentKeyId: input.parentKeyId,
      tainted,
      createdAt: now,
      expiresAt,
      revokedAt: null,
      // Issue 26: the server's default thresholds apply only where a webhook will deliver them.
      alertFractions: input.alertFractions ?? kb.config.alerts.defaultFractions,
      limits: input.limits,
      identity: caller.kind === 'workload' ? caller.identity : null,
    };
    const record = await kb.store.createKey(requested);
    return reply.code(201).send({
      key_id: record.keyId,
      vault_key: vaultKey,
      vendor: record.vendor,
      expires_at: new Date(record.expiresAt).toISOString(),
      daily_usd_cap: record.dailyCapMicros === null ? null : microsToUsd(record.dailyCapMicros),
      usd_cap: record.capMicros === null ? null : microsToUsd(record.capMicros),
      allowed_endpoints: record.allowedEndpoints,
      agent_run_label: record.agentRunLabel,
      parent_key_id: record.parentKeyId,
      tainted: record.tainted,
      created_at: new Date(now).toISOString(),
      alerts: requested.alertFractions.map((fraction) => ({ at_fraction: fraction })),
      ...(record.limits ? { limits: limitsView(record.limits) } : {}),
      identity: identityView(record.identity),
    });
  });

  // Issue 22: the console's key list.
  app.get('/vault/keys', async (request) => {
    const now = kb.now();
    const query = parseKeyListQuery(request.query as Record<string, unknown>, now);
    const page = await kb.store.listKeys(query);
    const caller = request.adminCaller;
    // Issue 25: a workload sees its own keys only (unless its policy reads others'): a page may
    // then hold fewer than `limit` entries, and `next_cursor` still walks the whole list.
    const visible =
      caller.kind === 'workload' && caller.grant.otherKeys === 'none'
        ? page.keys.filter(({ key }) => isOwnKey(caller.identity, key.identity))
        : page.keys;
    return {
      keys: visible.map(({ key, stats }) => ({
        ...keyView(key, now),
        calls: stats.calls,
        cap_hits: stats.capHits,
        refusals: stats.refusals,
      })),
      next_cursor: page.next === null ? null : encodeKeyCursor(query.sort, page.next),
    };
  });

  app.get<{ Params: KeyParams }>('/vault/keys/:keyId', async (request) => {
    const now = kb.now();
    const key = await kb.store.getKey(request.params.keyId, now);
    if (!key) throw notFound();
    assertAccess(request, key, 'read');
    return { ...keyView(key, now), ...alertsView(await kb.store.keyAlerts(key.keyId)) };
  });

  app.delete<{ Params: KeyParams }>('/vault/keys/:keyId', async (request) => {
    if (request.adminCaller.kind === 'workload') await accessibleKey(request, request.params.keyId, 'manage');
    if (!(await kb.store.revokeKey(request.params.keyId, kb.now()))) throw notFound();
    return { key_id: request.params.keyId, status: 'revoked' };
  });

  app.post<{ Params: KeyParams }>('/vault/keys/:keyId/taint', async (request) => {
    if (request.adminCaller.kind === 'workload') await accessibleKey(request, request.params.keyId, 'manage');
    if (!(await kb.store.taintKey(request.params.keyId))) throw notFound();
    return { key_id: request.params.keyId, tainted: true };
  });

  app.get<{ Params: KeyParams }>('/vault/keys/:keyId/calls', async (request) => {
    const page = parseCallsPage(request.query as Record<string, unknown>);
    await accessibleKey(request, request.params.keyId, 'read');
    const archived = await archivedCalls();
    if (page === null) return { calls: await kb.store.listCalls(request.params.keyId), ...archived };
    // Issue 22: oldest first from the cursor; a full page says where the next one starts.
    const calls = await kb.store.listCallsPage(request.params.keyId, page.afterSeq, page.limit);
    const last = calls.at(-1);
    return {
      calls,
      next_cursor: calls.length === page.limit && last ? encodeCallsCursor(last.seq) : null,
      ...archived,
    };
  });

  /**
   * Issue 23: calls are listed from the live store only. Once records were archived (and trimmed),
   * the answer says so: calls with `seq <= through_seq` are not listed, and are in the archive's
   * segments (named by seq) at `archive`. Nothing is read back from the archive on this path.
   */
  async function archivedCalls(): Promise<{
    archived?: { through_seq: number; archive: string | null; segments: number };
  }> {
    const state = await kb.store.archiveState();
    if (state.archivedThrough === 0) return {};
    return {
      archived: {
        through_seq: state.archivedThrough,
        archive: archiveSink()?.describe() ?? null,
        segments: state.segments,
      },
    };
  }

  await app.register(eventRoutes);

  // Issue 23: from genesis through every archived segment to the live head.
  app.get('/audit/verify', async () =>
    chainVerificationJson(await verifyArchiveAndStore(kb.store, archiveSink(), kb.trustedKeys)),
  );

  app.get('/audit/checkpoints', async () => ({
    public_key: { key_id: kb.config.auditSigner.keyId, pem: kb.config.auditSigner.publicKeyPem() },
    checkpoints: await kb.store.listCheckpoints(),
  }));

  app.post('/audit/checkpoints', async (_request, reply) => {
    const before = (await kb.store.listCheckpoints()).at(-1)?.records ?? 0;
    await kb.checkpointer.checkpoint(true);
    const newest = (await kb.store.listCheckpoints()).at(-1);
    // 201 when a checkpoint was signed now; 200 with the newest when nothing was added since.
    return reply.code((newest?.records ?? 0) > before ? 201 : 200).send({ checkpoint: newest ?? null });
  });

  app.get('/audit/export', async (_request, reply) => {
    const store = kb.store;
    const { checkpoints, head } = await auditSnapshot(store);
    const header = auditExportHeader(head, kb.config.auditSigner, new Date(kb.now()).toISOString());
    const sink = archiveSink();
    async function* lines(): AsyncGenerator<string> {
      yield `${JSON.stringify(header)}\n`;
      for (const checkpoint of checkpoints) yield `${JSON.stringify({ type: 'checkpoint', ...checkpoint })}\n`;
      // Issue 23: the whole chain from genesis, archived records read back a segment at a time.
      for await (const page of chainPages(store, sink, head.records)) {
        yield page.map((entry) => `${JSON.stringify(exportRecordLine(entry))}\n`).join('');
      }
    }
    return reply
      .type('application/x-ndjson')
      .header('content-disposition', 'attachment; filename="keybrake-audit.jsonl"')
      .send(Readable.from(lines()));
  });
}

function notFound(): NotFoundError {
  return new NotFoundError('No vault key has this id.');
}
