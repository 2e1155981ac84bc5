#!/usr/bin/env node
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { deployWorkflow, type CallLogLevel } from './deploy.js';
import { KeybrakeCloudWorkflowsError } from './errors.js';
import { runExecution } from './executions.js';
import { mergeSubworkflows } from './subworkflows.js';

const USAGE = `keybrake-cloud-workflows: Keybrake's subworkflows for Google Cloud Workflows

  merge FILE [--out OUT] [--include-example-main]
      Adds Keybrake's subworkflows to your workflow source; prints it (or writes OUT).
  deploy FILE --project P --location L --workflow W [--service-account SA] [--no-merge]
         [--call-log-level LOG_NONE|LOG_ERRORS_ONLY|LOG_ALL_CALLS] [--endpoint HOST:PORT]
      Merges (unless --no-merge) and creates or updates the workflow.
  run --project P --location L --workflow W [--argument JSON|@FILE] [--budget-usd N]
      [--timeout-seconds S] [--endpoint HOST:PORT]
      Starts an execution, waits for it and prints {name, state, result | error}. Exit 1 unless SUCCEEDED.

--endpoint reaches a server speaking the Workflows/Executions gRPC APIs without TLS or
credentials (an emulator); without it, Google's, with Application Default Credentials.
Call logging defaults to LOG_NONE: other levels log the issuer key and vault keys.
`;

function readArgument(value: string | undefined): Record<string, unknown> {
  if (value === undefined) return {};
  const text = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  const parsed = JSON.parse(text) as unknown;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new KeybrakeCloudWorkflowsError('invalid_argument', '--argument must be a JSON object.');
  }
  return parsed as Record<string, unknown>;
}

function required(values: Record<string, unknown>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') {
    throw new KeybrakeCloudWorkflowsError('missing_option', `--${name} is required.`);
  }
  return value;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      'include-example-main': { type: 'boolean' },
      project: { type: 'string' },
      location: { type: 'string' },
      workflow: { type: 'string' },
      'service-account': { type: 'string' },
      'no-merge': { type: 'boolean' },
      'call-log-level': { type: 'string' },
      endpoint: { type: 'string' },
      argument: { type: 'string' },
      'budget-usd': { type: 'string' },
      'timeout-seconds': { type: 'string' },
    },
  });
  const where = () => ({
    project: required(values, 'project'),
    location: required(values, 'location'),
    workflowId: required(values, 'workflow'),
    ...(values.endpoint === undefined ? {} : { endpoint: values.endpoint }),
  });
  switch (command) {
    case 'merge': {
      const file = positionals[0];
      if (file === undefined) throw new KeybrakeCloudWorkflowsError('missing_option', 'merge needs a FILE.');
      const merged = mergeSubworkflows(readFileSync(file, 'utf8'), {
        includeExampleMain: values['include-example-main'] === true,
      });
      if (values.out === undefined) process.stdout.write(merged);
      else writeFileSync(values.out, merged);
      return 0;
    }
    case 'deploy': {
      const file = positionals[0];
      if (file === undefined) throw new KeybrakeCloudWorkflowsError('missing_option', 'deploy needs a FILE.');
      const source = readFileSync(file, 'utf8');
      const deployed = await deployWorkflow({
        ...where(),
        source: values['no-merge'] === true ? source : mergeSubworkflows(source),
        ...(values['service-account'] === undefined ? {} : { serviceAccount: values['service-account'] }),
        ...(values['call-log-level'] === undefined ? {} : { callLogLevel: values['call-log-level'] as CallLogLevel }),
      });
      process.stdout.write(`${JSON.stringify(deployed, null, 2)}\n`);
      return 0;
    }
    case 'run': {
      const outcome = await runExecution({
        ...where(),
        argument: readArgument(values.argument),
        ...(values['budget-usd'] === undefined ? {} : { budgetUsd: Number(values['budget-usd']) }),
        ...(values['timeout-seconds'] === undefined ? {} : { timeoutMs: Number(values['timeout-seconds']) * 1000 }),
      });
      process.stdout.write(`${JSON.stringify(outcome, null, 2)}\n`);
      return outcome.state === 'SUCCEEDED' ? 0 : 1;
    }
    default:
      process.stderr.write(USAGE);
      return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const code = error instanceof KeybrakeCloudWorkflowsError ? ` (${error.code})` : '';
    process.stderr.write(
      `keybrake-cloud-workflows: ${error instanceof Error ? error.message : String(error)}${code}\n`,
    );
    process.exitCode = 2;
  },
);
