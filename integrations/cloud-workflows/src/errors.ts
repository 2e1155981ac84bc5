/** Base class of this package's errors: a stable `code` and readonly context. */
export class KeybrakeCloudWorkflowsError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The user's workflow source already defines a subworkflow named like one of ours. */
export class SubworkflowNameClashError extends KeybrakeCloudWorkflowsError {
  constructor(readonly names: readonly string[]) {
    super(
      'subworkflow_name_clash',
      `Your workflow already defines ${names.map((name) => `\`${name}\``).join(', ')}, which Keybrake's subworkflows use. Rename yours (Keybrake's all start with \`keybrake_\`), then merge again.`,
    );
  }
}

/** The workflow source is not YAML/JSON Cloud Workflows can run (not a map of subworkflows or a list of steps). */
export class InvalidWorkflowSourceError extends KeybrakeCloudWorkflowsError {
  constructor(message: string) {
    super('invalid_workflow_source', message);
  }
}

/** An execution did not finish within the time the caller gave it. */
export class ExecutionTimeoutError extends KeybrakeCloudWorkflowsError {
  constructor(
    readonly executionName: string,
    readonly lastState: string,
  ) {
    super('execution_timeout', `Execution ${executionName} is still ${lastState}.`);
  }
}
