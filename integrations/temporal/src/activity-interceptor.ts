import { type Context } from '@temporalio/activity';
import { defaultPayloadConverter } from '@temporalio/common';
import type {
  ActivityExecuteInput,
  ActivityInboundCallsInterceptor,
  ActivityInterceptorsFactory,
  Next,
} from '@temporalio/worker';
import { deriveIdempotencyKey } from '@keybrake/client';
import { activityContextStorage } from './activity-context.js';
import { VAULT_KEY_HEADER, type VaultKeyRef } from './constants.js';
import { toTemporalFailure } from './failures.js';
import { unsealVaultKey } from './seal.js';

/** Options of {@link keybrakeActivityInterceptors}. */
export interface KeybrakeActivityInterceptorOptions {
  /** The Keybrake proxy's base URL, given to activities as `keybrake().proxyUrl`. */
  readonly proxyUrl: string;
  /**
   * The secret vault keys are sealed with (the same as the issuing activity's). Required when
   * keys are sealed, which is the default.
   */
  readonly sealSecret?: string;
}

/**
 * Gives each activity of a `withVaultKey` workflow its Keybrake context (`keybrake()`), and maps
 * what it throws: a cap hit becomes a non-retryable `KeybrakeCapExhausted` failure, a vendor 429
 * with `Retry-After` a retryable failure with `nextRetryDelay`.
 */
export class KeybrakeActivityInboundInterceptor implements ActivityInboundCallsInterceptor {
  constructor(
    private readonly context: Context,
    private readonly options: KeybrakeActivityInterceptorOptions,
  ) {}

  async execute(input: ActivityExecuteInput, next: Next<ActivityInboundCallsInterceptor, 'execute'>): Promise<unknown> {
    const header = input.headers[VAULT_KEY_HEADER];
    if (!header) return next(input);
    const ref = defaultPayloadConverter.fromPayload<VaultKeyRef>(header);
    const vaultKey = ref.sealed ? unsealVaultKey(ref.vaultKey, this.requireSecret()) : ref.vaultKey;
    const info = this.context.info;
    // workflowId + activityId: the same across Temporal's retries of this activity, unique otherwise.
    const identity = [info.workflowExecution?.workflowId ?? info.workflowType ?? '', info.activityId];
    const activityContext = {
      vaultKey,
      keyId: ref.keyId,
      proxyUrl: this.options.proxyUrl,
      idempotencyKey: (...parts: (string | number)[]) => deriveIdempotencyKey([...identity, ...parts]),
    };
    try {
      return await activityContextStorage.run(activityContext, () => next(input));
    } catch (error) {
      throw toTemporalFailure(error);
    }
  }

  private requireSecret(): string {
    if (!this.options.sealSecret) throw new Error('A sealed vault key arrived but the worker has no sealSecret.');
    return this.options.sealSecret;
  }
}

/**
 * For `Worker.create({ interceptors: { activity: keybrakeActivityInterceptors(...) } })`.
 */
export function keybrakeActivityInterceptors(
  options: KeybrakeActivityInterceptorOptions,
): ActivityInterceptorsFactory[] {
  return [(context) => ({ inbound: new KeybrakeActivityInboundInterceptor(context, options) })];
}
