export {
  mergeSubworkflows,
  subworkflowNames,
  subworkflowsSource,
  SUBWORKFLOWS_FILE,
  CLOUD_WORKFLOWS_TEMPLATES_DIR,
  type MergeOptions,
} from './subworkflows.js';
export {
  deployWorkflow,
  workflowName,
  type DeployWorkflowOptions,
  type DeployedWorkflow,
  type CallLogLevel,
  type WorkflowLocation,
} from './deploy.js';
export { runExecution, type RunExecutionOptions, type ExecutionOutcome } from './executions.js';
export { workflowsClientOptions, type WorkflowsClientOptions } from './client-options.js';
export {
  KeybrakeCloudWorkflowsError,
  SubworkflowNameClashError,
  InvalidWorkflowSourceError,
  ExecutionTimeoutError,
} from './errors.js';
