import { defaultPayloadConverter, type WorkflowInterceptorsFactory } from '@temporalio/workflow';
import type { Headers } from '@temporalio/common';
import { VAULT_KEY_HEADER } from './constants.js';
import { workflowKeyState } from './workflow-state.js';

/** The input with the execution's vault key added to its headers, when a key is active. */
function withVaultKeyHeader<T extends { readonly headers: Headers }>(input: T): T {
  const key = workflowKeyState.scheduling ?? workflowKeyState.current;
  if (!key) return input;
  return { ...input, headers: { ...input.headers, [VAULT_KEY_HEADER]: defaultPayloadConverter.toPayload(key) } };
}

/**
 * Workflow interceptors that attach the execution's vault key (sealed by default) to every
 * activity scheduled inside `withVaultKey`. Register this module in the worker's
 * `interceptors.workflowModules`.
 */
export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      scheduleActivity: (input, next) => next(withVaultKeyHeader(input)),
      scheduleLocalActivity: (input, next) => next(withVaultKeyHeader(input)),
    },
  ],
});
