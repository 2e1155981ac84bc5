import { readFileSync } from 'node:fs';

/** The environment the configuration is read from (`process.env`, or a test's own). */
export type Env = Readonly<Record<string, string | undefined>>;

/** A configuration value that cannot be used; the server refuses to start with it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Reads `NAME`, or the file named by `NAME_FILE` (trailing newline dropped). */
export function readSecret(env: Env, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) {
    try {
      return readFileSync(file, 'utf8').replace(/\r?\n$/, '');
    } catch {
      throw new ConfigError(`${name}_FILE: cannot read the file it names.`);
    }
  }
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** A positive integer setting, or `fallback` when unset. */
export function positiveInt(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new ConfigError(`${name} must be a positive integer.`);
  return value;
}

/** A positive number setting, or `fallback` when unset. */
export function positiveNumber(env: Env, name: string, fallback: number): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!(value > 0)) throw new ConfigError(`${name} must be a positive number.`);
  return value;
}

/** A positive number setting, or `null` when unset. */
export function optionalPositiveNumber(env: Env, name: string): number | null {
  const text = env[name];
  return text === undefined || text === '' ? null : positiveNumber(env, name, 0);
}

/** A `1`/`0` (`true`/`false`) setting; unset is false. */
export function flag(env: Env, name: string): boolean {
  const text = (env[name] ?? '').trim().toLowerCase();
  if (text === '' || text === '0' || text === 'false') return false;
  if (text === '1' || text === 'true') return true;
  throw new ConfigError(`${name} must be 1 or 0.`);
}
