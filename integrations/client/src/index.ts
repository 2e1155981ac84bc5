export {
  KeybrakeClient,
  type KeybrakeClientOptions,
  type IssueVaultKeyInput,
  type IssuedVaultKey,
  type VaultKeyState,
  type VaultKeyCall,
} from './client.js';
export { KeybrakeApiError, CapExhaustedError } from './errors.js';
export { isCapHit, CAP_HIT_HEADER } from './cap-hit.js';
export { keybrakeRefusal, ERROR_HEADER, TERMINAL_REFUSALS, type TerminalRefusal } from './refusal.js';
export { deriveIdempotencyKey } from './idempotency.js';
