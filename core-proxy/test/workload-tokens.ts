import { createHmac, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// No vitest import here: other packages' tests may mint tokens with it too.

/** An RSA signing key of a test issuer, with its public JWK. */
export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicJwk: Record<string, unknown>;
  /** The public key as SPKI PEM (the "secret" of the HS256 confusion attack). */
  readonly publicPem: string;
}

/** A fresh RSA-2048 key with a random `kid`. */
export function newSigningKey(kid = `k-${randomUUID()}`): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid,
    privateKey,
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' },
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

const b64 = (text: string): string => Buffer.from(text).toString('base64url');

/**
 * Signs exactly the header and payload texts given (so a test can put a duplicated claim in
 * them), RS256 with `key`, or HS256 with `hmacSecret`, or not at all (`alg: none`).
 */
export function signRaw(
  headerText: string,
  payloadText: string,
  signer: { readonly key: SigningKey } | { readonly hmacSecret: string } | 'unsigned',
): string {
  const input = `${b64(headerText)}.${b64(payloadText)}`;
  if (signer === 'unsigned') return `${input}.`;
  if ('hmacSecret' in signer)
    return `${input}.${createHmac('sha256', signer.hmacSecret).update(input).digest('base64url')}`;
  return `${input}.${sign('sha256', Buffer.from(input), signer.key.privateKey).toString('base64url')}`;
}

/** An RS256 JWT of `claims` signed by `key` (its `kid` in the header unless `kid` says otherwise). */
export function signToken(key: SigningKey, claims: Record<string, unknown>, kid: string | null = key.kid): string {
  const header = kid === null ? { alg: 'RS256', typ: 'JWT' } : { alg: 'RS256', typ: 'JWT', kid };
  return signRaw(JSON.stringify(header), JSON.stringify(claims), { key });
}

/** A static JWKS file in a fresh folder; `write` replaces it atomically (a rotation on disk). */
export interface JwksFile {
  readonly path: string;
  write(keys: readonly SigningKey[]): void;
}

export function jwksFile(keys: readonly SigningKey[]): JwksFile {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-jwks-'));
  const path = join(dir, 'jwks.json');
  let version = 0;
  const write = (next: readonly SigningKey[]): void => {
    version += 1;
    const temp = join(dir, `jwks.json.${version}`);
    writeFileSync(temp, JSON.stringify({ keys: next.map((key) => key.publicJwk) }));
    renameSync(temp, path);
  };
  write(keys);
  return { path, write };
}

/** Writes an issuers file (YAML is a superset of JSON: the object as JSON) and returns its path. */
export function issuersFile(content: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'keybrake-issuers-'));
  const path = join(dir, 'issuers.yaml');
  writeFileSync(path, JSON.stringify(content, null, 2));
  return path;
}

/** A projected token volume of {@link projectedTokenVolume}. */
export interface ProjectedTokenVolume {
  /** The `token` file a workload reads. */
  readonly path: string;
  /** Writes a new version of the token the way the kubelet rotates it. */
  rotate(token: string): void;
  /** Removes the volume's folder. */
  remove(): void;
}

/**
 * A projected volume as the kubelet writes it (its AtomicWriter), holding `firstToken`: each
 * version of the files in a timestamped hidden folder, `..data` a symlink to the current one, and
 * `token` a symlink to `..data/token`. A rotation writes a new folder, points `..data_tmp` at it,
 * renames `..data_tmp` over `..data` (the one atomic step) and removes the old folder.
 */
export function projectedTokenVolume(firstToken: string): ProjectedTokenVolume {
  const dir = mkdtempSync(join(tmpdir(), 'kb-projected-'));
  let current: string | undefined;
  let version = 0;
  const rotate = (token: string): void => {
    version += 1;
    const folder = `..2026_12_02_00_00_00.${String(version).padStart(9, '0')}`;
    mkdirSync(join(dir, folder));
    writeFileSync(join(dir, folder, 'token'), token);
    symlinkSync(folder, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    if (current !== undefined) rmSync(join(dir, current), { recursive: true });
    current = folder;
  };
  rotate(firstToken);
  symlinkSync(join('..data', 'token'), join(dir, 'token'));
  return { path: join(dir, 'token'), rotate, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
