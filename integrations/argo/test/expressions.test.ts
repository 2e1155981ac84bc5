import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KEYBRAKE_EXIT_CODES, LIMIT_REFUSED_EXIT_CODE } from '@keybrake/client';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { KEYBRAKE_RETRY_EXPRESSION, argoTemplateFiles } from '../src/index.js';

const execFileAsync = promisify(execFile);
const TEMPLATES = join(import.meta.dirname, '..', '..', '..', 'templates', 'argo');

interface RetryCase {
  id: string;
  strategy: Record<string, any>;
  phase: 'Failed' | 'Error';
  exitCode: string;
  attempts: number;
  /** What Keybrake's convention requires. */
  retried: boolean;
}

/** Every retryStrategy in the committed Argo YAML, by file and template. */
function committedRetryStrategies(): { where: string; strategy: Record<string, any> }[] {
  return argoTemplateFiles()
    .filter((file) => file.argo)
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(TEMPLATES, file.path), 'utf8')).flatMap((document) =>
        ((document.toJSON() as any).spec.templates as Record<string, any>[])
          .filter((template) => template.retryStrategy !== undefined)
          .map((template) => ({ where: `${file.path}#${template.name}`, strategy: template.retryStrategy })),
      ),
    );
}

/** The controller's test binary built by `scripts/install-argo.sh --expr-test`. */
function exprTestBin(): string {
  const bin = process.env.ARGO_EXPR_TEST_BIN;
  if (!bin) {
    throw new Error(
      'ARGO_EXPR_TEST_BIN is not set: run the tests with `pnpm test` (scripts/test.sh builds it with scripts/install-argo.sh --expr-test).',
    );
  }
  return bin;
}

/** Runs the cases through Argo v4.0.5's own workflow controller (processNodeRetries). */
async function decide(cases: RetryCase[]): Promise<Map<string, { retried: boolean; message: string; error?: string }>> {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-argo-expr-'));
  try {
    const file = join(dir, 'cases.json');
    writeFileSync(file, JSON.stringify(cases.map(({ retried: _retried, ...rest }) => rest)));
    const { stdout } = await execFileAsync(
      exprTestBin(),
      ['-test.run', '^TestKeybrakeRetryExpressions$', '-test.v', '-test.count', '1'],
      { cwd: dir, env: { ...process.env, KEYBRAKE_RETRY_CASES: file }, maxBuffer: 64 * 1024 * 1024 },
    );
    expect(stdout).toContain('--- PASS: TestKeybrakeRetryExpressions');
    const results = new Map<string, { retried: boolean; message: string; error?: string }>();
    for (const line of stdout.split('\n')) {
      if (line.startsWith('KEYBRAKE-RESULT ')) {
        const result = JSON.parse(line.slice('KEYBRAKE-RESULT '.length)) as {
          id: string;
          retried: boolean;
          message: string;
          error?: string;
        };
        results.set(result.id, result);
      }
    }
    return results;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const REFUSAL_CODES = Object.entries(KEYBRAKE_EXIT_CODES);
/** Exit codes of other failures (crash, usage, OOM-kill, SIGTERM) and the neighbours of the range. */
const OTHER_CODES = ['1', '2', '74', '82', '137', '143'];

describe("Keybrake's retry expressions in Argo's own controller (v4.0.5 processNodeRetries)", () => {
  it('vendor steps: a final Keybrake refusal (exit 75 cap hit ... 81) is never retried; other failures and errors are, up to the limit', async () => {
    const strategies = committedRetryStrategies().filter((entry) => entry.strategy.expression !== undefined);
    // Every vendor step of both examples carries the convention, and only that expression.
    expect(strategies.map((entry) => entry.where).sort()).toEqual([
      'examples/billing-agent.yaml#charge-customer',
      'examples/support-agent.yaml#act-on-inbound-email',
      'examples/support-agent.yaml#charge-customer',
    ]);
    const cases: RetryCase[] = [];
    for (const { where, strategy } of strategies) {
      expect(strategy.expression, where).toBe(KEYBRAKE_RETRY_EXPRESSION);
      expect(strategy.retryPolicy, where).toBe('Always');
      for (const [refusal, code] of REFUSAL_CODES) {
        cases.push({
          id: `${where} ${refusal}`,
          strategy,
          phase: 'Failed',
          exitCode: String(code),
          attempts: 1,
          retried: false,
        });
      }
      for (const code of OTHER_CODES) {
        cases.push({
          id: `${where} exit ${code}`,
          strategy,
          phase: 'Failed',
          exitCode: code,
          attempts: 1,
          retried: true,
        });
      }
      // Issue 26: a limit refusal's own exit code is retried (keybrake-exec waited its Retry-After).
      cases.push({
        id: `${where} limit refused`,
        strategy,
        phase: 'Failed',
        exitCode: String(LIMIT_REFUSED_EXIT_CODE),
        attempts: 1,
        retried: true,
      });
      // A pod lost before its container ran: no exit code ("-1" in lastRetry), retried.
      cases.push({ id: `${where} error`, strategy, phase: 'Error', exitCode: '', attempts: 1, retried: true });
      // The limit still holds: after limit + 1 attempts, no more.
      cases.push({
        id: `${where} exhausted`,
        strategy,
        phase: 'Failed',
        exitCode: '1',
        attempts: Number(strategy.limit) + 1,
        retried: false,
      });
      // A cap hit on a later attempt (an earlier one failed otherwise) is not retried either.
      cases.push({
        id: `${where} cap hit on attempt 2`,
        strategy,
        phase: 'Failed',
        exitCode: '75',
        attempts: 2,
        retried: false,
      });
    }
    const results = await decide(cases);
    for (const expected of cases) {
      const result = results.get(expected.id);
      expect(result, expected.id).toBeDefined();
      expect(result!.error, expected.id).toBeUndefined();
      expect(result!.retried, expected.id).toBe(expected.retried);
      if (!expected.retried && expected.exitCode !== '1') {
        expect(result!.message, expected.id).toBe('retryStrategy.expression evaluated to false');
      }
    }
  });

  it('the issue and revoke steps (no expression) are retried on failures and errors alike', async () => {
    const strategies = committedRetryStrategies().filter((entry) => entry.strategy.expression === undefined);
    expect(strategies.length).toBeGreaterThanOrEqual(6); // 3 templates × (WorkflowTemplate, ClusterWorkflowTemplate)
    const cases: RetryCase[] = strategies.flatMap(({ where, strategy }) => [
      { id: `${where} exit 1`, strategy, phase: 'Failed' as const, exitCode: '1', attempts: 1, retried: true },
      { id: `${where} error`, strategy, phase: 'Error' as const, exitCode: '', attempts: 1, retried: true },
    ]);
    const results = await decide(cases);
    for (const expected of cases) {
      expect(results.get(expected.id)?.retried, expected.id).toBe(expected.retried);
    }
  });

  it('the controller really evaluates the expression: without asInt a cap hit would be retried; with != 75 alone, exit 76 would be', async () => {
    const { strategy } = committedRetryStrategies().find((entry) => entry.strategy.expression !== undefined)!;
    const results = await decide([
      {
        id: 'no asInt',
        strategy: { ...strategy, expression: 'lastRetry.exitCode != 75' },
        phase: 'Failed',
        exitCode: '75',
        attempts: 1,
        retried: true,
      },
      {
        id: 'cap only',
        strategy: { ...strategy, expression: 'asInt(lastRetry.exitCode) != 75' },
        phase: 'Failed',
        exitCode: '76',
        attempts: 1,
        retried: true,
      },
    ]);
    // lastRetry.exitCode is a string: compared with the number 75 it is never equal, so the cap hit
    // would be retried. This is why the templates write asInt(...).
    expect(results.get('no asInt')?.retried).toBe(true);
    expect(results.get('cap only')?.retried).toBe(true);
  });
});
