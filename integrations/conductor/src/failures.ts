import { NonRetryableException } from '@io-orkes/conductor-javascript';
import { isCapHit } from '@keybrake/client';
import { KeybrakeCapExhaustedError } from './errors.js';
import { redactVaultKeyText } from './redact.js';

/**
 * Maps what a wrapped worker threw to what Conductor should do with it, with the vault key
 * redacted from the message and stack (the SDK stores both with the task and logs them):
 * - a Keybrake cap hit becomes a `KeybrakeCapExhaustedError`: `FAILED_WITH_TERMINAL_ERROR`;
 * - the SDK's `NonRetryableException` stays terminal;
 * - anything else becomes a plain `Error`: `FAILED`, retried by the task definition's policy.
 *   Only name, message and stack are kept: other fields of a vendor SDK's error (raw bodies,
 *   headers) never reach Conductor's logs.
 */
export function toConductorFailure(error: unknown, vaultKey: string): Error {
  const source = error instanceof Error ? error : new Error(String(error));
  const message = redactVaultKeyText(source.message, vaultKey);
  let failure: Error;
  if (error instanceof KeybrakeCapExhaustedError || isCapHit(error)) failure = new KeybrakeCapExhaustedError(`Keybrake cap exhausted: ${message}`);
  else if (error instanceof NonRetryableException) failure = new NonRetryableException(message);
  else failure = new Error(message);
  if (!(failure instanceof KeybrakeCapExhaustedError)) failure.name = source.name;
  failure.stack = source.stack === undefined ? undefined : redactVaultKeyText(source.stack, vaultKey);
  return failure;
}
