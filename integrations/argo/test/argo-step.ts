import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { listenOnLoopback } from '../../../core-proxy/test/helpers.js';

const TEMPLATES = join(import.meta.dirname, '..', '..', '..', 'templates', 'argo');

/** A Secret as the fake Kubernetes API holds it. */
export interface StoredSecret {
  readonly metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
  };
  readonly data: Record<string, string>;
}

/**
 * A FAKE Kubernetes API of our own (no kube-apiserver can run here): HTTPS on 127.0.0.1 with a
 * self-signed CA, a service-account folder (`token`, `ca.crt`) as a pod has, and only what the
 * scripts use: create and delete a Secret. It checks the bearer token and refuses a duplicate
 * name (409), as the real API does.
 */
export interface FakeKubernetes {
  readonly host: string;
  readonly port: number;
  /** The folder with `token` and `ca.crt` (KEYBRAKE_SERVICEACCOUNT_DIR). */
  readonly serviceAccountDir: string;
  readonly secrets: Map<string, StoredSecret>;
  readonly requests: { method: string; path: string }[];
  /** Makes every Secret create answer this status (e.g. 403, as without RBAC). */
  refuseCreates(status: number | undefined): void;
  /** A Secret's value, decoded, as the kubelet would hand it to a container. */
  secretValue(namespace: string, name: string, key: string): string;
}

export async function startFakeKubernetes(): Promise<FakeKubernetes> {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-fake-k8s-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'ca.crt'),
      '-days',
      '1',
      '-subj',
      '/CN=kubernetes',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const token = `fake-sa-token-${randomUUID()}`;
  writeFileSync(join(dir, 'token'), token);
  const secrets = new Map<string, StoredSecret>();
  const requests: { method: string; path: string }[] = [];
  let refuse: number | undefined;
  const server: Server = createServer(
    { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'ca.crt')) },
    (request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        const path = request.url ?? '';
        requests.push({ method: request.method ?? '', path });
        const answer = (status: number, value: unknown = { kind: 'Status', code: status }) => {
          response.writeHead(status, { 'content-type': 'application/json' });
          response.end(JSON.stringify(value));
        };
        if (request.headers.authorization !== `Bearer ${token}`) return answer(401);
        const collection = /^\/api\/v1\/namespaces\/([^/]+)\/secrets$/.exec(path);
        const item = /^\/api\/v1\/namespaces\/([^/]+)\/secrets\/([^/]+)$/.exec(path);
        if (collection && request.method === 'POST') {
          if (refuse !== undefined) return answer(refuse);
          const secret = JSON.parse(body) as StoredSecret;
          const key = `${decodeURIComponent(collection[1]!)}/${secret.metadata.name}`;
          if (secrets.has(key)) return answer(409);
          secrets.set(key, secret);
          return answer(201, secret);
        }
        if (item && request.method === 'DELETE') {
          const key = `${decodeURIComponent(item[1]!)}/${decodeURIComponent(item[2]!)}`;
          if (!secrets.delete(key)) return answer(404);
          return answer(200);
        }
        return answer(405);
      });
    },
  );
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const port = await listenOnLoopback(server);
  return {
    host: '127.0.0.1',
    port,
    serviceAccountDir: dir,
    secrets,
    requests,
    refuseCreates: (status) => {
      refuse = status;
    },
    secretValue(namespace, name, key) {
      const secret = secrets.get(`${namespace}/${name}`);
      const value = secret?.data[key];
      if (value === undefined) throw new Error(`Secret ${namespace}/${name} has no key ${key}`);
      return Buffer.from(value, 'base64').toString();
    },
  };
}

/** One template of a committed file, as Argo would read it. */
export function committedTemplate(file: string, name: string): Record<string, any> {
  for (const document of parseAllDocuments(readFileSync(join(TEMPLATES, file), 'utf8'))) {
    const template = ((document.toJSON() as any).spec.templates as Record<string, any>[]).find((t) => t.name === name);
    if (template) return template;
  }
  throw new Error(`no template ${name} in ${file}`);
}

/** Replaces Argo `{{...}}` variables; like Argo's strict lint, an unknown one is an error. */
export function substitute(text: string, variables: Record<string, string>): string {
  return text.replace(/\{\{\s*([^{}]+?)\s*\}\}/g, (_, name: string) => {
    const value = variables[name];
    if (value === undefined) throw new Error(`unresolved {{${name}}} in ${text}`);
    return value;
  });
}

/** What Argo knows about the running workflow. */
export interface WorkflowContext {
  readonly name: string;
  readonly uid: string;
  readonly namespace: string;
  /** `workflow.parameters.*`, `workflow.status`, `steps.name`, ... */
  readonly variables?: Record<string, string>;
}

export function newWorkflow(namespace = 'argo'): WorkflowContext {
  const suffix = randomUUID().slice(0, 5);
  return { name: `billing-agent-${suffix}`, uid: randomUUID(), namespace };
}

export interface StepRun {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Output parameters read from `valueFrom.path`, as Argo collects them. */
  readonly outputs: Record<string, string>;
}

export interface RunStepOptions {
  readonly workflow: WorkflowContext;
  /** The step's `arguments.parameters`. */
  readonly args: Record<string, string>;
  readonly kubernetes: FakeKubernetes;
  /** Values of `secretKeyRef`s the test provides itself (the issuer key Secret): `name/key`. */
  readonly secretRefs: Record<string, string>;
  /**
   * Issue 25: the token the kubelet would project for each audience of a `serviceAccountToken`
   * volume source; an audience left out gets no file (the step then cannot read its token).
   */
  readonly serviceAccountTokens?: Record<string, string>;
}

/**
 * The template's projected service-account token volumes, written as the kubelet does (the token
 * in a timestamped folder behind the `..data` symlink) under `dir`; returns each mount's path
 * there, so the env values that point into the mount can be pointed at it.
 */
function projectTokens(
  template: Record<string, any>,
  dir: string,
  tokens: Record<string, string>,
): Map<string, string> {
  const mounts = new Map<string, string>();
  for (const volume of (template.volumes ?? []) as Record<string, any>[]) {
    const sources = (volume.projected?.sources ?? []) as Record<string, any>[];
    const tokenSources = sources.filter((source) => source.serviceAccountToken);
    if (tokenSources.length === 0) continue;
    const mount = (template.script.volumeMounts as Record<string, any>[]).find((m) => m.name === volume.name);
    if (!mount) continue;
    const root = join(dir, 'projected', volume.name as string);
    const data = join(root, '..2026_12_02_00_00_00.000000001');
    mkdirSync(data, { recursive: true });
    symlinkSync('..2026_12_02_00_00_00.000000001', join(root, '..data'));
    for (const source of tokenSources) {
      const { audience, path } = source.serviceAccountToken as { audience: string; path: string };
      const token = tokens[audience];
      if (token === undefined) continue;
      writeFileSync(join(data, path), token);
      symlinkSync(join('..data', path), join(root, path));
    }
    mounts.set(mount.mountPath as string, root);
  }
  return mounts;
}

/**
 * Runs a script template for real, as Argo's executor would: inputs from arguments and defaults,
 * `{{...}}` filled in, env from values and `secretKeyRef`s (the vault key's from the fake API's
 * stored Secret), the source written to a file and run with python3, outputs read from their paths.
 */
export async function runScriptStep(template: Record<string, any>, options: RunStepOptions): Promise<StepRun> {
  const { workflow } = options;
  const globals: Record<string, string> = {
    'workflow.name': workflow.name,
    'workflow.uid': workflow.uid,
    'workflow.namespace': workflow.namespace,
    ...workflow.variables,
  };
  const inputs: Record<string, string> = {};
  for (const parameter of (template.inputs?.parameters ?? []) as { name: string; default?: string }[]) {
    const given = options.args[parameter.name] ?? parameter.default;
    if (given === undefined) throw new Error(`input ${parameter.name} of ${template.name} has no value`);
    inputs[`inputs.parameters.${parameter.name}`] = substitute(given, globals);
  }
  const variables = { ...globals, ...inputs };
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-argo-step-'));
  const outputDir = join(dir, 'outputs');
  mkdirSync(outputDir);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    KUBERNETES_SERVICE_HOST: options.kubernetes.host,
    KUBERNETES_SERVICE_PORT: String(options.kubernetes.port),
    KEYBRAKE_SERVICEACCOUNT_DIR: options.kubernetes.serviceAccountDir,
    KEYBRAKE_OUTPUT_DIR: outputDir,
  };
  const mounts = projectTokens(template, dir, options.serviceAccountTokens ?? {});
  for (const variable of template.script.env as Record<string, any>[]) {
    if (variable.value !== undefined) {
      let value = substitute(variable.value, variables);
      for (const [mountPath, local] of mounts) {
        if (value.startsWith(`${mountPath}/`)) value = local + value.slice(mountPath.length);
      }
      env[variable.name] = value;
    } else {
      const ref = variable.valueFrom.secretKeyRef as { name: string; key: string; optional?: boolean };
      const name = substitute(ref.name, variables);
      const given = options.secretRefs[`${name}/${ref.key}`];
      if (given !== undefined) env[variable.name] = given;
      // An optional reference to a missing Secret: the kubelet leaves the variable unset.
      else if (ref.optional !== true || options.kubernetes.secrets.has(`${workflow.namespace}/${name}`)) {
        env[variable.name] = options.kubernetes.secretValue(workflow.namespace, name, ref.key);
      }
    }
  }
  const source = join(dir, 'script');
  writeFileSync(source, substitute(template.script.source, variables));
  try {
    const [program, ...args] = template.script.command as string[];
    const child = spawn(program === 'python3' ? 'python3' : program!, [...args, source], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exitCode = await new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
    const outputs: Record<string, string> = {};
    const written = new Set(readdirSync(outputDir));
    for (const output of (template.outputs?.parameters ?? []) as { name: string; valueFrom: { path: string } }[]) {
      const file = output.valueFrom.path.replace(/^\/tmp\/keybrake\//, '');
      if (written.has(file)) outputs[output.name] = readFileSync(join(outputDir, file), 'utf8');
    }
    return { exitCode, stdout, stderr, outputs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
