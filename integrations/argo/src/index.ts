export {
  keybrakeTemplates,
  keybrakeWorkflowTemplate,
  keybrakeClusterWorkflowTemplate,
  KEYBRAKE_TEMPLATE_NAME,
  SCRIPT_IMAGE,
  DEFAULT_PROXY_URL,
  ISSUER_SECRET,
  SERVICE_ACCOUNT_TOKEN,
  AUTH_MODES,
  VAULT_KEY_SECRET,
  TAINTED_VAULT_KEY_SECRET,
  VAULT_KEY_SECRET_KEY,
  GLOBAL_KEY_ID,
  GLOBAL_VAULT_KEY_SECRET,
} from './keybrake-template.js';
export { keybrakeRetryStrategy, KEYBRAKE_RETRY_EXPRESSION, type KeybrakeRetryOptions } from './retry.js';
export { workflowRbac, WORKFLOW_SERVICE_ACCOUNT } from './rbac.js';
export { billingAgentWorkflow, supportAgentWorkflow, idempotencyKeyExpression, BILLING_CUSTOMERS } from './examples.js';
export { argoTemplateFiles, renderArgoTemplateFile, toArgoJson, toModelJson, type ArgoTemplateFile } from './render.js';
export { ISSUE_SCRIPT, REVOKE_SCRIPT, CHARGE_SCRIPT, EXIT_CODE_MAPPING, OUTPUT_DIR } from './scripts.js';
