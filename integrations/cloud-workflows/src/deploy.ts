import { WorkflowsClient } from '@google-cloud/workflows';
import { workflowsClientOptions } from './client-options.js';

/** Google's call-logging levels (`call_log_level`). */
export type CallLogLevel = 'LOG_NONE' | 'LOG_ERRORS_ONLY' | 'LOG_ALL_CALLS';

/** Where a workflow lives. */
export interface WorkflowLocation {
  readonly project: string;
  readonly location: string;
  readonly workflowId: string;
}

/** Options of {@link deployWorkflow}. */
export interface DeployWorkflowOptions extends WorkflowLocation {
  /** The workflow source (YAML or JSON), usually from `mergeSubworkflows`. */
  readonly source: string;
  /** The service account executions run as. @default the project's default */
  readonly serviceAccount?: string;
  /**
   * Call logging. LOG_ALL_CALLS would log every call's arguments and result (the issuer key and
   * the vault key among them); LOG_ERRORS_ONLY the arguments of every failed call (a cap hit's
   * vault key).
   * @default 'LOG_NONE'
   */
  readonly callLogLevel?: CallLogLevel;
  /** A client to use; otherwise one is made from `endpoint`. */
  readonly client?: WorkflowsClient;
  /** `host:port` of a non-Google endpoint (plain text, no credentials). @default Google's */
  readonly endpoint?: string;
}

/** What {@link deployWorkflow} returns. */
export interface DeployedWorkflow {
  readonly name: string;
  readonly revisionId: string;
  readonly state: string;
  readonly created: boolean;
}

/** `projects/{project}/locations/{location}/workflows/{workflowId}` */
export function workflowName(where: WorkflowLocation): string {
  return `projects/${where.project}/locations/${where.location}/workflows/${where.workflowId}`;
}

const NOT_FOUND = 5;

/**
 * Creates the workflow, or updates its source (a new revision) when it exists, and waits for the
 * operation. Safe to run on every deploy.
 */
export async function deployWorkflow(options: DeployWorkflowOptions): Promise<DeployedWorkflow> {
  const client = options.client ?? new WorkflowsClient(workflowsClientOptions(options.endpoint));
  try {
    const name = workflowName(options);
    const workflow = {
      name,
      sourceContents: options.source,
      callLogLevel: options.callLogLevel ?? 'LOG_NONE',
      ...(options.serviceAccount === undefined ? {} : { serviceAccount: options.serviceAccount }),
    };
    let exists = true;
    try {
      await client.getWorkflow({ name });
    } catch (error) {
      if ((error as { code?: unknown }).code !== NOT_FOUND) throw error;
      exists = false;
    }
    const [operation] = exists
      ? await client.updateWorkflow({
          workflow,
          updateMask: {
            paths: ['source_contents', 'call_log_level', ...(options.serviceAccount ? ['service_account'] : [])],
          },
        })
      : await client.createWorkflow({
          parent: `projects/${options.project}/locations/${options.location}`,
          workflowId: options.workflowId,
          workflow,
        });
    const [deployed] = await operation.promise();
    return {
      name: deployed.name ?? name,
      revisionId: deployed.revisionId ?? '',
      state: String(deployed.state ?? ''),
      created: !exists,
    };
  } finally {
    if (options.client === undefined) await client.close();
  }
}
