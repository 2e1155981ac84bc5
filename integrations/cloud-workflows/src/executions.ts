import { setTimeout as sleep } from 'node:timers/promises';
import { ExecutionsClient } from '@google-cloud/workflows';
import { workflowsClientOptions } from './client-options.js';
import type { CallLogLevel, WorkflowLocation } from './deploy.js';
import { workflowName } from './deploy.js';
import { ExecutionTimeoutError } from './errors.js';

/** Options of {@link runExecution}. */
export interface RunExecutionOptions extends WorkflowLocation {
  /** The execution's argument (a JSON object: `main`'s parameter). @default {} */
  readonly argument?: Record<string, unknown>;
  /** The execution's dollar budget, passed as `budget_usd` in the argument (the example's cap). */
  readonly budgetUsd?: number;
  /** @default 'LOG_NONE' (see `DeployWorkflowOptions.callLogLevel`) */
  readonly callLogLevel?: CallLogLevel;
  /** How long to wait for the execution to end. @default 600_000 */
  readonly timeoutMs?: number;
  /** @default 1000 */
  readonly pollIntervalMs?: number;
  /** A client to use; otherwise one is made from `endpoint`. */
  readonly client?: ExecutionsClient;
  /** `host:port` of a non-Google endpoint (plain text, no credentials). @default Google's */
  readonly endpoint?: string;
}

/** How an execution ended. */
export interface ExecutionOutcome {
  readonly name: string;
  /** `SUCCEEDED`, `FAILED` or `CANCELLED` */
  readonly state: string;
  /** The workflow's result, parsed from JSON, when it succeeded. */
  readonly result?: unknown;
  /** The error, when it failed: `payload` parsed from JSON when it is (e.g. `{"tags": ["KeybrakeCapExhausted"], ...}`). */
  readonly error?: { readonly payload: unknown; readonly context: string };
}

const RUNNING = new Set(['ACTIVE', 'QUEUED', 'STATE_UNSPECIFIED']);

function parseJson(text: string | null | undefined): unknown {
  if (text === null || text === undefined || text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** Starts an execution of a deployed workflow and waits until it ends. */
export async function runExecution(options: RunExecutionOptions): Promise<ExecutionOutcome> {
  const client = options.client ?? new ExecutionsClient(workflowsClientOptions(options.endpoint));
  try {
    const argument = {
      ...options.argument,
      ...(options.budgetUsd === undefined ? {} : { budget_usd: options.budgetUsd }),
    };
    const [started] = await client.createExecution({
      parent: workflowName(options),
      execution: { argument: JSON.stringify(argument), callLogLevel: options.callLogLevel ?? 'LOG_NONE' },
    });
    const name = started.name ?? '';
    const deadline = Date.now() + (options.timeoutMs ?? 600_000);
    let execution = started;
    while (RUNNING.has(String(execution.state ?? 'STATE_UNSPECIFIED'))) {
      if (Date.now() > deadline) throw new ExecutionTimeoutError(name, String(execution.state));
      await sleep(options.pollIntervalMs ?? 1000);
      [execution] = await client.getExecution({ name });
    }
    const state = String(execution.state);
    return {
      name,
      state,
      ...(state === 'SUCCEEDED' ? { result: parseJson(execution.result) } : {}),
      ...(execution.error
        ? { error: { payload: parseJson(execution.error.payload), context: execution.error.context ?? '' } }
        : {}),
    };
  } finally {
    if (options.client === undefined) await client.close();
  }
}
