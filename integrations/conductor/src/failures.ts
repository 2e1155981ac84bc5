import { NonRetryableException } from '@io-orkes/conductor-javascript';
import { keybrakeRefusal, limitRefusal, retryAfterMs } from '@keybrake/client';
import { redactVaultKeyText } from './redact.js';

/** The result that ends a task `FAILED_WITH_TERMINAL_ERROR`: Conductor never retries it. */
export interface TerminalFailure {
  readonly status: 'FAILED_WITH_TERMINAL_ERROR';
  readonly reasonForIncompletion: string;
  /** `error.code` lets a later SWITCH tell a cap hit (`cap_exhausted`) from other failures. */
  readonly outputData: { readonly error: { readonly code: string; readonly message: string } };
  readonly logs: { log: string; createdTime: number }[];
}

/**
 * Issue 26: a call refused by a request or concurrency limit of the key, handed back to Conductor
 * to run again after the proxy's `Retry-After`: `IN_PROGRESS` with `callbackAfterSeconds`, the
 * way Conductor delays a task by the worker's choice (a `FAILED` task's retry waits only its
 * definition's fixed `retryDelaySeconds`, and uses up one of its `retryCount`). The same task,
 * with the same idempotency key, is polled again once the delay has passed.
 */
export interface LimitRetry {
  readonly status: 'IN_PROGRESS';
  readonly callbackAfterSeconds: number;
  readonly outputData: {
    readonly error: { readonly code: string; readonly message: string; readonly retry_after_s: number };
  };
  readonly logs: { log: string; createdTime: number }[];
}

/** A limit refusal's retry after `retryAfterS` seconds. */
export function limitRetry(code: string, retryAfterS: number, message: string): LimitRetry {
  return {
    status: 'IN_PROGRESS',
    callbackAfterSeconds: retryAfterS,
    outputData: { error: { code, message, retry_after_s: retryAfterS } },
    logs: [{ log: `${code}: retrying after ${retryAfterS} s`, createdTime: Date.now() }],
  };
}

/** A terminal failure with a stable code. */
export function terminalFailure(code: string, message: string): TerminalFailure {
  return {
    status: 'FAILED_WITH_TERMINAL_ERROR',
    reasonForIncompletion: message,
    outputData: { error: { code, message } },
    logs: [{ log: `${code}: ${message}`, createdTime: Date.now() }],
  };
}

/**
 * Maps what a wrapped worker threw to what Conductor should do with it, with the vault key
 * redacted (Conductor stores the reason, and the SDK logs and stores what is thrown):
 * - a Keybrake cap hit: a terminal failure, code `cap_exhausted`: a retry would hit the same wall;
 * - any other Keybrake refusal a retry cannot change (a tainted key on a money-moving endpoint,
 *   an endpoint off the allowlist, a revoked or expired key...): a terminal failure with the
 *   proxy's code, e.g. `tainted_request_refused`;
 * - a refusal by a request or concurrency limit (issue 26, transient): {@link LimitRetry}, the
 *   task run again after the proxy's `Retry-After`;
 * - the SDK's `NonRetryableException`: a terminal failure, code `non_retryable`;
 * - anything else: a plain `Error` (name, message and stack only: a vendor SDK error's other
 *   fields, raw bodies and headers, never reach Conductor), to be thrown: the task is `FAILED`
 *   and retried by its definition's policy.
 *
 * Terminal failures are returned as a status, not thrown as `NonRetryableException`: the status
 * does not depend on which copy of the SDK (ESM or CommonJS) the worker's runner was loaded from.
 */
export function toConductorFailure(error: unknown, vaultKey: string): TerminalFailure | LimitRetry | Error {
  const source = error instanceof Error ? error : new Error(String(error));
  const message = redactVaultKeyText(source.message, vaultKey);
  const refusal = keybrakeRefusal(error);
  if (refusal === 'cap_exhausted') return terminalFailure('cap_exhausted', `Keybrake cap exhausted: ${message}`);
  if (refusal !== undefined) return terminalFailure(refusal, `Keybrake refused the call (${refusal}): ${message}`);
  const limit = limitRefusal(error);
  if (limit !== undefined) {
    return limitRetry(limit, Math.ceil((retryAfterMs(error) ?? 1000) / 1000), `Keybrake limit (${limit}): ${message}`);
  }
  if (error instanceof NonRetryableException || source.name === 'NonRetryableException') {
    return terminalFailure('non_retryable', message);
  }
  const retryable = new Error(message);
  retryable.name = source.name;
  retryable.stack = source.stack === undefined ? undefined : redactVaultKeyText(source.stack, vaultKey);
  return retryable;
}
