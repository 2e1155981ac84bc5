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

/**
 * The Secret (in the workflow's namespace) and its key that hold the issuer key: read only when a
 * step is given `auth: issuer-key` (the Secret may be absent otherwise).
 */
export const ISSUER_SECRET = { name: 'keybrake-issuer', key: 'api-key' } as const;

/**
 * Issue 25: workload identity, the default. The admin steps authenticate with a projected
 * service-account token of the workflow's service account, for this audience only (a token for the
 * Kubernetes API is not accepted by the proxy, nor this one by the Kubernetes API), short-lived
 * (600 s is the least Kubernetes allows) and rotated by the kubelet. The proxy trusts it through
 * its issuers file (`KEYBRAKE_ISSUERS_FILE`): the cluster's issuer and a policy on
 * `kubernetes.io.namespace` / `kubernetes.io.serviceaccount.name`.
 */
export const SERVICE_ACCOUNT_TOKEN = {
  volume: 'keybrake-token',
  audience: 'keybrake',
  expirationSeconds: 600,
  mountPath: '/var/run/secrets/keybrake',
  path: 'token',
} as const;

/** The values of the admin steps' `auth` parameter; the first is the default. */
export const AUTH_MODES = ['service-account-token', 'issuer-key'] as const;

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
  // Optional: with the default auth (the projected token) there need be no such Secret.
  valueFrom: { secretKeyRef: { name: ISSUER_SECRET.name, key: ISSUER_SECRET.key, optional: true } },
};

/** How an admin step authenticates: the `auth` parameter, the token file, the optional issuer key. */
const ADMIN_AUTH_ENV: IEnvVar[] = [
  env('KEYBRAKE_AUTH', '{{inputs.parameters.auth}}'),
  env('KEYBRAKE_TOKEN_FILE', `${SERVICE_ACCOUNT_TOKEN.mountPath}/${SERVICE_ACCOUNT_TOKEN.path}`),
  ISSUER_KEY_ENV,
];

function authParameter() {
  return param(
    'auth',
    AUTH_MODES[0],
    `how the step proves itself to the proxy: ${AUTH_MODES[0]} (a projected token of the workflow's service ` +
      `account, audience ${SERVICE_ACCOUNT_TOKEN.audience}) or ${AUTH_MODES[1]} (the ${ISSUER_SECRET.name} Secret)`,
  );
}

/**
 * What every script step shares: image, non-root, read-only root, small, bounded in time
 * (internal). `admin` steps also mount the projected service-account token.
 */
export function scriptStep(source: string, variables: IEnvVar[], admin = false): Pick<ITemplate, 'script' | 'volumes'> {
  const tokenVolume = {
    name: SERVICE_ACCOUNT_TOKEN.volume,
    projected: {
      sources: [
        {
          serviceAccountToken: {
            audience: SERVICE_ACCOUNT_TOKEN.audience,
            expirationSeconds: SERVICE_ACCOUNT_TOKEN.expirationSeconds,
            path: SERVICE_ACCOUNT_TOKEN.path,
          },
        },
      ],
    },
  };
  return {
    volumes: [{ name: 'keybrake-outputs', emptyDir: { sizeLimit: '1Mi' } }, ...(admin ? [tokenVolume] : [])],
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
      volumeMounts: [
        { name: 'keybrake-outputs', mountPath: OUTPUT_DIR },
        ...(admin
          ? [{ name: SERVICE_ACCOUNT_TOKEN.volume, mountPath: SERVICE_ACCOUNT_TOKEN.mountPath, readOnly: true }]
          : []),
      ],
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
    authParameter(),
  ];
}

function issueEnv(tainted: string, parentKeyId: string): IEnvVar[] {
  return [
    ...ADMIN_AUTH_ENV,
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
      ...scriptStep(ISSUE_SCRIPT, issueEnv('{{inputs.parameters.tainted}}', ''), true),
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
      ...scriptStep(ISSUE_SCRIPT, issueEnv('true', '{{inputs.parameters.parent-key-id}}'), true),
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
          authParameter(),
        ],
      },
      outputs: { parameters: [outputPath('spent-usd')] },
      activeDeadlineSeconds: 300,
      // Revoking is idempotent: retried on anything (the proxy was briefly unreachable).
      retryStrategy: { limit: 4, retryPolicy: 'Always', backoff: { duration: '5s', factor: 2 } },
      ...scriptStep(
        REVOKE_SCRIPT,
        [
          ...ADMIN_AUTH_ENV,
          env('KEYBRAKE_PROXY_URL', '{{inputs.parameters.proxy-url}}'),
          env('KEYBRAKE_KEY_ID', '{{inputs.parameters.key-id}}'),
          env('KEYBRAKE_WORKFLOW_STATUS', '{{inputs.parameters.workflow-status}}'),
          env('KEYBRAKE_VAULT_KEY_SECRETS', '{{inputs.parameters.vault-key-secrets}}'),
        ],
        true,
      ),
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
