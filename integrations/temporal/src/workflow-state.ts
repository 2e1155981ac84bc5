import type { VaultKeyRef } from './constants.js';

/**
 * The vault key of the running workflow execution. Workflow code runs in an isolate of its own
 * per execution, so this module-level slot is per execution.
 */
export const workflowKeyState: {
  /** The execution's key, while `withVaultKey`'s body runs. */
  current: VaultKeyRef | undefined;
  /** What it was issued with, to issue its tainted child alike. */
  input: Readonly<Record<string, unknown>> | undefined;
  /** The tainted child, issued on the first `untrustedActivities` call. */
  tainted: Promise<VaultKeyRef> | undefined;
  /** Set only while an untrusted activity is being scheduled: the key its header carries. */
  scheduling: VaultKeyRef | undefined;
} = { current: undefined, input: undefined, tainted: undefined, scheduling: undefined };
