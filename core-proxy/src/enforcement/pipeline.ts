import { KeybrakeError, StoreUnavailableError, VaultKeyRevokedError } from '../errors.js';
import type { KeybrakeContext } from '../http/plugins/keybrake.js';
import { inactiveKeyError } from '../keys/key-status.js';
import { type Arrived, type ArrivedCall, type AuditFacts, type Outcome, arrivedFacts } from './call-facts.js';
import { freshKey } from './store-calls.js';
import {
  type Step,
  authenticate,
  checkAllowlist,
  checkTaint,
  checkVendor,
  forward,
  price,
  reserve,
  settle,
} from './steps.js';

/** Steps whose output is the next one's input; built only by {@link steps}. */
class StepList<Out> {
  constructor(readonly steps: readonly Step<unknown, unknown>[]) {}

  then<Next>(step: Step<Out, Next>): StepList<Next> {
    return new StepList<Next>([...this.steps, step as unknown as Step<unknown, unknown>]);
  }
}

function steps(): StepList<Arrived> {
  return new StepList<Arrived>([]);
}

/**
 * The contract's checks, in the contract's order (`shared/CONTRACT.md`, "Proxy"). The last step
 * always ends the call (its output type is `never`): every reservation ends in one settlement.
 */
export const ENFORCEMENT: StepList<never> = steps()
  .then(authenticate)
  .then(checkVendor)
  .then(checkAllowlist)
  .then(checkTaint)
  .then(price)
  .then(reserve)
  .then(forward)
  .then(settle);

/**
 * Runs one proxied call through {@link ENFORCEMENT} and says how it ended. A synchronous step is
 * not awaited (each await on the hot path costs a turn). A `KeybrakeError` a step throws is a
 * refusal with the facts the step started from; the store failing is `store_failed`.
 */
export async function enforce(kb: KeybrakeContext, call: ArrivedCall): Promise<Outcome> {
  let facts: AuditFacts = arrivedFacts(call);
  let step: Step<unknown, unknown> | undefined;
  let outcome: Outcome | undefined;
  try {
    for (step of ENFORCEMENT.steps) {
      let next = step.run(kb, facts);
      if (next instanceof Promise) next = await next;
      if (isOutcome(next)) {
        outcome = next;
        break;
      }
      facts = next as AuditFacts;
    }
    if (!outcome) throw new Error(`the enforcement pipeline ended without an outcome after ${step?.name}`);
  } catch (error) {
    if (!(error instanceof KeybrakeError)) {
      if (facts.claim) await endClaim(facts, false);
      throw error;
    }
    outcome =
      error instanceof StoreUnavailableError
        ? { kind: 'store_failed', facts, error }
        : { kind: 'refused', facts, error };
  }
  if (outcome.kind === 'refused' && step?.readsCachedKey) outcome = await confirmRefusal(kb, outcome);
  // Most calls claim no object: no turn spent awaiting nothing.
  if (outcome.facts.claim) await endClaim(outcome.facts, outcome.kind !== 'store_failed');
  return outcome;
}

function isOutcome(next: unknown): next is Outcome {
  return (next as { kind?: unknown }).kind !== undefined;
}

/**
 * The claim on a tracked object ends with its call: a settled call already recorded the object's
 * state (`answered`), a call that never left releases it unchanged, and a call sent but not
 * recorded forgets it (what the vendor did to the object is not known).
 */
async function endClaim(facts: AuditFacts, recorded: boolean): Promise<void> {
  const { claim } = facts;
  if (!claim) return;
  await (facts.result !== undefined && !recorded ? claim.forget() : claim.release()).catch(() => undefined);
}

/**
 * A check decided from a possibly cached key record: a revoked or expired key must be reported as
 * such, so the store (fresh, not cached) is asked before the refusal is answered.
 */
async function confirmRefusal(kb: KeybrakeContext, outcome: Extract<Outcome, { kind: 'refused' }>): Promise<Outcome> {
  const { facts } = outcome;
  if (!facts.key) return outcome;
  try {
    const fresh = await freshKey(kb, facts.key.keyId, facts.call.at);
    const inactive = fresh ? inactiveKeyError(fresh, facts.call.at) : new VaultKeyRevokedError(facts.key.keyId);
    return inactive ? { kind: 'refused', facts, error: inactive } : outcome;
  } catch (error) {
    if (error instanceof StoreUnavailableError) return { kind: 'store_failed', facts, error };
    throw error;
  }
}
