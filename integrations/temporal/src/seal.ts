import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

const PREFIX = 'kbs1';

/**
 * Seals a vault key with AES-256-GCM under a secret only the workers hold, so the workflow history
 * (and anyone who can read it: the Temporal UI, exported histories) sees only ciphertext. The key
 * is SHA-256 of the secret; each seal has a fresh 96-bit IV.
 */
export function sealVaultKey(vaultKey: string, secret: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', createHash('sha256').update(secret).digest(), iv);
  const sealed = Buffer.concat([cipher.update(vaultKey, 'utf8'), cipher.final()]);
  return [
    PREFIX,
    iv.toString('base64url'),
    sealed.toString('base64url'),
    cipher.getAuthTag().toString('base64url'),
  ].join('.');
}

/** Opens a sealed vault key; throws if it was sealed under another secret or tampered with. */
export function unsealVaultKey(sealed: string, secret: string): string {
  const [prefix, iv, body, tag] = sealed.split('.');
  if (prefix !== PREFIX || !iv || !body || !tag) throw new Error('not a sealed Keybrake vault key');
  const decipher = createDecipheriv(
    'aes-256-gcm',
    createHash('sha256').update(secret).digest(),
    Buffer.from(iv, 'base64url'),
  );
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
}
