/**
 * Every store call of the enforcement pipeline, in one place (object claims live with the object
 * calls, `object-calls.ts`).
 */
import { OutcomeNotRecordedError, StoreUnavailableError } from '../errors.js';
import type { KeybrakeContext } from '../http/plugins/keybrake.js';
import { hashVaultKey } from '../keys/vault-keys.js';
import type {
  AuditInput,
  ReserveInput,
  ReserveOutput,
  SettleInput,
  VaultKeyRecord,
  VaultKeyState,
} from '../store/store.js';

/** The key a vault key names (the record may come from a cache that lags a revocation). */
export function findKey(kb: KeybrakeContext, vaultKey: string): Promise<VaultKeyRecord | undefined> {
  return kb.store.findKeyByHash(hashVaultKey(vaultKey));
}

/** The key as the store has it now, never cached. */
export function freshKey(kb: KeybrakeContext, keyId: string, now: number): Promise<VaultKeyState | undefined> {
  return kb.store.getKey(keyId, now);
}

/** Reserves the call's price against the key's caps and its ancestors', atomically with its checks. */
export function reserve(kb: KeybrakeContext, input: ReserveInput): Promise<ReserveOutput> {
  return kb.store.reserve(input);
}

/**
 * Settles a reservation with its audit record. When the store fails, the settlement is held and
 * retried once the store is back; the error says whether the vendor was (or may have been) called.
 */
export async function settle(kb: KeybrakeContext, vendorCalled: boolean, input: SettleInput): Promise<void> {
  try {
    await kb.store.settle(input);
  } catch (error) {
    if (!(error instanceof StoreUnavailableError)) throw error;
    // The outcome is known: hold it and record it once the store is back (a call that never left
    // releases its reservation then). An OutcomeNotRecordedError is a StoreUnavailableError:
    // the reply says so without auditing the call as blocked (it was not).
    kb.settlements.hold(input);
    throw vendorCalled ? new OutcomeNotRecordedError(error.cause) : error;
  }
}

/** Appends the audit record of a call that reserved nothing (refused or replayed). */
export function appendAudit(kb: KeybrakeContext, record: AuditInput): Promise<void> {
  return kb.store.appendAudit(record);
}
