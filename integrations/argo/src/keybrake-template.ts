import { ClusterWorkflowTemplate } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/ClusterWorkflowTemplate';
import type { ITemplate } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Template';
import { WorkflowTemplate } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/WorkflowTemplate';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import { ISSUE_SCRIPT, OUTPUT_DIR, REVOKE_SCRIPT } from './scripts.js';

/** The name of the WorkflowTemplate and of its ClusterWorkflowTemplate twin. */
export const KEYBRAKE_TEMPLATE_NAME = 'keybrake';

/**
 * The image of every Keybrake script step: the official Python image, standard library only.
 * Pinned by tag, not digest: the digest could not be learned on the machine that wrote this
 * (no registry access); pin `python:3.13-alpine@sha256:...` in your copy if your policy asks.
 */
export const SCRIPT_IMAGE = 'python:3.13-alpine';

/** Where the proxy is, by default: the Helm chart's Service, release `keybrake` in namespace `keybrake`. */
export const DEFAULT_PROXY_URL = 'http://keybrake.keybrake.svc:8080';

/** The Secret (in the workflow's namespace) and its key that hold the issuer key. */
export const ISSUER_SECRET = { name: 'keybrake-issuer', key: 'api-key' } as const;

/** The key of the per-workflow Secret that holds the vault key (and `key-id`, its id). */
export const VAULT_KEY_SECRET_KEY = 'vault-key';

/** The per-workflow Secrets' names: owned by the Workflow, so deleted with it. */
export const VAULT_KEY_SECRET = 'keybrake-{{workflow.uid}}';
export const TAINTED_VAULT_KEY_SECRET = 'keybrake-{{workflow.uid}}-tainted';

/** The global outputs the issue step sets, for the workflow-level `onExit` revoke. */
export const GLOBAL_KEY_ID = 'keybrake-key-id';
export const GLOBAL_VAULT_KEY_SECRET = 'keybrake-vault-key-secret';

function env(name: string, value: string): IEnvVar {
  return { name, value };
}

const ISSUER_KEY_ENV: IEnvVar = {
  name: 'KEYBRAKE_API_KEY',
  valueFrom: { secretKeyRef: { name: ISSUER_SECRET.name, key: ISSUER_SECRET.key } },
};

/** What every script step shares: image, non-root, read-only root, small, bounded in time (internal). */
export function scriptStep(source: string, variables: IEnvVar[]): Pick<ITemplate, 'script' | 'volumes'> {
  return {
    volumes: [{ name: 'keybrake-outputs', emptyDir: { sizeLimit: '1Mi' } }],
    script: {
      name: 'main',
      image: SCRIPT_IMAGE,
      command: ['python3'],
      source,
      env: [
        ...variables,
        env('KEYBRAKE_NAMESPACE', '{{workflow.namespace}}'),
        env('KEYBRAKE_WORKFLOW_NAME', '{{workflow.name}}'),
        env('KEYBRAKE_WORKFLOW_UID', '{{workflow.uid}}'),
        env('PYTHONUNBUFFERED', '1'),
      ],
      volumeMounts: [{ name: 'keybrake-outputs', mountPath: OUTPUT_DIR }],
      resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { memory: '64Mi' } },
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 65534,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      },
    },
  };
}

function param(name: string, defaultValue?: string, description?: string) {
  return {
    name,
    ...(defaultValue === undefined ? {} : { default: defaultValue }),
    ...(description === undefined ? {} : { description }),
  };
}

function outputPath(name: string, globalName?: string) {
  return { name, valueFrom: { path: `${OUTPUT_DIR}/${name}` }, ...(globalName ? { globalName } : {}) };
}

/** Parameters every issue template takes. */
function issueParameters(label: string, secret: string) {
  return [
    param('vendor', undefined, 'a vendor the proxy serves (its GET /openapi.json lists them)'),
    param('usd-cap', '', 'lifetime cap in USD ("" for none; at least one cap is required)'),
    param('daily-usd-cap', '', 'cap per UTC day in USD ("" for none)'),
    param('allowed-endpoints', undefined, 'JSON array of "METHOD /path", e.g. ["POST /v1/payment_intents"]'),
    param('expires-in', '1h', 'lifetime: 90s, 30m, 2h, 1d or seconds; make it the workflow timeout'),
    param('label', label, 'agent_run_label'),
    param('vault-key-secret', secret, 'the Secret (owned by the Workflow) the vault key is stored in'),
    param('proxy-url', DEFAULT_PROXY_URL, 'the Keybrake proxy'),
  ];
}

function issueEnv(tainted: string, parentKeyId: string): IEnvVar[] {
  return [
    ISSUER_KEY_ENV,
    env('KEYBRAKE_PROXY_URL', '{{inputs.parameters.proxy-url}}'),
    env('KEYBRAKE_VENDOR', '{{inputs.parameters.vendor}}'),
    env('KEYBRAKE_USD_CAP', '{{inputs.parameters.usd-cap}}'),
    env('KEYBRAKE_DAILY_USD_CAP', '{{inputs.parameters.daily-usd-cap}}'),
    env('KEYBRAKE_ALLOWED_ENDPOINTS', '{{inputs.parameters.allowed-endpoints}}'),
    env('KEYBRAKE_EXPIRES_IN', '{{inputs.parameters.expires-in}}'),
    env('KEYBRAKE_LABEL', '{{inputs.parameters.label}}'),
    env('KEYBRAKE_VAULT_KEY_SECRET', '{{inputs.parameters.vault-key-secret}}'),
    env('KEYBRAKE_TAINTED', tainted),
    env('KEYBRAKE_PARENT_KEY_ID', parentKeyId),
  ];
}

/**
 * An issue step may be retried (network error, pod lost). A retry issues a new key and replaces
 * the Secret; the earlier key, if one was issued, is held by nobody and expires with its TTL.
 */
const ISSUE_RETRY = {
  limit: 2,
  retryPolicy: 'Always' as const,
  backoff: { duration: '5s', factor: 2 },
};

/**
 * The templates of the `keybrake` WorkflowTemplate:
 * - `issue-vault-key`: the execution's key; outputs `key-id` (global `keybrake-key-id`) and
 *   `vault-key-secret`, the name of the Secret holding the key. The key itself is in no output.
 * - `issue-tainted-vault-key`: a tainted child of the execution's key for steps that read
 *   untrusted content (money-moving calls refused, reads allowed; spend counts against the parent).
 * - `revoke-vault-key`: for the workflow-level `onExit`; revokes the key (and its children),
 *   reports the spend and `{{workflow.status}}`, deletes the Secrets.
 */
export function keybrakeTemplates(): ITemplate[] {
  return [
    {
      name: 'issue-vault-key',
      metadata: { labels: { 'app.kubernetes.io/component': 'keybrake-issue' } },
      inputs: {
        parameters: [
          ...issueParameters('argo/{{workflow.name}}', VAULT_KEY_SECRET),
          param('tainted', 'false', '"true" for a key that may never move money'),
        ],
      },
      outputs: {
        parameters: [
          outputPath('key-id', GLOBAL_KEY_ID),
          outputPath('vault-key-secret', GLOBAL_VAULT_KEY_SECRET),
          outputPath('expires-at'),
        ],
      },
      activeDeadlineSeconds: 120,
      retryStrategy: ISSUE_RETRY,
      ...scriptStep(ISSUE_SCRIPT, issueEnv('{{inputs.parameters.tainted}}', '')),
    },
    {
      name: 'issue-tainted-vault-key',
      metadata: { labels: { 'app.kubernetes.io/component': 'keybrake-issue' } },
      inputs: {
        parameters: [
          param('parent-key-id', undefined, "the execution's key (issue-vault-key's key-id)"),
          ...issueParameters('argo/{{workflow.name}}/tainted', TAINTED_VAULT_KEY_SECRET),
        ],
      },
      outputs: {
        parameters: [outputPath('key-id'), outputPath('vault-key-secret'), outputPath('expires-at')],
      },
      activeDeadlineSeconds: 120,
      retryStrategy: ISSUE_RETRY,
      ...scriptStep(ISSUE_SCRIPT, issueEnv('true', '{{inputs.parameters.parent-key-id}}')),
    },
    {
      name: 'revoke-vault-key',
      metadata: { labels: { 'app.kubernetes.io/component': 'keybrake-revoke' } },
      inputs: {
        parameters: [
          param('key-id', undefined, `the key to revoke: the global output ${GLOBAL_KEY_ID} of issue-vault-key`),
          param('workflow-status', '', 'pass {{workflow.status}} from the exit handler'),
          param(
            'vault-key-secrets',
            `${VAULT_KEY_SECRET},${TAINTED_VAULT_KEY_SECRET}`,
            'comma-separated Secrets to delete now (they are deleted with the Workflow anyway)',
          ),
          param('proxy-url', DEFAULT_PROXY_URL, 'the Keybrake proxy'),
        ],
      },
      outputs: { parameters: [outputPath('spent-usd')] },
      activeDeadlineSeconds: 300,
      // Revoking is idempotent: retried on anything (the proxy was briefly unreachable).
      retryStrategy: { limit: 4, retryPolicy: 'Always', backoff: { duration: '5s', factor: 2 } },
      ...scriptStep(REVOKE_SCRIPT, [
        ISSUER_KEY_ENV,
        env('KEYBRAKE_PROXY_URL', '{{inputs.parameters.proxy-url}}'),
        env('KEYBRAKE_KEY_ID', '{{inputs.parameters.key-id}}'),
        env('KEYBRAKE_WORKFLOW_STATUS', '{{inputs.parameters.workflow-status}}'),
        env('KEYBRAKE_VAULT_KEY_SECRETS', '{{inputs.parameters.vault-key-secrets}}'),
      ]),
    },
  ];
}

const DESCRIPTION =
  'Keybrake: a capped, allowlisted vault key per workflow execution (issue-vault-key), a tainted child for ' +
  'steps that read untrusted content (issue-tainted-vault-key), revoked in the onExit handler (revoke-vault-key).';

/** The namespaced `keybrake` WorkflowTemplate (`templateRef: {name: keybrake, template: ...}`). */
export function keybrakeWorkflowTemplate(): WorkflowTemplate {
  return new WorkflowTemplate({
    metadata: {
      name: KEYBRAKE_TEMPLATE_NAME,
      labels: { 'app.kubernetes.io/name': 'keybrake', 'app.kubernetes.io/component': 'argo-templates' },
      annotations: { 'workflows.argoproj.io/description': DESCRIPTION },
    },
    spec: { templates: keybrakeTemplates() },
  });
}

/** The same templates cluster-wide (`templateRef: {name: keybrake, template: ..., clusterScope: true}`). */
export function keybrakeClusterWorkflowTemplate(): ClusterWorkflowTemplate {
  return new ClusterWorkflowTemplate({
    metadata: {
      name: KEYBRAKE_TEMPLATE_NAME,
      labels: { 'app.kubernetes.io/name': 'keybrake', 'app.kubernetes.io/component': 'argo-templates' },
      annotations: { 'workflows.argoproj.io/description': DESCRIPTION },
    },
    spec: { templates: keybrakeTemplates() },
  });
}
