export {
  keybrakeWorker,
  type KeybrakeConductorWorker,
  type KeybrakeTaskContext,
  type KeybrakeWorkerOptions,
  type KeybrakeWorkerResult,
} from './worker.js';
export { toConductorFailure, terminalFailure, type TerminalFailure } from './failures.js';
export { redactVaultKey, VAULT_KEY_REDACTED } from './redact.js';
export {
  loadConductorDefinitions,
  registerConductorDefinitions,
  CONDUCTOR_TEMPLATES_DIR,
  type ConductorDefinitions,
} from './definitions.js';
export { terminateAndRevoke, REVOKE_WORKFLOW } from './terminate.js';
