import type Database from 'better-sqlite3';

/**
 * Issue 25: the `identity` column of `vault_keys` (JSON, `key-identity.ts`), added to a file
 * written before it. Inside the open's schema transaction.
 */
export function addIdentityColumn(db: Database.Database): void {
  const columns = db.prepare('PRAGMA table_info(vault_keys)').all() as { name: string }[];
  if (!columns.some((column) => column.name === 'identity')) db.exec('ALTER TABLE vault_keys ADD COLUMN identity TEXT');
}
