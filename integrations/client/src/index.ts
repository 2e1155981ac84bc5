export {
  KeybrakeClient,
  type KeybrakeClientOptions,
  type IssueVaultKeyInput,
  type IssuedVaultKey,
  type VaultKeyState,
  type VaultKeyCall,
} from './client.js';
export { KeybrakeApiError, CapExhaustedError, TokenFileError } from './errors.js';
export { fromTokenFile, type TokenProvider, type TokenFileOptions } from './token-provider.js';
export { BUILT_IN_VENDORS, type BuiltInVendor, type VendorName } from './vendors.js';
export { isCapHit, CAP_HIT_HEADER } from './cap-hit.js';
export { keybrakeRefusal, ERROR_HEADER, TERMINAL_REFUSALS, type TerminalRefusal } from './refusal.js';
export { limitRefusal, isLimitRefusal, retryAfterMs, LIMIT_REFUSALS, type LimitRefusal } from './limit-refusal.js';
export { deriveIdempotencyKey } from './idempotency.js';
export {
  KEYBRAKE_EXIT_CODES,
  CAP_HIT_EXIT_CODE,
  LIMIT_REFUSED_EXIT_CODE,
  KEYBRAKE_EXIT_CODE_MIN,
  KEYBRAKE_EXIT_CODE_MAX,
  exitCodeFor,
  refusalForExitCode,
} from './exit-codes.js';
export { runExec, type ExecOptions, type ExecOutcome } from './exec.js';
