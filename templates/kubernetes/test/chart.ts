import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

const run = promisify(execFile);

/** The chart, the value sets CI renders, and the committed plain manifests. */
export const CHART_DIR = fileURLToPath(new URL('../keybrake', import.meta.url));
export const CI_VALUES_DIR = fileURLToPath(new URL('../keybrake/ci', import.meta.url));
export const MANIFESTS_DIR = fileURLToPath(new URL('../manifests', import.meta.url));
export const MANIFESTS_VALUES = fileURLToPath(new URL('../manifests.values.yaml', import.meta.url));
export const DOCKERFILE = fileURLToPath(new URL('../../../Dockerfile', import.meta.url));
export const STRICT_DECODE_DIR = fileURLToPath(new URL('../strict-decode', import.meta.url));

/** The Kubernetes version `helm lint`/`helm template` assume (also in scripts/render-kubernetes-manifests.sh). */
export const KUBE_VERSION = '1.33.0';

/** The pinned Helm built by `scripts/install-helm.sh`. */
export function helmBinary(): string {
  const binary = process.env.HELM_BIN;
  if (!binary) {
    throw new Error('HELM_BIN is not set: run the tests with `pnpm test` (scripts/test.sh installs Helm).');
  }
  return binary;
}

/** What a Helm command answered. */
export interface HelmOutput {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export async function helm(args: readonly string[]): Promise<HelmOutput> {
  const binary = helmBinary();
  try {
    const { stdout, stderr } = await run(binary, [...args], { maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failure.code ?? -1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

/** A rendered Kubernetes object, as plain JSON. */
export interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly namespace?: string; readonly [key: string]: any };
  readonly [key: string]: any;
}

/** How to render: `--values` files and `--set`/`--set-string` pairs. */
export interface RenderOptions {
  readonly valuesFiles?: readonly string[];
  readonly set?: Readonly<Record<string, string | number | boolean>>;
  readonly setString?: Readonly<Record<string, string>>;
  readonly releaseName?: string;
  readonly namespace?: string;
}

export function templateArgs(options: RenderOptions = {}): string[] {
  const args = [
    'template',
    options.releaseName ?? 'keybrake',
    CHART_DIR,
    '--namespace',
    options.namespace ?? 'keybrake',
    '--kube-version',
    KUBE_VERSION,
  ];
  for (const file of options.valuesFiles ?? []) args.push('--values', file);
  for (const [name, value] of Object.entries(options.set ?? {})) args.push('--set', `${name}=${String(value)}`);
  for (const [name, value] of Object.entries(options.setString ?? {})) args.push('--set-string', `${name}=${value}`);
  return args;
}

/** Parses a multi-document YAML stream strictly (a duplicate key or a syntax error throws). */
export function parseManifests(text: string): Manifest[] {
  const manifests: Manifest[] = [];
  for (const document of parseAllDocuments(text, { uniqueKeys: true, prettyErrors: true })) {
    if (document.errors.length > 0) throw new Error(document.errors.map((e) => e.message).join('\n'));
    const value = document.toJS() as Manifest | null;
    if (value !== null) manifests.push(value);
  }
  return manifests;
}

/** `helm template` that must succeed; returns the raw text and the objects. */
export async function render(options: RenderOptions = {}): Promise<{ text: string; manifests: Manifest[] }> {
  const output = await helm(templateArgs(options));
  if (output.code !== 0) throw new Error(`helm template failed:\n${output.stderr}`);
  return { text: output.stdout, manifests: parseManifests(output.stdout) };
}

type ModelClass = new (data: any) => { validate(): void };

/** Every kind the chart may render, with the model whose schema checks it. */
const MODELS: Readonly<Record<string, ModelClass>> = {
  'v1/Secret': Secret,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Namespace': Namespace,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/**
 * Validates a manifest against its kind's OpenAPI schema (`kubernetes-models`, or
 * `@kubernetes-models/prometheus-operator` for the ServiceMonitor). A kind with no model fails:
 * nothing the chart renders escapes validation. Argo kinds are linted with `argo lint` instead.
 */
export function validateManifest(manifest: Manifest): void {
  const model = MODELS[`${manifest.apiVersion}/${manifest.kind}`];
  if (!model) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind} (${manifest.metadata.name})`);
  new model(manifest).validate();
}

/** Argo Workflows kinds (`argoproj.io`), which `argo lint --offline` checks. */
export function isArgoKind(manifest: Manifest): boolean {
  return manifest.apiVersion.startsWith('argoproj.io/');
}

export function byKind(manifests: readonly Manifest[], kind: string): Manifest[] {
  return manifests.filter((manifest) => manifest.kind === kind);
}

export function one(manifests: readonly Manifest[], kind: string, name?: string): Manifest {
  const found = byKind(manifests, kind).filter((manifest) => name === undefined || manifest.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0] as Manifest;
}

/** True when every label of `selector` is on `labels` (a matchLabels selector). */
export function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  return Object.entries(selector).every(([name, value]) => labels[name] === value);
}

/** The decoded data of a Secret (`data` is base64; `stringData` as is). */
export function secretData(secret: Manifest): Record<string, string> {
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries((secret.data ?? {}) as Record<string, string>)) {
    data[key] = Buffer.from(value, 'base64').toString('utf8');
  }
  return { ...data, ...((secret.stringData ?? {}) as Record<string, string>) };
}
