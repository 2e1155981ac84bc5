import { AsyncLocalStorage } from 'node:async_hooks';

/** What an activity running under a Keybrake vault key can use. */
export interface KeybrakeActivityContext {
  /** The execution's vault key, unsealed: use it as the vendor SDK's secret. */
  readonly vaultKey: string;
  readonly keyId: string;
  /** The proxy's base URL, for the SDK helpers (`stripeOptions(proxyUrl)`...). */
  readonly proxyUrl: string;
  /**
   * A stable idempotency key for this activity: derived from the workflow id and the activity id
   * (the same across Temporal's retries of this activity, different in every other execution)
   * plus your own parts, e.g. `idempotencyKey('charge', customerId)`.
   */
  idempotencyKey(...parts: (string | number)[]): string;
}

export const activityContextStorage = new AsyncLocalStorage<KeybrakeActivityContext>();

/**
 * The Keybrake context of the running activity. Throws outside an activity whose workflow runs
 * inside `withVaultKey`, or on a worker without `keybrakeActivityInterceptors`.
 */
export function keybrake(): KeybrakeActivityContext {
  const context = activityContextStorage.getStore();
  if (!context) {
    throw new Error(
      'No Keybrake vault key: run the workflow body inside withVaultKey() and install keybrakeActivityInterceptors on the worker.',
    );
  }
  return context;
}
