import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import {
  InvalidWorkflowSourceError,
  mergeSubworkflows,
  SubworkflowNameClashError,
  subworkflowNames,
  subworkflowsSource,
} from '../src/index.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const REPO_TEMPLATE = fileURLToPath(
  new URL('../../../templates/cloud-workflows/keybrake.subworkflows.yaml', import.meta.url),
);

const USER_SOURCE = `# my billing workflow
main:
  params: [args]
  steps:
    - key:
        call: keybrake_issue_vault_key
        args:
          proxy_url: \${args.proxy_url}
          issuer_key: \${args.k}
          vendor: stripe
          usd_cap: 5
          allowed_endpoints: ["POST /v1/payment_intents"]
        result: key
    - done:
        return: \${key.key_id}
my_helper:
  params: [x]
  steps:
    - back:
        return: \${x}
`;

/** Every step of every subworkflow, depth-first. */
function allSteps(node: unknown, out: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (Array.isArray(node)) node.forEach((item) => allSteps(item, out));
  else if (node !== null && typeof node === 'object') {
    const record = node as Record<string, unknown>;
    if ('call' in record) out.push(record);
    Object.values(record).forEach((value) => allSteps(value, out));
  }
  return out;
}

describe('mergeSubworkflows', () => {
  it('appends every Keybrake subworkflow and keeps the user’s definitions, comments and main', () => {
    const merged = mergeSubworkflows(USER_SOURCE);
    const parsed = parse(merged) as Record<string, { steps: unknown[] }>;
    expect(merged.startsWith('# my billing workflow')).toBe(true);
    expect(Object.keys(parsed).slice(0, 2)).toEqual(['main', 'my_helper']);
    for (const name of subworkflowNames()) expect(parsed[name], name).toBeDefined();
    expect(subworkflowNames()).toEqual(
      expect.arrayContaining([
        'keybrake_issue_vault_key',
        'keybrake_issue_tainted_vault_key',
        'keybrake_call',
        'keybrake_revoke_vault_key',
        'keybrake_retry_predicate',
      ]),
    );
    // The user's main, not the example's.
    expect(JSON.stringify(parsed.main)).toContain('keybrake_issue_vault_key');
    expect(JSON.stringify(parsed.main)).not.toContain('fan_out');
  });

  it('refuses a name clash with a clear error instead of overwriting', () => {
    const clashing = `${USER_SOURCE}keybrake_call:\n  steps:\n    - x:\n        return: 1\n`;
    const error = (() => {
      try {
        return mergeSubworkflows(clashing);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(SubworkflowNameClashError);
    expect((error as SubworkflowNameClashError).code).toBe('subworkflow_name_clash');
    expect((error as SubworkflowNameClashError).names).toEqual(['keybrake_call']);
    expect((error as Error).message).toMatch(/`keybrake_call`.*Rename yours/);
  });

  it('takes a plain list of steps as main, JSON as well as YAML, and refuses what is not a workflow', () => {
    const fromList = parse(mergeSubworkflows('- done:\n    return: 1\n')) as Record<string, { steps: unknown[] }>;
    expect(fromList.main?.steps).toEqual([{ done: { return: 1 } }]);
    const fromJson = parse(mergeSubworkflows(JSON.stringify({ main: { steps: [{ done: { return: 2 } }] } })));
    expect((fromJson as Record<string, unknown>).keybrake_call).toBeDefined();
    expect(() => mergeSubworkflows('just a string')).toThrow(InvalidWorkflowSourceError);
    expect(() => mergeSubworkflows('helper:\n  steps: []\n')).toThrow(/no `main`/);
    expect(() => mergeSubworkflows('main: [unclosed')).toThrow(InvalidWorkflowSourceError);
    const withExample = parse(mergeSubworkflows('helper:\n  steps: []\n', { includeExampleMain: true }));
    expect(JSON.stringify((withExample as Record<string, unknown>).main)).toContain('fan_out');
  });

  it('the CLI merges a file to stdout or --out, and names the clash with exit 2', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-gcw-merge-'));
    const file = join(dir, 'workflow.yaml');
    writeFileSync(file, USER_SOURCE);
    const run = promisify(execFile);
    const printed = await run(process.execPath, [CLI, 'merge', file]);
    expect(printed.stdout).toBe(mergeSubworkflows(USER_SOURCE));
    await run(process.execPath, [CLI, 'merge', file, '--out', join(dir, 'merged.yaml')]);
    expect(readFileSync(join(dir, 'merged.yaml'), 'utf8')).toBe(printed.stdout);
    writeFileSync(file, `${USER_SOURCE}keybrake_revoke_vault_key:\n  steps: []\n`);
    const failed = await run(process.execPath, [CLI, 'merge', file]).catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect((failed as { code: number }).code).toBe(2);
    expect((failed as { stderr: string }).stderr).toContain('subworkflow_name_clash');
  });
});

describe('the template', () => {
  it('ships in the package exactly as in templates/cloud-workflows', () => {
    expect(subworkflowsSource()).toBe(readFileSync(REPO_TEMPLATE, 'utf8'));
  });

  it('never logs: no sys.log step anywhere, and no step passes the issuer key or vault key to anything but HTTP calls and our own subworkflows', () => {
    const template = parse(subworkflowsSource()) as Record<string, unknown>;
    const calls = allSteps(template);
    expect(calls.filter((step) => String(step.call).startsWith('sys.log'))).toEqual([]);
    for (const step of calls) {
      const target = String(step.call);
      const args = JSON.stringify(step.args ?? {});
      if (/vault_key|issuer_key/.test(args)) {
        expect(target, `${target} is handed a key`).toMatch(/^(http\.|keybrake_)/);
      }
    }
  });

  it('issue 25: admin calls default to workload identity (auth OIDC, audience the proxy URL); the issuer key is the option', () => {
    const template = parse(subworkflowsSource()) as Record<string, { params?: unknown[]; steps?: unknown[] }>;
    const httpCalls = (name: string) =>
      allSteps(template[name]).filter((step) => String(step.call).startsWith('http.'));
    // Only keybrake_admin_call talks to the admin API; the public subworkflows go through it.
    for (const name of ['keybrake_issue_vault_key', 'keybrake_get_vault_key', 'keybrake_revoke_vault_key']) {
      expect(httpCalls(name), name).toEqual([]);
      expect(template[name]?.params, name).toContainEqual({ issuer_key: '' });
      expect(
        allSteps(template[name]).map((step) => step.call),
        name,
      ).toContain('keybrake_admin_call');
    }
    const admin = httpCalls('keybrake_admin_call');
    const oidc = admin.filter((step) => (step.args as any).auth !== undefined);
    const keyed = admin.filter((step) => (step.args as any).headers !== undefined);
    expect(oidc.map((step) => step.call).sort()).toEqual(['http.delete', 'http.get', 'http.post']);
    expect(keyed.map((step) => step.call).sort()).toEqual(['http.delete', 'http.get', 'http.post']);
    for (const step of oidc) {
      expect((step.args as any).auth).toEqual({ type: 'OIDC', audience: '${oidc_audience}' });
      // No Authorization header beside it: the ID token is the only credential.
      expect((step.args as any).headers).toBeUndefined();
    }
    for (const step of keyed)
      expect((step.args as any).headers).toEqual({ Authorization: '${"Bearer " + issuer_key}' });
    const source = subworkflowsSource();
    expect(source).toContain('- oidc_audience: ${proxy_url}');
    // Each route's switch condition is the opposite of the other's (the emulator runs every match).
    expect(source.match(/and issuer_key == ""\}/g)).toHaveLength(3);
    expect(source.match(/and issuer_key != ""\}/g)).toHaveLength(3);
    // The example's default is workload identity: issuer_key "" unless a flag says otherwise.
    expect(source).toMatch(/- identity_default:\s+assign:\s+#[^\n]*\n\s+- issuer_key: ''/);
  });

  it('names the cap hit KeybrakeCapExhausted with code 429, and the retry predicate takes `e`', () => {
    const template = parse(subworkflowsSource()) as Record<string, { params?: unknown[] }>;
    expect(template.keybrake_retry_predicate?.params).toEqual(['e']);
    expect(subworkflowsSource()).toMatch(/tags: \['KeybrakeCapExhausted'\]\s+code: 429/);
    expect(subworkflowsSource()).toContain('googleapis.secretmanager.v1.projects.secrets.versions.accessString');
  });
});
