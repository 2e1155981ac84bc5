import { ConfigError, type KeybrakeConfig } from '../config.js';
import { SqliteStore } from './sqlite-store.js';
import type { Store } from './store.js';

/** Opens the store the configuration asks for: Redis when `KEYBRAKE_REDIS_URL` is set, else the embedded store. */
export function openStore(config: KeybrakeConfig): Store {
  if (config.redisUrl !== undefined) {
    throw new ConfigError(
      'KEYBRAKE_REDIS_URL is set, but this build has no Redis store yet; unset it to use the embedded store.',
    );
  }
  return new SqliteStore({ dataDir: config.dataDir });
}
