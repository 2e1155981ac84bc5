import { type ActivityOptions, CancellationScope, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { VendorName } from '@keybrake/client';
import type { KeybrakeActivities } from './activities.js';
import type { VaultKeyRef } from './constants.js';
import { workflowKeyState } from './workflow-state.js';

export {
  CAP_EXHAUSTED_FAILURE,
  TAINTED_REQUEST_REFUSED_FAILURE,
  VENDOR_RATE_LIMITED_FAILURE,
  refusalFailureType,
} from './constants.js';

/** The key to issue for this execution: the proxy's `POST /vault/keys` body. */
export interface WithVaultKeyInput {
  /** A built-in vendor, or one declared in the proxy's `KEYBRAKE_VENDORS_FILE`. */
  readonly vendor: VendorName;
  readonly daily_usd_cap?: number;
  readonly usd_cap?: number;
  readonly allowed_endpoints: readonly string[];
  /** @default '2h' */
  readonly expires_in?: string | number;
  /** @default `temporal/<workflowId>` */
  readonly agent_run_label?: string;
  readonly parent_key_id?: string;
  readonly tainted?: boolean;
  /** Issue 26: request and concurrency limits of the execution's key (integers >= 1). */
  readonly max_requests_per_second?: number;
  readonly max_requests_per_minute?: number;
  readonly max_concurrent?: number;
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
  const issue = {
    ...input,
    expires_in: input.expires_in ?? '2h',
    agent_run_label: input.agent_run_label ?? `temporal/${workflowInfo().workflowId}`,
  };
  const key: VaultKeyRef = await keybrakeActivities.keybrakeIssueVaultKey(issue);
  workflowKeyState.current = key;
  workflowKeyState.input = issue;
  workflowKeyState.tainted = undefined;
  try {
    return await body({ keyId: key.keyId });
  } finally {
    workflowKeyState.current = undefined;
    workflowKeyState.input = undefined;
    workflowKeyState.tainted = undefined;
    // Revoke even when the body failed or the workflow is being cancelled.
    await CancellationScope.nonCancellable(() => keybrakeActivities.keybrakeRevokeVaultKey(key.keyId));
  }
}

/** The execution's tainted child key: issued once, on first use, with the parent's scope and caps. */
function taintedChildKey(): Promise<VaultKeyRef> {
  const parent = workflowKeyState.current;
  const input = workflowKeyState.input;
  if (!parent || !input) {
    return Promise.reject(new Error('untrustedActivities: call its activities inside the body of withVaultKey().'));
  }
  if (parent.tainted) return Promise.resolve(parent);
  workflowKeyState.tainted ??= keybrakeActivities.keybrakeIssueVaultKey({
    ...(input as unknown as Parameters<KeybrakeActivities['keybrakeIssueVaultKey']>[0]),
    parent_key_id: parent.keyId,
    tainted: true,
    agent_run_label: `${String(input.agent_run_label)}/untrusted`,
  });
  return workflowKeyState.tainted;
}

/**
 * Activities for steps that read untrusted content (a web page, an inbound email, a tool result an
 * attacker could shape): `proxyActivities` whose every call runs under the execution's *tainted
 * child key* instead of the execution's key. The child is issued on first use, for the same vendor,
 * allowlist and caps, as a child of the execution's key (its spend counts against the execution's
 * caps, and revoking the execution's key revokes it).
 *
 * A tainted key can never be un-tainted, and the proxy refuses it every money-moving endpoint
 * (403 `tainted_request_refused`, a non-retryable `KeybrakeTaintedRequestRefused` failure here),
 * so a prompt injection in what the step reads cannot spend money, while sibling activities
 * scheduled with plain `proxyActivities` keep charging under the execution's key.
 *
 * @example const { summarizeInboundEmail } = untrustedActivities<typeof activities>({ startToCloseTimeout: '1m' });
 */
export function untrustedActivities<A extends object>(options: ActivityOptions): A {
  const activities = proxyActivities<Record<string, (...args: unknown[]) => Promise<unknown>>>(options);
  return new Proxy({} as A, {
    get(_target, name) {
      if (typeof name !== 'string') return undefined;
      return async (...args: unknown[]) => {
        const key = await taintedChildKey();
        // The workflow interceptor reads the key while the activity is being scheduled, which
        // happens synchronously inside this call.
        workflowKeyState.scheduling = key;
        try {
          return activities[name]?.(...args);
        } finally {
          workflowKeyState.scheduling = undefined;
        }
      };
    },
  });
}
