export { buildApp, type AppOptions } from './http/app.js';
export { startServer, type ServerOptions } from './http/server.js';
export { loadConfig, ConfigError, type KeybrakeConfig, type LoadConfigOptions } from './config.js';
export { SqliteStore, type SqliteStoreOptions } from './store/sqlite-store.js';
export type { KeyLimits } from './store/key-limits.js';
export { openStore } from './store/open-store.js';
export { RedisStore, type RedisStoreOptions } from './store/redis/redis-store.js';
export type {
  Store,
  VaultKeyRecord,
  VaultKeyState,
  AuditInput,
  AuditCheckpoint,
  AuditEntry,
  AuditHead,
  ReserveInput,
  ReserveOutput,
  ReserveRoom,
  SettleInput,
  StoredResponse,
  CallOutcome,
} from './store/store.js';
export {
  ERROR_TABLE,
  KeybrakeError,
  CapExhaustedError,
  LimitRefusalError,
  StoreUnavailableError,
  InvalidRequestError,
  type ErrorCode,
  type ErrorSpec,
} from './errors.js';
export { canonicalJson } from './audit/canonical-json.js';
export { chainHash, GENESIS_HASH, type AuditRecordJson } from './audit/chain.js';
export {
  CheckpointSigner,
  trustedKeys,
  verifyAuditChain,
  type AuditVerification,
  type AuditFailureReason,
  type ChainEntry,
} from './audit/checkpoints.js';
export { VENDORS, BUILT_IN_VENDORS, VendorRegistry, VendorRegistryError } from './vendors/index.js';
export type { VendorModule } from './vendors/vendor.js';
export { VendorsFileError } from './vendors/vendors-file.js';
