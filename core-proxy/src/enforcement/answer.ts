import { StoreUnavailableError } from '../errors.js';
import type { KeybrakeContext } from '../http/plugins/keybrake.js';
import { encodePath } from '../keys/allowlist.js';
import type { AuditInput, CallOutcome, ReserveInput } from '../store/store.js';
import type { AuditFacts, Outcome } from './call-facts.js';
import { roomHeaders } from './headers.js';
import { appendAudit } from './store-calls.js';

const MAX_AUDITED_PATH = 1024;
const MAX_AUDITED_IDEMPOTENCY_KEY = 255;

/**
 * The audit record of a reservation, as the store keeps it while the call is in flight (recovery
 * audits it as `unknown` if the process dies): everything but the outcome.
 */
export function pendingRecord(facts: AuditFacts): ReserveInput['pending'] {
  const { call, key } = facts;
  return {
    keyId: key?.keyId ?? null,
    vendor: call.vendor.name,
    method: call.method,
    path: facts.segments ? encodePath(facts.segments) : call.rawPath.slice(0, MAX_AUDITED_PATH),
    idempotencyKey: call.idempotencyKey?.slice(0, MAX_AUDITED_IDEMPOTENCY_KEY) ?? null,
    agentRunLabel: key?.agentRunLabel ?? null,
    // The store's reading of the key's taint (inside the reservation) is fresher than a cached record.
    tainted: call.untrusted || (facts.keyTainted ?? key?.tainted ?? false),
    // Issue 25: who the key was issued to, on every record of its calls.
    identity: key?.identity ?? null,
  };
}

/** The one audit record of a call, from what its facts say and how it ended. */
export function auditRecord(
  facts: AuditFacts,
  outcome: CallOutcome,
  reason: string | null,
  status: number | null,
  costMicros: number,
  vendorRequestId: string | null = null,
): AuditInput {
  const pending = pendingRecord(facts);
  // Member by member, not a spread of `pending`: a spread into a larger literal builds a new shape per call.
  return {
    keyId: pending.keyId,
    vendor: pending.vendor,
    method: pending.method,
    path: pending.path,
    idempotencyKey: pending.idempotencyKey,
    agentRunLabel: pending.agentRunLabel,
    tainted: pending.tainted,
    identity: pending.identity,
    at: new Date(facts.call.at).toISOString(),
    outcome,
    reason,
    status,
    costMicros,
    vendorRequestId,
  };
}

/**
 * Where a proxied call's answer is written: a fastify reply (the fastify route), or the proxy
 * route's own reply on `node:http` (`http/routes/proxy.ts`), which sends exactly what fastify would.
 */
export interface ProxyReply {
  /** The call's logger (bound to its request id). */
  readonly log: { warn(fields: object, message: string): void };
  code(status: number): unknown;
  header(name: string, value: string): unknown;
  headers(values: Readonly<Record<string, string | string[]>>): unknown;
  /** Sends a body: bytes as they are, an object as JSON. */
  send(payload: Buffer | object): unknown;
}

/**
 * Turns how a call ended into its reply, the one place that does: every proxied response carries
 * `X-Keybrake-Key-Id` once the key is known, and every refusal or error of Keybrake's own carries
 * `X-Keybrake-Error` (a vendor's 4xx never does) with the error's headers (the cap-hit header).
 * A refused or replayed call reserved nothing, so its audit record is written here, durably
 * before the reply; a settled call's record went with its settlement.
 */
export function answer(kb: KeybrakeContext, outcome: Outcome, reply: ProxyReply): void | Promise<void> {
  const vendor = outcome.facts.call.vendor.name;
  const keyId = outcome.facts.key?.keyId;
  if (keyId !== undefined) reply.header('x-keybrake-key-id', keyId);
  switch (outcome.kind) {
    case 'forwarded': {
      const { settled } = outcome;
      kb.metrics.requests.inc({
        vendor,
        outcome: settled.unknown ? 'unknown' : 'forwarded',
        reason: settled.unknown ? 'upstream_5xx' : '',
      });
      kb.metrics.recordSpend(vendor, outcome.facts.key?.agentRunLabel, settled.micros / 1e6);
      reply.code(outcome.response.status);
      reply.headers(outcome.headers);
      if (outcome.facts.room) reply.headers(roomHeaders(outcome.facts.room));
      reply.send(outcome.body);
      return;
    }
    case 'upstream_failed': {
      const { error } = outcome;
      reply.log.warn({ vendor, code: error.code, cause: outcome.cause.message }, 'vendor call failed');
      kb.metrics.requests.inc({
        vendor,
        outcome: error.code === 'upstream_unreachable' ? 'blocked' : 'unknown',
        reason: error.code,
      });
      kb.metrics.recordSpend(vendor, outcome.facts.key?.agentRunLabel, outcome.costMicros / 1e6);
      if (outcome.facts.room) reply.headers(roomHeaders(outcome.facts.room));
      return refusalReply(reply, error);
    }
    case 'replayed':
      return answerReplay(kb, outcome, reply);
    case 'refused':
      return answerRefusal(kb, outcome, reply);
    case 'store_failed':
      kb.metrics.requests.inc({ vendor, outcome: 'blocked', reason: outcome.error.code });
      return refusalReply(reply, outcome.error);
  }
}

async function answerReplay(
  kb: KeybrakeContext,
  outcome: Extract<Outcome, { kind: 'replayed' }>,
  reply: ProxyReply,
): Promise<void> {
  const { facts, stored } = outcome;
  try {
    await appendAudit(kb, auditRecord(facts, 'replayed', null, stored.status, 0, stored.vendorRequestId));
  } catch (error) {
    return answer(kb, { kind: 'store_failed', facts, error: asStoreUnavailable(error) }, reply);
  }
  kb.metrics.requests.inc({ vendor: facts.call.vendor.name, outcome: 'replayed', reason: '' });
  reply.code(stored.status);
  reply.headers(stored.headers);
  reply.header('idempotent-replayed', 'true');
  reply.send(Buffer.from(stored.body, 'base64'));
}

async function answerRefusal(
  kb: KeybrakeContext,
  outcome: Extract<Outcome, { kind: 'refused' }>,
  reply: ProxyReply,
): Promise<void> {
  const { facts, error } = outcome;
  try {
    await appendAudit(kb, auditRecord(facts, 'blocked', error.code, error.statusCode, 0));
  } catch (auditError) {
    // The record must be durable before we answer: if it cannot be written, say so.
    return answer(kb, { kind: 'store_failed', facts, error: asStoreUnavailable(auditError) }, reply);
  }
  const vendor = facts.call.vendor.name;
  kb.metrics.requests.inc({ vendor, outcome: 'blocked', reason: error.code });
  if (error.code === 'cap_exhausted') kb.metrics.capHits.inc({ vendor });
  if (error.code === 'rate_limited' || error.code === 'concurrency_limited') {
    kb.metrics.limitRefusals.inc({ vendor, reason: error.code });
  }
  return refusalReply(reply, error);
}

function refusalReply(
  reply: ProxyReply,
  error: { statusCode: number; code: string; headers: Readonly<Record<string, string>>; toJSON(): object },
): void {
  // Tells Keybrake's own refusals from the vendor's (a vendor 403 never carries it).
  reply.code(error.statusCode);
  reply.headers(error.headers);
  reply.header('x-keybrake-error', error.code);
  reply.send(error.toJSON());
}

function asStoreUnavailable(error: unknown): StoreUnavailableError {
  return error instanceof StoreUnavailableError ? error : new StoreUnavailableError(error);
}
