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
