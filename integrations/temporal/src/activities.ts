import { ApplicationFailure } from '@temporalio/common';
import {
  type IssueVaultKeyInput,
  KeybrakeApiError,
  KeybrakeClient,
  type KeybrakeClientOptions,
} from '@keybrake/client';
import { refusalFailureType, type VaultKeyRef } from './constants.js';
import { sealVaultKey } from './seal.js';

/** Options of {@link createKeybrakeActivities}. */
export interface KeybrakeActivitiesOptions extends KeybrakeClientOptions {
  /**
   * Seal vault keys with this secret before they enter workflow history (AES-256-GCM; only
   * workers hold the secret). Omit it only if your history is as secret as your vendor keys.
   */
  readonly sealSecret?: string;
}

/** The activities `withVaultKey` calls; register them on the worker beside your own. */
export interface KeybrakeActivities {
  keybrakeIssueVaultKey(input: IssueVaultKeyInput): Promise<VaultKeyRef>;
  keybrakeRevokeVaultKey(keyId: string): Promise<void>;
}

/**
 * Creates the issue and revoke activities, talking to the proxy with an issuer key (`apiKey`) or,
 * for workload identity (issue 25), a token the worker reads from a file
 * (`tokenProvider: fromTokenFile('/var/run/secrets/keybrake/token')`, re-read when rotated).
 */
export function createKeybrakeActivities(options: KeybrakeActivitiesOptions): KeybrakeActivities {
  const client = new KeybrakeClient(options);
  return {
    async keybrakeIssueVaultKey(input) {
      const issued = await client.issueVaultKey(input).catch(policyRefusal);
      const sealed = options.sealSecret !== undefined;
      return {
        keyId: issued.key_id,
        vaultKey: sealed ? sealVaultKey(issued.vault_key, options.sealSecret as string) : issued.vault_key,
        sealed,
        expiresAt: issued.expires_at,
        tainted: issued.tainted,
      };
    },
    async keybrakeRevokeVaultKey(keyId) {
      await client.revokeVaultKey(keyId).catch(policyRefusal);
    },
  };
}

/**
 * Issue 25: a request beyond the caller's policy (403 `policy_*`) is refused the same way on every
 * retry, so it fails the activity for good, typed by its code (`KeybrakePolicyCap`,
 * `KeybrakePolicyNoMatch`...). A 401 stays retryable: a rotated token may fix it.
 */
function policyRefusal(error: unknown): never {
  if (error instanceof KeybrakeApiError && error.status === 403 && error.code.startsWith('policy_')) {
    throw ApplicationFailure.nonRetryable(
      `Keybrake refused by policy (${error.code}): ${error.message}`,
      refusalFailureType(error.code),
    );
  }
  throw error;
}
