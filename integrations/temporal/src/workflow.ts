import { CancellationScope, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { KeybrakeActivities } from './activities.js';
import type { VaultKeyRef } from './constants.js';
import { workflowKeyState } from './workflow-state.js';

export { CAP_EXHAUSTED_FAILURE, VENDOR_RATE_LIMITED_FAILURE } from './constants.js';

/** The key to issue for this execution: the proxy's `POST /vault/keys` body. */
export interface WithVaultKeyInput {
  readonly vendor: 'stripe' | 'twilio' | 'resend';
  readonly daily_usd_cap?: number;
  readonly usd_cap?: number;
  readonly allowed_endpoints: readonly string[];
  /** @default '2h' */
  readonly expires_in?: string | number;
  /** @default `temporal/<workflowId>` */
  readonly agent_run_label?: string;
  readonly parent_key_id?: string;
  readonly tainted?: boolean;
}

const keybrakeActivities = proxyActivities<KeybrakeActivities>({
  startToCloseTimeout: '30s',
  retry: { maximumAttempts: 5 },
});

/**
 * Runs a workflow body under a vault key issued for this execution, and revokes the key when the
 * body ends: on success, on failure and on cancellation. Every activity the body schedules gets
 * the key (sealed unless the issuing worker has no seal secret) and, through the activity
 * interceptor, `keybrake()`. Only the key id and the sealed key ever enter workflow history.
 *
 * @example return withVaultKey({ vendor: 'stripe', usd_cap: 300, allowed_endpoints: ['POST /v1/payment_intents'] }, () => chargeAll(customers));
 */
export async function withVaultKey<T>(
  input: WithVaultKeyInput,
  body: (key: { keyId: string }) => Promise<T>,
): Promise<T> {
  const key: VaultKeyRef = await keybrakeActivities.keybrakeIssueVaultKey({
    ...input,
    expires_in: input.expires_in ?? '2h',
    agent_run_label: input.agent_run_label ?? `temporal/${workflowInfo().workflowId}`,
  });
  workflowKeyState.current = key;
  try {
    return await body({ keyId: key.keyId });
  } finally {
    workflowKeyState.current = undefined;
    // Revoke even when the body failed or the workflow is being cancelled.
    await CancellationScope.nonCancellable(() => keybrakeActivities.keybrakeRevokeVaultKey(key.keyId));
  }
}
