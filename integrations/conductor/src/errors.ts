import { NonRetryableException } from '@io-orkes/conductor-javascript';

/**
 * The vault key's cap is exhausted. Thrown from a wrapped worker, it ends the task
 * `FAILED_WITH_TERMINAL_ERROR`: Conductor does not retry it, whatever the task's `retryCount`,
 * because a retry would hit the same wall.
 */
export class KeybrakeCapExhaustedError extends NonRetryableException {
  readonly code = 'cap_exhausted';

  constructor(message: string) {
    super(message);
    this.name = 'KeybrakeCapExhaustedError';
  }
}

/**
 * A wrapped worker's task has no vault key in its input: the workflow is wired wrong (retrying
 * will not fix it), so the task ends `FAILED_WITH_TERMINAL_ERROR`.
 */
export class MissingVaultKeyError extends NonRetryableException {
  readonly code = 'missing_vault_key';

  constructor(readonly inputName: string) {
    super(
      `Task input "${inputName}" holds no Keybrake vault key: pass the issue_vault_key task's response.body.vault_key to this task.`,
    );
    this.name = 'MissingVaultKeyError';
  }
}
