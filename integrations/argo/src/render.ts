import { stringify } from 'yaml';
import { billingAgentWorkflow, supportAgentWorkflow } from './examples.js';
import { keybrakeClusterWorkflowTemplate, keybrakeWorkflowTemplate } from './keybrake-template.js';
import { workflowRbac } from './rbac.js';

/** One committed YAML file of `templates/argo/`: its path there and its documents. */
export interface ArgoTemplateFile {
  /** Relative to `templates/argo/`. */
  readonly path: string;
  /** What the file is, for its header. */
  readonly description: string;
  /** The Kubernetes objects, validated against their schemas. */
  readonly documents: readonly { toJSON(): unknown; validate(): void }[];
  /** Whether the file holds Argo kinds (`argo lint` reads those). */
  readonly argo: boolean;
}

/** Every file of `templates/argo/`, built from the typed builders. */
export function argoTemplateFiles(): ArgoTemplateFile[] {
  return [
    {
      path: 'keybrake-workflowtemplate.yaml',
      description: 'The keybrake WorkflowTemplate: issue-vault-key, issue-tainted-vault-key, revoke-vault-key',
      documents: [keybrakeWorkflowTemplate()],
      argo: true,
    },
    {
      path: 'keybrake-clusterworkflowtemplate.yaml',
      description: 'The same templates as a ClusterWorkflowTemplate (templateRef with clusterScope: true)',
      documents: [keybrakeClusterWorkflowTemplate()],
      argo: true,
    },
    {
      path: 'rbac.yaml',
      description:
        "The workflows' service account (its projected token, audience keybrake, is the workflow's identity to " +
        'the proxy) and what it may do (Secrets create/delete, task results)',
      documents: workflowRbac(),
      argo: false,
    },
    {
      path: 'examples/billing-agent.yaml',
      description:
        'Example: withItems fan-out of charges under one capped key, never retried on a cap hit, revoked onExit',
      documents: [billingAgentWorkflow()],
      argo: true,
    },
    {
      path: 'examples/support-agent.yaml',
      description: 'Example: the step reading an inbound email holds a tainted child key; its charge is refused',
      documents: [supportAgentWorkflow()],
      argo: true,
    },
  ];
}

type Json = Record<string, unknown>;

/** Maps every template's `steps` of an object (Workflow, WorkflowTemplate, ...) with `groups`. */
function mapSteps(object: unknown, groups: (group: unknown) => unknown): unknown {
  const spec = (object as { spec?: { templates?: Json[] } }).spec;
  if (!spec?.templates) return object;
  return {
    ...(object as Json),
    spec: {
      ...spec,
      templates: spec.templates.map((template) =>
        Array.isArray(template.steps) ? { ...template, steps: template.steps.map(groups) } : template,
      ),
    },
  };
}

/**
 * Argo's JSON of a model: a group of parallel steps is a bare list (Argo's `ParallelSteps`
 * marshals so), where `@kubernetes-models/argo-workflows` types and validates it as
 * `{steps: [...]}`, the Go struct's shape.
 */
export function toArgoJson(object: unknown): unknown {
  return mapSteps(object, (group) => (group as { steps: unknown[] }).steps);
}

/** The inverse of {@link toArgoJson}: a YAML document as read, in the models' shape, to validate. */
export function toModelJson(object: unknown): unknown {
  return mapSteps(object, (group) => (Array.isArray(group) ? { steps: group } : group));
}

/** The YAML text of a file, as committed. */
export function renderArgoTemplateFile(file: ArgoTemplateFile): string {
  const header = `# ${file.description}.\n# Generated from integrations/argo/src by \`pnpm generate:argo\`: edit the builders, not this file.\n`;
  const body = file.documents
    .map((document) => stringify(toArgoJson(document.toJSON()), { lineWidth: 0, blockQuote: 'literal' }))
    .join('---\n');
  return `${header}${body}`;
}
