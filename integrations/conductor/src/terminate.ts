import type { Client } from '@io-orkes/conductor-javascript';
import { WorkflowExecutor } from '@io-orkes/conductor-javascript';

/** The failure workflow shipped in templates/conductor: revokes the key a workflow issued. */
export const REVOKE_WORKFLOW = 'keybrake_revoke_vault_key';

/**
 * Terminates a workflow and revokes the vault key it issued. Conductor starts a workflow's
 * `failureWorkflow` when it fails or times out, but not when it is terminated through the API or
 * UI (checked on Conductor 3.32.3), so terminating by hand would leave the key live until its
 * TTL. This starts the same `keybrake_revoke_vault_key` workflow the failure path uses, so the
 * caller needs no issuer key: the Conductor server holds it.
 *
 * @returns the id of the revoking workflow.
 */
export async function terminateAndRevoke(client: Client, workflowId: string, reason: string): Promise<string> {
  const executor = new WorkflowExecutor(client);
  await executor.terminate(workflowId, reason);
  const workflow = await executor.getWorkflow(workflowId, false);
  return executor.startWorkflow({
    name: REVOKE_WORKFLOW,
    correlationId: workflow.correlationId,
    input: {
      workflowId,
      reason,
      failureStatus: workflow.status,
      failedWorkflow: { workflowId, variables: workflow.variables ?? {} },
    },
  });
}
