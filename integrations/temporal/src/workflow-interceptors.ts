import { defaultPayloadConverter, type WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { VAULT_KEY_HEADER } from './constants.js';
import { workflowKeyState } from './workflow-state.js';

/**
 * Workflow interceptors that attach the execution's vault key (sealed by default) to every
 * activity scheduled inside `withVaultKey`. Register this module in the worker's
 * `interceptors.workflowModules`.
 */
export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      async scheduleActivity(input, next) {
        const key = workflowKeyState.current;
        if (!key) return next(input);
        return next({
          ...input,
          headers: { ...input.headers, [VAULT_KEY_HEADER]: defaultPayloadConverter.toPayload(key) },
        });
      },
      async scheduleLocalActivity(input, next) {
        const key = workflowKeyState.current;
        if (!key) return next(input);
        return next({
          ...input,
          headers: { ...input.headers, [VAULT_KEY_HEADER]: defaultPayloadConverter.toPayload(key) },
        });
      },
    },
  ],
});
