import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';
import { freePort } from '../../../core-proxy/test/ports.js';

const RUNNER = fileURLToPath(new URL('./run-workflow.py', import.meta.url));
const MARK = 'KEYBRAKE_EXECUTION_OUTCOME ';

/** The `workflows-emulator` command installed by `scripts/install-workflows-emulator.sh`. */
export function emulatorBin(): string {
  const bin = process.env.WORKFLOWS_EMULATOR_BIN;
  if (!bin) {
    throw new Error(
      'WORKFLOWS_EMULATOR_BIN is not set: run `pnpm e2e:cloud-workflows` (scripts/install-workflows-emulator.sh installs it).',
    );
  }
  return bin;
}

/** How an execution ended, as Google's Executions API would say it. */
export interface EmulatorOutcome {
  readonly state: 'SUCCEEDED' | 'FAILED';
  readonly result?: any;
  readonly error?: { readonly payload: any };
  /** The emulator's own output (its log on stderr). */
  readonly stderr: string;
  readonly exitCode: number | null;
}

/** Google's built-in environment variables of an execution, which `sys.get_env` reads. */
export function executionEnv(
  options: { workflowId?: string; executionId?: string | null } = {},
): Record<string, string> {
  const env: Record<string, string> = {
    GOOGLE_CLOUD_PROJECT_ID: 'keybrake-e2e',
    GOOGLE_CLOUD_LOCATION: 'us-central1',
    GOOGLE_CLOUD_WORKFLOW_ID: options.workflowId ?? 'billing',
    GOOGLE_CLOUD_WORKFLOW_REVISION_ID: '000001-abc',
  };
  if (options.executionId !== null) env.GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID = options.executionId ?? randomUUID();
  return env;
}

/** The environment the emulator runs in: no inherited Google variables, no HTTP proxy for loopback. */
function emulatorEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('GOOGLE_CLOUD_')) env[name] = value;
  }
  return { ...env, NO_PROXY: '127.0.0.1,localhost', no_proxy: '127.0.0.1,localhost', ...extra };
}

function writeSource(source: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-gcw-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'workflow.yaml');
  writeFileSync(file, source);
  return file;
}

function collect(child: ReturnType<typeof spawn>): Promise<{ stdout: string; stderr: string; code: number | null }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ stdout, stderr, code }));
  });
}

/**
 * Runs a workflow source in workflows-emulator with `argument` as main's parameter and the given
 * execution environment, through the emulator's own interpreter (`run-workflow.py`), and reports
 * the end state with the error map on failure.
 */
export async function runInEmulator(
  source: string,
  argument: unknown,
  env: Record<string, string> = executionEnv(),
  options: { hangsAfterMs?: number } = {},
): Promise<EmulatorOutcome> {
  const file = writeSource(source);
  const python = join(dirname(emulatorBin()), 'python');
  const child = spawn(python, [RUNNER, file, JSON.stringify(argument)], {
    env: emulatorEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Only for a test that shows the emulator hanging: after this long, it is stopped and said so.
  let hung = false;
  const timer =
    options.hangsAfterMs === undefined
      ? undefined
      : setTimeout(() => {
          hung = true;
          child.kill('SIGKILL');
        }, options.hangsAfterMs);
  const { stdout, stderr, code } = await collect(child);
  clearTimeout(timer);
  if (hung) throw new Error(`workflows-emulator hung (stopped after ${options.hangsAfterMs} ms)`);
  const line = stdout.split('\n').find((text) => text.startsWith(MARK));
  if (line === undefined) throw new Error(`workflows-emulator crashed (exit ${code}):\n${stderr.slice(-4000)}`);
  return { ...(JSON.parse(line.slice(MARK.length)) as Pick<EmulatorOutcome, 'state'>), stderr, exitCode: code };
}

/** The emulator's own CLI: `workflows-emulator --source FILE run --data JSON`. */
export async function runEmulatorCli(
  source: string,
  argument: unknown,
  env: Record<string, string>,
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  const file = writeSource(source);
  const child = spawn(
    emulatorBin(),
    ['--loglevel', 'WARNING', '--source', file, 'run', '--data', JSON.stringify(argument)],
    {
      env: emulatorEnv(env),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return collect(child);
}

/** `workflows-emulator --source FILE serve --port P`, stopped after the test. */
export async function startEmulatorServe(source: string): Promise<{ url: string }> {
  const file = writeSource(source);
  const port = await freePort();
  const child = spawn(emulatorBin(), ['--source', file, 'serve', '--port', String(port)], {
    env: emulatorEnv({}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  );
  await new Promise<void>((resolve, reject) => {
    let output = '';
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      // Regression (CI on a fresh machine: ECONNREFUSED): uvicorn logs "Application startup
      // complete" before it binds its socket, and "Uvicorn running on" once it listens.
      if (/Uvicorn running on/.test(output)) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`workflows-emulator serve exited with ${code}: ${output}`)));
  });
  return { url: `http://127.0.0.1:${port}` };
}
