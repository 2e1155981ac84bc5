import type { ConductorWorker, Task, TaskInProgressResult, TaskResult } from '@io-orkes/conductor-javascript';
import { getTaskContext } from '@io-orkes/conductor-javascript';
import { deriveIdempotencyKey } from '@keybrake/client';
import { terminalFailure, toConductorFailure } from './failures.js';
import { redactVaultKey, redactVaultKeyText } from './redact.js';

/** What a wrapped worker's `execute` gets besides the task. */
export interface KeybrakeTaskContext {
  /** This workflow execution's vault key: use it as the vendor SDK's secret. */
  readonly vaultKey: string;
  /** The proxy's base URL, for the SDK helpers (`stripeOptions(proxyUrl)`...). */
  readonly proxyUrl: string;
  /**
   * A stable idempotency key for this task: derived from the workflow instance id and the task's
   * reference name (the same across Conductor's retries of this task, different in every other
   * execution and every other fork branch) plus your own parts, e.g. `idempotencyKey('charge')`.
   */
  idempotencyKey(...parts: (string | number)[]): string;
}

/** The result a worker's `execute` may return (as in `ConductorWorker`). */
export type KeybrakeWorkerResult = Omit<TaskResult, 'workflowInstanceId' | 'taskId'> | TaskInProgressResult;

/** A Conductor worker whose `execute` also receives the Keybrake context. */
export interface KeybrakeConductorWorker extends Omit<ConductorWorker, 'execute'> {
  /**
   * Runs the task. `task.inputData` arrives without the vault key (so it cannot be echoed into the
   * output by accident); use `keybrake.vaultKey`.
   */
  execute(task: Task, keybrake: KeybrakeTaskContext): Promise<KeybrakeWorkerResult>;
}

/** Options of {@link keybrakeWorker}. */
export interface KeybrakeWorkerOptions {
  /**
   * The proxy's base URL as the worker reaches it.
   * @default process.env.KEYBRAKE_PROXY_URL
   */
  readonly proxyUrl?: string;
  /**
   * The task input parameter that carries the vault key.
   * @default 'vaultKey'
   */
  readonly vaultKeyInput?: string;
}

/**
 * Wraps a Conductor worker so that it calls vendors through Keybrake:
 * - its `execute` gets the vault key from the task input, and a stable `idempotencyKey(...)`;
 * - a cap hit ends the task `FAILED_WITH_TERMINAL_ERROR` (never retried), whatever the task
 *   definition's `retryCount`, with `outputData.error.code` `cap_exhausted`; so do Keybrake's other
 *   final refusals (`tainted_request_refused`, `endpoint_not_allowed`, `vault_key_revoked`...), a
 *   missing vault key (`missing_vault_key`) and the SDK's `NonRetryableException`; every other
 *   failure stays a retryable `FAILED`;
 * - the vault key never reaches the task's output, logs or failure reason: they are stored by
 *   Conductor and shown in its UI.
 */
export function keybrakeWorker(worker: KeybrakeConductorWorker, options: KeybrakeWorkerOptions = {}): ConductorWorker {
  const vaultKeyInput = options.vaultKeyInput ?? 'vaultKey';
  const proxyUrl = options.proxyUrl ?? process.env.KEYBRAKE_PROXY_URL;
  if (!proxyUrl) {
    throw new Error(`keybrakeWorker(${worker.taskDefName}): set options.proxyUrl or KEYBRAKE_PROXY_URL.`);
  }
  const { execute, ...rest } = worker;
  return {
    ...rest,
    execute: async (task) => {
      const { [vaultKeyInput]: vaultKey, ...inputData } = task.inputData ?? {};
      if (typeof vaultKey !== 'string' || vaultKey === '') {
        // The workflow is wired wrong: retrying will not fix it.
        return terminalFailure(
          'missing_vault_key',
          `Task input "${vaultKeyInput}" holds no Keybrake vault key: pass it the issue_vault_key task's response.body.vault_key.`,
        );
      }
      // Workflow instance id + reference name: the same across Conductor's retries of this task
      // (a retry is a new task id), different in every other execution and fork branch.
      const identity = ['conductor', task.workflowInstanceId ?? '', task.referenceTaskName ?? ''];
      const keybrake: KeybrakeTaskContext = {
        vaultKey,
        proxyUrl,
        idempotencyKey: (...parts) => deriveIdempotencyKey([...identity, ...parts]),
      };
      try {
        const result = await execute({ ...task, inputData }, keybrake);
        return redactVaultKey(result, vaultKey);
      } catch (error) {
        const failure = toConductorFailure(error, vaultKey);
        if (failure instanceof Error) throw failure;
        return failure;
      } finally {
        redactTaskContext(vaultKey);
      }
    },
  };
}

/** What the worker put in the SDK's task context (`getTaskContext()`) is stored too. */
function redactTaskContext(vaultKey: string): void {
  const context = getTaskContext();
  if (!context) return;
  for (const entry of context.getLogs()) {
    if (entry.log !== undefined) entry.log = redactVaultKeyText(entry.log, vaultKey);
  }
  const output = context.getOutput();
  if (output !== undefined) context.setOutput(redactVaultKey(output, vaultKey));
}
