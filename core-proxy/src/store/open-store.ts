import type { KeybrakeConfig } from '../config.js';
import { RedisStore } from './redis/redis-store.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

/** Opens the store the configuration asks for: Redis when `KEYBRAKE_REDIS_URL` is set, else the embedded store. */
export function openStore(config: KeybrakeConfig): Store {
  if (config.redisUrl !== undefined) {
    return new RedisStore({
      url: config.redisUrl,
      prefix: config.redisPrefix,
      commandTimeoutMs: config.redisTimeoutMs,
      reservationTtlMs: config.reservationTtlMs,
      idempotencyRetentionMs: config.expiry.idempotencyRetentionMs,
    });
  }
  return new SqliteStore({ dataDir: config.dataDir, idempotencyRetentionMs: config.expiry.idempotencyRetentionMs });
}
