import type { VaultKeyRef } from './constants.js';

/**
 * The vault key of the running workflow execution. Workflow code runs in an isolate of its own
 * per execution, so this module-level slot is per execution.
 */
export const workflowKeyState: { current: VaultKeyRef | undefined } = { current: undefined };
