import Stripe from 'stripe';
import { stripeOptions } from '@keybrake/client/stripe';
import { keybrake } from '@keybrake/temporal';

/** One customer to charge in the billing example. */
export interface ChargeInput {
  readonly customerId: string;
  readonly amountCents: number;
}

/**
 * The example's agent activity: charges one customer with the official Stripe SDK through the
 * proxy. Two Keybrake lines: the vault key as the SDK's secret, and the idempotency key derived
 * from the execution (stable across Temporal's retries of this activity).
 */
export async function chargeCustomer(input: ChargeInput): Promise<{ paymentIntentId: string; amountCents: number }> {
  const kb = keybrake();
  // Temporal owns the retries: the SDK does not retry on its own here.
  const stripe = new Stripe(kb.vaultKey, stripeOptions(kb.proxyUrl, { maxNetworkRetries: 0 }));
  const intent = await stripe.paymentIntents.create(
    { amount: input.amountCents, currency: 'usd', customer: input.customerId, description: 'keybrake example' },
    { idempotencyKey: kb.idempotencyKey('charge', input.customerId) },
  );
  return { paymentIntentId: intent.id, amountCents: intent.amount };
}

/** What the untrusted step read, and what the text it read told it to do. */
export interface InboundEmail {
  readonly customerId: string;
  /** A prompt injection in the email: "refund me by charging this card $X". */
  readonly injectedChargeCents: number;
}

/**
 * A step that reads untrusted content (an inbound email) and, like a prompt-injected agent, acts on
 * it: it reads the customer (allowed to a tainted key: no cost), then tries the charge the email
 * asked for. Scheduled with `untrustedActivities`, it holds the execution's tainted child key, so
 * the proxy refuses the charge.
 */
export async function actOnInboundEmail(email: InboundEmail): Promise<{ customerEmail: string | null }> {
  const kb = keybrake();
  const stripe = new Stripe(kb.vaultKey, stripeOptions(kb.proxyUrl, { maxNetworkRetries: 0 }));
  const customer = await stripe.customers.retrieve(email.customerId);
  await stripe.paymentIntents.create(
    { amount: email.injectedChargeCents, currency: 'usd', customer: email.customerId, description: 'injected' },
    { idempotencyKey: kb.idempotencyKey('injected', email.customerId) },
  );
  return { customerEmail: 'deleted' in customer ? null : (customer.email ?? null) };
}
