import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ExecutionsClient } from '@google-cloud/workflows';
import { describe, expect, it, onTestFinished } from 'vitest';
import { deployWorkflow, ExecutionTimeoutError, runExecution, workflowsClientOptions } from '../src/index.js';
import { startFakeWorkflowsServer, type ExecutionScript } from './fake-workflows-server.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const where = { project: 'acme', location: 'us-central1', workflowId: 'billing' };
const USER_SOURCE = 'main:\n  params: [args]\n  steps:\n    - done:\n        return: ${args}\n';

/** Ends like the example: over budget fails with KeybrakeCapExhausted, within budget returns the spend. */
const billing: ExecutionScript = (argument) =>
  Number(argument.budget_usd) < 10
    ? { errorPayload: { tags: ['KeybrakeCapExhausted'], code: 429, spent_usd: Number(argument.budget_usd) } }
    : { result: { spent_usd: 7.5, key_status: 'revoked' } };

async function fake(options?: { pollsBeforeEnd?: number }) {
  const server = await startFakeWorkflowsServer(billing, options);
  onTestFinished(() => server.stop());
  return server;
}

describe('@keybrake/cloud-workflows against a FAKE Workflows/Executions gRPC server (in-process, from the shipped protos)', () => {
  it('deployWorkflow creates the workflow with call logging off, then updates the same one (a new revision)', async () => {
    const server = await fake();
    const created = await deployWorkflow({ ...where, source: USER_SOURCE, endpoint: server.endpoint });
    expect(created).toMatchObject({
      name: 'projects/acme/locations/us-central1/workflows/billing',
      created: true,
      revisionId: '000001-fake',
    });
    const stored = server.workflows.get(created.name);
    expect(stored?.sourceContents).toBe(USER_SOURCE);
    expect(stored?.callLogLevel).toBe('LOG_NONE');

    const updated = await deployWorkflow({ ...where, source: `${USER_SOURCE}# v2\n`, endpoint: server.endpoint });
    expect(updated).toMatchObject({ created: false, revisionId: '000002-fake' });
    expect(server.workflows.get(created.name)?.sourceContents).toContain('# v2');
    expect(server.calls).toEqual([
      'GetWorkflow',
      'CreateWorkflow',
      'GetWorkflow',
      'UpdateWorkflow(source_contents,call_log_level)',
    ]);
  });

  it('runExecution passes the budget in the argument, polls until the end, and returns result or the parsed error', async () => {
    const server = await fake({ pollsBeforeEnd: 3 });
    await deployWorkflow({ ...where, source: USER_SOURCE, endpoint: server.endpoint });

    const ok = await runExecution({
      ...where,
      endpoint: server.endpoint,
      argument: { proxy_url: 'http://keybrake:8080' },
      budgetUsd: 300,
      pollIntervalMs: 10,
    });
    expect(ok).toMatchObject({ state: 'SUCCEEDED', result: { spent_usd: 7.5, key_status: 'revoked' } });
    const first = server.executions.get(ok.name)!;
    expect(JSON.parse(first.argument)).toEqual({ proxy_url: 'http://keybrake:8080', budget_usd: 300 });
    expect(first.callLogLevel).toBe('LOG_NONE');
    expect(first.polls).toBe(3);

    const failed = await runExecution({ ...where, endpoint: server.endpoint, budgetUsd: 5, pollIntervalMs: 10 });
    expect(failed.state).toBe('FAILED');
    expect(failed.error?.payload).toEqual({ tags: ['KeybrakeCapExhausted'], code: 429, spent_usd: 5 });
    expect(failed.result).toBeUndefined();
  });

  it('runExecution gives up after its timeout with ExecutionTimeoutError, and takes a client of the caller', async () => {
    const server = await fake({ pollsBeforeEnd: 1_000_000 });
    await deployWorkflow({ ...where, source: USER_SOURCE, endpoint: server.endpoint });
    const client = new ExecutionsClient(workflowsClientOptions(server.endpoint));
    onTestFinished(() => client.close());
    const error = await runExecution({ ...where, client, timeoutMs: 200, pollIntervalMs: 20 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExecutionTimeoutError);
    expect((error as ExecutionTimeoutError).code).toBe('execution_timeout');
    expect((error as ExecutionTimeoutError).lastState).toBe('ACTIVE');
  });

  it('the CLI deploys (merged with the subworkflows) and runs; exit 1 and the error when the execution fails', async () => {
    const server = await fake({ pollsBeforeEnd: 1 });
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-gcw-cli-'));
    const file = join(dir, 'workflow.yaml');
    writeFileSync(file, USER_SOURCE);
    const run = promisify(execFile);
    const flags = [
      '--project',
      'acme',
      '--location',
      'us-central1',
      '--workflow',
      'billing',
      '--endpoint',
      server.endpoint,
    ];

    const deployed = await run(process.execPath, [CLI, 'deploy', file, ...flags]);
    expect(JSON.parse(deployed.stdout)).toMatchObject({ created: true });
    const source = server.workflows.get('projects/acme/locations/us-central1/workflows/billing')!.sourceContents;
    expect(source).toContain('keybrake_call:');
    expect(source).toContain('return: ${args}');

    const ok = await run(process.execPath, [
      CLI,
      'run',
      ...flags,
      '--argument',
      '{"customers":[]}',
      '--budget-usd',
      '50',
    ]);
    expect(JSON.parse(ok.stdout)).toMatchObject({ state: 'SUCCEEDED', result: { spent_usd: 7.5 } });

    const failed = await run(process.execPath, [CLI, 'run', ...flags, '--budget-usd', '1']).catch(
      (error: { code: number; stdout: string }) => error,
    );
    expect((failed as { code: number }).code).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({
      state: 'FAILED',
      error: { payload: { tags: ['KeybrakeCapExhausted'] } },
    });
  });
});
