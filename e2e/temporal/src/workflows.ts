import { ActivityFailure, ApplicationFailure, proxyActivities, sleep } from '@temporalio/workflow';
import {
  CAP_EXHAUSTED_FAILURE,
  TAINTED_REQUEST_REFUSED_FAILURE,
  untrustedActivities,
  withVaultKey,
} from '@keybrake/temporal/workflow';
import type * as activities from './activities.js';

const { chargeCustomer } = proxyActivities<typeof activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumAttempts: 4 },
});

/** The step that reads untrusted input runs under the execution's tainted child key. */
const { actOnInboundEmail } = untrustedActivities<typeof activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 2, maximumAttempts: 4 },
});

/** Input of the billing example. */
export interface BillingInput {
  readonly capUsd: number;
  readonly customers: readonly activities.ChargeInput[];
}

/** What the billing example did. */
export interface BillingSummary {
  readonly keyId: string;
  readonly charged: number;
  readonly chargedCents: number;
  readonly capped: number;
  readonly failed: number;
}

/** What a fan-out's charges came to: those charged, those refused at the cap, the others failed. */
function billingSummary(
  keyId: string,
  results: readonly PromiseSettledResult<{ readonly amountCents: number }>[],
): BillingSummary {
  let charged = 0;
  let chargedCents = 0;
  let capped = 0;
  for (const result of results) {
    if (result.status === 'fulfilled') {
      charged += 1;
      chargedCents += result.value.amountCents;
    } else if (isCapHit(result.reason)) {
      capped += 1;
    }
  }
  return { keyId, charged, chargedCents, capped, failed: results.length - charged - capped };
}

/**
 * The runnable example: an agent's billing run fans out one charge activity per customer, all
 * under one vault key with a dollar cap. Charges past the cap fail for good
 * (`KeybrakeCapExhausted`, never retried); the key is revoked when the run ends.
 */
export async function billingWorkflow(input: BillingInput): Promise<BillingSummary> {
  return withVaultKey(
    { vendor: 'stripe', usd_cap: input.capUsd, allowed_endpoints: ['POST /v1/payment_intents'], expires_in: '1h' },
    async ({ keyId }) => {
      const results = await Promise.allSettled(input.customers.map((customer) => chargeCustomer(customer)));
      return billingSummary(keyId, results);
    },
  );
}

/** Issue 26: charges retried until the key's limit lets them through (each retry after its Retry-After). */
const { chargeCustomer: chargeUnderLimit } = proxyActivities<typeof activities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', backoffCoefficient: 1, maximumAttempts: 60 },
});

/**
 * Issue 26: the billing fan-out on a key with `max_concurrent: 2`: Keybrake's limit 429s are
 * retryable (`KeybrakeConcurrencyLimited`, after their Retry-After) and end charged; the charge
 * past the cap stays `KeybrakeCapExhausted`, never retried.
 */
export async function limitedBillingWorkflow(input: BillingInput): Promise<BillingSummary> {
  return withVaultKey(
    {
      vendor: 'stripe',
      usd_cap: input.capUsd,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
      max_concurrent: 2,
    },
    async ({ keyId }) => {
      const results = await Promise.allSettled(input.customers.map((customer) => chargeUnderLimit(customer)));
      return billingSummary(keyId, results);
    },
  );
}

/** Charges one customer, then fails: the key must still be revoked. */
export async function failingBillingWorkflow(input: BillingInput): Promise<never> {
  return withVaultKey(
    { vendor: 'stripe', usd_cap: input.capUsd, allowed_endpoints: ['POST /v1/payment_intents'] },
    async () => {
      for (const customer of input.customers) await chargeCustomer(customer);
      throw ApplicationFailure.nonRetryable('the agent gave up', 'ExampleFailure');
    },
  );
}

/** Charges, then waits for a human for an hour: cancelled meanwhile, the key must be revoked. */
export async function awaitingApprovalWorkflow(input: BillingInput): Promise<void> {
  return withVaultKey(
    { vendor: 'stripe', usd_cap: input.capUsd, allowed_endpoints: ['POST /v1/payment_intents'] },
    async () => {
      for (const customer of input.customers) await chargeCustomer(customer);
      await sleep('1 hour');
    },
  );
}

/** What the support example did. */
export interface SupportSummary {
  readonly keyId: string;
  /** The untrusted step's failure type, or 'completed' if it was not stopped. */
  readonly untrusted: string;
  readonly chargedCents: number;
}

/**
 * An agent answering a customer: one step reads the inbound email (untrusted: it may carry a
 * prompt injection), a sibling step charges the customer for what they bought. Both run at once,
 * under one execution key; only the untrusted step holds the tainted child.
 */
export async function supportWorkflow(input: {
  readonly charge: activities.ChargeInput;
  readonly email: activities.InboundEmail;
}): Promise<SupportSummary> {
  return withVaultKey(
    {
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/customers/*'],
      expires_in: '1h',
    },
    async ({ keyId }) => {
      const [untrusted, charged] = await Promise.allSettled([
        actOnInboundEmail(input.email),
        chargeCustomer(input.charge),
      ]);
      return {
        keyId,
        untrusted:
          untrusted.status === 'fulfilled'
            ? 'completed'
            : failureType(untrusted.reason) === TAINTED_REQUEST_REFUSED_FAILURE
              ? TAINTED_REQUEST_REFUSED_FAILURE
              : `other: ${String(untrusted.reason)}`,
        chargedCents: charged.status === 'fulfilled' ? charged.value.amountCents : 0,
      };
    },
  );
}

function failureType(reason: unknown): string | undefined {
  return reason instanceof ActivityFailure && reason.cause instanceof ApplicationFailure
    ? (reason.cause.type ?? undefined)
    : undefined;
}

function isCapHit(reason: unknown): boolean {
  return (
    reason instanceof ActivityFailure &&
    reason.cause instanceof ApplicationFailure &&
    reason.cause.type === CAP_EXHAUSTED_FAILURE
  );
}
