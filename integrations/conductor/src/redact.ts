/** What a vault key is replaced with wherever it would leave the worker. */
export const VAULT_KEY_REDACTED = '[vault key redacted]';

/**
 * `value` as Conductor will store it (its JSON form), with every occurrence of `vaultKey`
 * replaced. Task output and logs are stored by Conductor and shown in its UI, so nothing a worker
 * returns may carry the key, even by accident (an echoed input, an error quoting a header).
 * Vault keys are base64url, which JSON never escapes, so the key is found in the JSON text as is.
 */
export function redactVaultKey<T>(value: T, vaultKey: string): T {
  if (value === undefined || vaultKey === '') return value;
  const text = JSON.stringify(value);
  return (text.includes(vaultKey) ? JSON.parse(text.replaceAll(vaultKey, VAULT_KEY_REDACTED)) : value) as T;
}

/** `text` with every occurrence of `vaultKey` replaced. */
export function redactVaultKeyText(text: string, vaultKey: string): string {
  return vaultKey === '' ? text : text.replaceAll(vaultKey, VAULT_KEY_REDACTED);
}
