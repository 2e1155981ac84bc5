/**
 * Inputs of the store-level tests, which call the `Store` interface directly on every backend: a
 * Stripe key allowed `POST /v1/payment_intents` with no cap, one forwarded call's audit record, and
 * a reservation of $1 for it. Each test passes what it is about and takes the rest from here.
 */
import { randomUUID } from 'node:crypto';
import type { AuditInput, ReserveInput, VaultKeyRecord } from '../src/store/store.js';

/** A key created at `at`, expiring an hour later. */
export function testKeyRecord(keyId: string, at: number, overrides: Partial<VaultKeyRecord> = {}): VaultKeyRecord {
  return {
    keyId,
    keyHash: `hash-${keyId}`,
    vendor: 'stripe',
    dailyCapMicros: null,
    capMicros: null,
    allowedEndpoints: ['POST /v1/payment_intents'],
    agentRunLabel: null,
    parentKeyId: null,
    tainted: false,
    createdAt: at,
    expiresAt: at + 3_600_000,
    revokedAt: null,
    ...overrides,
  };
}

/** The audit record of a call forwarded at `at` that cost $1. */
export function testAuditInput(keyId: string | null, at: number, overrides: Partial<AuditInput> = {}): AuditInput {
  return {
    at: new Date(at).toISOString(),
    keyId,
    vendor: 'stripe',
    method: 'POST',
    path: '/v1/payment_intents',
    outcome: 'forwarded',
    reason: null,
    status: 200,
    costMicros: 1_000_000,
    vendorRequestId: null,
    idempotencyKey: null,
    agentRunLabel: null,
    tainted: false,
    ...overrides,
  };
}

/** A $1 reservation at `now` (its pending record names the idempotency key, if any). */
export function testReserveInput(keyId: string, now: number, overrides: Partial<ReserveInput> = {}): ReserveInput {
  return {
    keyId,
    reservationId: randomUUID(),
    costMicros: 1_000_000,
    now,
    idempotency: null,
    sensitive: false,
    pending: {
      keyId,
      vendor: 'stripe',
      method: 'POST',
      path: '/v1/payment_intents',
      idempotencyKey: overrides.idempotency?.key ?? null,
      agentRunLabel: null,
      tainted: false,
    },
    ...overrides,
  };
}
