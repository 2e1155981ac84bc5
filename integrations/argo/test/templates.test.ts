import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { ClusterWorkflowTemplate } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/ClusterWorkflowTemplate';
import { Workflow } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Workflow';
import { WorkflowTemplate } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/WorkflowTemplate';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { argoTemplateFiles, renderArgoTemplateFile, toModelJson } from '../src/index.js';

const execFileAsync = promisify(execFile);
const TEMPLATES = join(import.meta.dirname, '..', '..', '..', 'templates', 'argo');

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? yamlFiles(join(dir, entry.name))
      : entry.name.endsWith('.yaml')
        ? [join(dir, entry.name)]
        : [],
  );
}

function documentsOf(path: string): Record<string, any>[] {
  return parseAllDocuments(readFileSync(path, 'utf8')).map((document) => {
    expect(document.errors, path).toEqual([]);
    return document.toJSON() as Record<string, any>;
  });
}

const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  Workflow,
  WorkflowTemplate,
  ClusterWorkflowTemplate,
  ServiceAccount,
  Role,
  RoleBinding,
};

/** Validates one document, as read from YAML, against the full schema of its kind. */
function validateDocument(document: Record<string, any>): void {
  const Model = MODELS[String(document.kind)];
  if (Model === undefined) throw new Error(`no schema for kind ${String(document.kind)}`);
  new Model(toModelJson(document)).validate();
}

/** The argo CLI built by scripts/install-argo.sh (ARGO_BIN), as an offline linter only. */
function argoBin(): string {
  const bin = process.env.ARGO_BIN;
  if (!bin)
    throw new Error('ARGO_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs the argo CLI).');
  return bin;
}

async function argoLint(files: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      argoBin(),
      ['lint', '--offline', '--no-color', '--output', 'simple', ...files],
      {
        env: { ...process.env, NO_COLOR: '1' },
      },
    );
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; code?: number };
    if (typeof failed.code !== 'number') throw error;
    return { ok: false, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

const argoFiles = argoTemplateFiles()
  .filter((file) => file.argo)
  .map((file) => join(TEMPLATES, file.path));

describe('templates/argo (generated from @keybrake/argo)', () => {
  it('the committed YAML is exactly what the builders render (run `pnpm generate:argo` after changing them)', () => {
    const expected = argoTemplateFiles();
    for (const file of expected) {
      const committed = readFileSync(join(TEMPLATES, file.path), 'utf8');
      expect(committed, `templates/argo/${file.path} drifted from the builders`).toBe(renderArgoTemplateFile(file));
    }
    // No committed file that no builder makes.
    expect(
      yamlFiles(TEMPLATES)
        .map((path) => relative(TEMPLATES, path))
        .sort(),
    ).toEqual(expected.map((file) => file.path).sort());
  });

  it('every committed document passes the full schema of its kind (Argo CRDs and Kubernetes kinds)', () => {
    const kinds: string[] = [];
    for (const path of yamlFiles(TEMPLATES)) {
      for (const document of documentsOf(path)) {
        validateDocument(document);
        kinds.push(String(document.kind));
      }
    }
    expect(new Set(kinds)).toEqual(new Set(Object.keys(MODELS)));
  });

  it('schema validation catches a wrong document (an unknown retry policy, step arguments that are not a list)', () => {
    const [template] = documentsOf(join(TEMPLATES, 'keybrake-workflowtemplate.yaml'));
    const broken = structuredClone(template)!;
    broken.spec.templates[0].retryStrategy.retryPolicy = 'Sometimes';
    expect(() => validateDocument(broken)).toThrow(/retryPolicy/);
    const [billing] = documentsOf(join(TEMPLATES, 'examples/billing-agent.yaml'));
    const badArguments = structuredClone(billing)!;
    badArguments.spec.templates[0].steps[0][0].arguments.parameters = 'vendor=stripe';
    expect(() => validateDocument(badArguments)).toThrow(/parameters must be array/);
  });

  it('argo lint --offline (Argo v4.0.5 CLI) passes every template and example, given together so templateRefs resolve', async () => {
    const result = await argoLint(argoFiles);
    expect(result.output).toContain('no linting errors found');
    expect(result.ok).toBe(true);
  });

  it('argo lint --offline rejects an example whose templateRef or output reference is wrong (the lint is not a no-op)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-argo-lint-'));
    try {
      const billing = readFileSync(join(TEMPLATES, 'examples/billing-agent.yaml'), 'utf8');
      const badRef = join(dir, 'bad-ref.yaml');
      writeFileSync(badRef, billing.replace('template: issue-vault-key', 'template: issue-vault-kee'));
      const badOutput = join(dir, 'bad-output.yaml');
      writeFileSync(badOutput, billing.replace('outputs.parameters.vault-key-secret', 'outputs.parameters.vault-key'));
      const template = join(TEMPLATES, 'keybrake-workflowtemplate.yaml');
      const ref = await argoLint([template, badRef]);
      expect(ref.ok).toBe(false);
      expect(ref.output).toContain('keybrake.issue-vault-kee not found');
      const output = await argoLint([template, badOutput]);
      expect(output.ok).toBe(false);
      expect(output.output).toContain('failed to resolve {{steps.issue.outputs.parameters.vault-key}}');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('argo lint --offline resolves the examples against the ClusterWorkflowTemplate alone (templateRef clusterScope: true)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-argo-lint-'));
    try {
      const clusterScoped = join(dir, 'billing-agent-cluster.yaml');
      const billing = readFileSync(join(TEMPLATES, 'examples/billing-agent.yaml'), 'utf8');
      const rewritten = billing.replace(
        /templateRef:\n(\s+)name: keybrake\n/g,
        'templateRef:\n$1name: keybrake\n$1clusterScope: true\n',
      );
      expect(rewritten).not.toBe(billing);
      writeFileSync(clusterScoped, rewritten);
      const cluster = join(TEMPLATES, 'keybrake-clusterworkflowtemplate.yaml');
      const namespaced = join(TEMPLATES, 'keybrake-workflowtemplate.yaml');
      expect((await argoLint([cluster, clusterScoped])).ok).toBe(true);
      // ... and not against the namespaced one: the lint tells the two apart.
      expect((await argoLint([namespaced, clusterScoped])).ok).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('issue 25: every admin step mounts a projected service-account token (audience keybrake, short-lived) and defaults to it', () => {
    let adminSteps = 0;
    for (const path of argoFiles) {
      for (const document of documentsOf(path)) {
        for (const template of document.spec.templates as Record<string, any>[]) {
          const variables = (template.script?.env ?? []) as Record<string, any>[];
          if (!variables.some((variable) => variable.name === 'KEYBRAKE_API_KEY')) continue;
          adminSteps += 1;
          const where = `${path}: ${template.name}`;
          const auth = (template.inputs.parameters as Record<string, any>[]).find((p) => p.name === 'auth');
          expect(auth?.default, where).toBe('service-account-token');
          const tokenFile = variables.find((variable) => variable.name === 'KEYBRAKE_TOKEN_FILE')?.value as string;
          const volume = (template.volumes as Record<string, any>[]).find((v) => v.name === 'keybrake-token');
          const source = volume?.projected?.sources?.[0]?.serviceAccountToken;
          expect(source, where).toMatchObject({ audience: 'keybrake', path: 'token' });
          expect(source.expirationSeconds, where).toBeGreaterThanOrEqual(600);
          expect(source.expirationSeconds, where).toBeLessThanOrEqual(3600);
          const mount = (template.script.volumeMounts as Record<string, any>[]).find(
            (m) => m.name === 'keybrake-token',
          );
          expect(mount, where).toMatchObject({ readOnly: true });
          expect(tokenFile, where).toBe(`${mount!.mountPath}/token`);
        }
      }
    }
    // issue, tainted issue and revoke, in the WorkflowTemplate and the ClusterWorkflowTemplate.
    expect(adminSteps).toBe(6);
  });

  it('no template takes the issuer key as a literal or puts the vault key in a parameter', () => {
    for (const path of argoFiles) {
      const text = readFileSync(path, 'utf8');
      for (const document of documentsOf(path)) {
        for (const template of document.spec.templates as Record<string, any>[]) {
          for (const variable of (template.script?.env ?? []) as Record<string, any>[]) {
            if (variable.name === 'KEYBRAKE_API_KEY') {
              expect(variable.valueFrom?.secretKeyRef, `${path}: ${template.name}`).toEqual({
                name: 'keybrake-issuer',
                key: 'api-key',
                optional: true,
              });
            }
            if (variable.name === 'KEYBRAKE_VAULT_KEY') {
              expect(variable.valueFrom?.secretKeyRef?.key, `${path}: ${template.name}`).toBe('vault-key');
            }
          }
          for (const parameter of (template.outputs?.parameters ?? []) as Record<string, any>[]) {
            expect(['key-id', 'vault-key-secret', 'expires-at', 'spent-usd']).toContain(parameter.name);
          }
        }
      }
      expect(text).not.toMatch(/kb_vk_|kb_admin_/);
    }
  });
});
