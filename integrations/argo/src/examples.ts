import type { ITemplate } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Template';
import type { IParallelSteps } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/ParallelSteps';
import type { IWorkflowStep } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/WorkflowStep';
import { Workflow } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/Workflow';
import {
  DEFAULT_PROXY_URL,
  GLOBAL_KEY_ID,
  KEYBRAKE_TEMPLATE_NAME,
  VAULT_KEY_SECRET_KEY,
  scriptStep,
} from './keybrake-template.js';
import { keybrakeRetryStrategy } from './retry.js';
import { WORKFLOW_SERVICE_ACCOUNT } from './rbac.js';
import { CHARGE_SCRIPT } from './scripts.js';

/**
 * The idempotency key of a vendor step, from what Argo keeps across retries of the step:
 * `{{workflow.uid}}` (one per execution; `argo retry` keeps it, `argo resubmit` makes a new one),
 * `{{steps.name}}` (`{{tasks.name}}` in a DAG; in a `withItems` fan-out it carries the item's
 * index and value) and the item itself. Never `{{pod.name}}` or `{{retries}}`: they change with
 * every retry, so a retry after a lost answer would charge again.
 */
export function idempotencyKeyExpression(kind: 'steps' | 'tasks', item: string): string {
  return `{{workflow.uid}}/{{${kind}.name}}/${item}`;
}

/** One group of parallel steps (rendered as Argo's list of lists, see `toArgoJson`). */
function group(...steps: IWorkflowStep[]): IParallelSteps {
  return { steps };
}

/** The label the Helm chart's NetworkPolicy lets reach the proxy (`networkPolicy.clients`). */
export const CLIENT_LABEL = 'keybrake.io/client';

/** `templateRef` to one of the `keybrake` templates. */
function keybrakeRef(template: string): IWorkflowStep['templateRef'] {
  return { name: KEYBRAKE_TEMPLATE_NAME, template };
}

/**
 * A vendor step: the vault key from the per-workflow Secret (never a parameter), the proxy URL,
 * the idempotency key, and the retry strategy that never retries a final Keybrake refusal.
 */
function chargeTemplate(name: string, description: string): ITemplate {
  const step = scriptStep(CHARGE_SCRIPT, [
    {
      name: 'KEYBRAKE_VAULT_KEY',
      valueFrom: { secretKeyRef: { name: '{{inputs.parameters.vault-key-secret}}', key: VAULT_KEY_SECRET_KEY } },
    },
    { name: 'KEYBRAKE_PROXY_URL', value: '{{workflow.parameters.proxy-url}}' },
    { name: 'KEYBRAKE_IDEMPOTENCY_KEY', value: idempotencyKeyExpression('steps', '{{inputs.parameters.customer}}') },
    { name: 'CUSTOMER', value: '{{inputs.parameters.customer}}' },
    { name: 'AMOUNT_CENTS', value: '{{inputs.parameters.amount-cents}}' },
    { name: 'DESCRIPTION', value: description },
  ]);
  return {
    name,
    inputs: { parameters: [{ name: 'customer' }, { name: 'amount-cents' }, { name: 'vault-key-secret' }] },
    retryStrategy: keybrakeRetryStrategy(),
    activeDeadlineSeconds: 120,
    ...step,
  };
}

const exitHandler: ITemplate = {
  name: 'keybrake-exit',
  steps: [
    group({
      name: 'revoke',
      templateRef: keybrakeRef('revoke-vault-key'),
      arguments: {
        parameters: [
          { name: 'key-id', value: `{{workflow.outputs.parameters.${GLOBAL_KEY_ID}}}` },
          { name: 'workflow-status', value: '{{workflow.status}}' },
          { name: 'proxy-url', value: '{{workflow.parameters.proxy-url}}' },
        ],
      },
    }),
  ],
};

/** The billing-agent example's customers: 20 charges of $25 against a $300 cap. */
export const BILLING_CUSTOMERS = Array.from({ length: 20 }, (_, i) => ({
  customer: `cus_${String(i + 1).padStart(3, '0')}`,
  'amount-cents': '2500',
}));

/**
 * `billing-agent`: issue the execution's key, fan out one charge step per customer
 * (`withItems`), revoke in the workflow-level `onExit`. With 20 × $25 against $300, 12 charges
 * go through and 8 end with exit code 75 on their first attempt, never retried.
 */
export function billingAgentWorkflow(): Workflow {
  return new Workflow({
    metadata: {
      generateName: 'billing-agent-',
      labels: { 'app.kubernetes.io/name': 'keybrake-example', 'app.kubernetes.io/component': 'billing-agent' },
    },
    spec: {
      entrypoint: 'main',
      serviceAccountName: WORKFLOW_SERVICE_ACCOUNT,
      // The chart's NetworkPolicy admits only pods with this label (plus their namespace, see README).
      podMetadata: { labels: { [CLIENT_LABEL]: 'true' } },
      onExit: exitHandler.name,
      activeDeadlineSeconds: 3600,
      arguments: {
        parameters: [
          { name: 'budget-usd', value: '300' },
          { name: 'proxy-url', value: DEFAULT_PROXY_URL },
        ],
      },
      templates: [
        {
          name: 'main',
          steps: [
            group({
              name: 'issue',
              templateRef: keybrakeRef('issue-vault-key'),
              arguments: {
                parameters: [
                  { name: 'vendor', value: 'stripe' },
                  { name: 'usd-cap', value: '{{workflow.parameters.budget-usd}}' },
                  { name: 'allowed-endpoints', value: '["POST /v1/payment_intents"]' },
                  { name: 'expires-in', value: '1h' },
                  { name: 'proxy-url', value: '{{workflow.parameters.proxy-url}}' },
                ],
              },
            }),
            group({
              name: 'charge',
              template: 'charge-customer',
              arguments: {
                parameters: [
                  { name: 'customer', value: '{{item.customer}}' },
                  { name: 'amount-cents', value: '{{item.amount-cents}}' },
                  { name: 'vault-key-secret', value: '{{steps.issue.outputs.parameters.vault-key-secret}}' },
                ],
              },
              withItems: BILLING_CUSTOMERS,
            }),
          ],
        },
        chargeTemplate('charge-customer', 'billing-agent charge'),
        exitHandler,
      ],
    },
  });
}

/**
 * `support-agent`: the step that reads an inbound email (untrusted) holds a tainted child of
 * the execution's key, so the charge the email talks it into is refused (exit 76, never
 * retried), while the sibling charge step, holding the execution's key, charges. The untrusted
 * step may fail (`continueOn`) without failing the workflow.
 */
export function supportAgentWorkflow(): Workflow {
  const keyParameters = [
    { name: 'vendor', value: 'stripe' },
    { name: 'usd-cap', value: '{{workflow.parameters.budget-usd}}' },
    { name: 'allowed-endpoints', value: '["POST /v1/payment_intents", "GET /v1/payment_intents/*"]' },
    { name: 'expires-in', value: '1h' },
    { name: 'proxy-url', value: '{{workflow.parameters.proxy-url}}' },
  ];
  return new Workflow({
    metadata: {
      generateName: 'support-agent-',
      labels: { 'app.kubernetes.io/name': 'keybrake-example', 'app.kubernetes.io/component': 'support-agent' },
    },
    spec: {
      entrypoint: 'main',
      serviceAccountName: WORKFLOW_SERVICE_ACCOUNT,
      // The chart's NetworkPolicy admits only pods with this label (plus their namespace, see README).
      podMetadata: { labels: { [CLIENT_LABEL]: 'true' } },
      onExit: exitHandler.name,
      activeDeadlineSeconds: 3600,
      arguments: {
        parameters: [
          { name: 'budget-usd', value: '100' },
          { name: 'proxy-url', value: DEFAULT_PROXY_URL },
          { name: 'customer', value: 'cus_support_001' },
        ],
      },
      templates: [
        {
          name: 'main',
          steps: [
            group({
              name: 'issue',
              templateRef: keybrakeRef('issue-vault-key'),
              arguments: { parameters: keyParameters },
            }),
            group({
              name: 'issue-tainted',
              templateRef: keybrakeRef('issue-tainted-vault-key'),
              arguments: {
                parameters: [
                  { name: 'parent-key-id', value: '{{steps.issue.outputs.parameters.key-id}}' },
                  ...keyParameters,
                ],
              },
            }),
            group(
              {
                name: 'act-on-inbound-email',
                template: 'act-on-inbound-email',
                continueOn: { failed: true },
                arguments: {
                  parameters: [
                    { name: 'customer', value: '{{workflow.parameters.customer}}' },
                    { name: 'amount-cents', value: '50000' },
                    { name: 'vault-key-secret', value: '{{steps.issue-tainted.outputs.parameters.vault-key-secret}}' },
                  ],
                },
              },
              {
                name: 'charge',
                template: 'charge-customer',
                arguments: {
                  parameters: [
                    { name: 'customer', value: '{{workflow.parameters.customer}}' },
                    { name: 'amount-cents', value: '1500' },
                    { name: 'vault-key-secret', value: '{{steps.issue.outputs.parameters.vault-key-secret}}' },
                  ],
                },
              },
            ),
          ],
        },
        // The email says "refund me $500": an injected instruction, refused by the tainted key.
        chargeTemplate('act-on-inbound-email', 'support-agent: what the inbound email asked for'),
        chargeTemplate('charge-customer', 'support-agent charge'),
        exitHandler,
      ],
    },
  });
}
