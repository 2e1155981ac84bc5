import { statSync, readFileSync } from 'node:fs';
import { type JSONWebKeySet, type JWSHeaderParameters, type FlattenedJWSInput, createLocalJWKSet } from 'jose';
import { TokenRefusedError } from '../errors.js';
import type { IssuerConfig } from './issuers-file.js';

/** Options of {@link IssuerKeys}. */
export interface IssuerKeysOptions {
  /**
   * At most one refetch of the JWKS per this many ms, on an unknown `kid` or after a failure: a
   * flood of tokens naming made-up `kid`s cannot turn the proxy into a flood on the issuer.
   * @default 10000
   */
  readonly refreshCooldownMs?: number;
  /** A fetched JWKS is refetched when older than this (a rotation that removed a key). @default 300000 */
  readonly maxAgeMs?: number;
  /** Timeout of one discovery or JWKS fetch. @default 5000 */
  readonly fetchTimeoutMs?: number;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
}

type KeyResolver = ReturnType<typeof createLocalJWKSet>;
/** What jose's local JWKS resolver returns. */
export type VerificationKey = Awaited<ReturnType<KeyResolver>>;

/**
 * The signing keys of one trusted issuer, cached. A static `jwks_file` is re-read when its mtime
 * or size changes (a rotation written on disk needs no restart); a JWKS URL (given, or found by
 * OIDC discovery) is fetched once, refetched when older than `maxAgeMs`, and refetched on a `kid`
 * it does not hold, at most once per `refreshCooldownMs`. Fetches fail closed: no keys, no
 * verification (503 `issuer_unavailable`).
 */
export class IssuerKeys {
  private resolver: KeyResolver | undefined;
  private loadedAt = 0;
  /** When a fetch was last tried (success or not): the rate limit's clock. */
  private lastAttemptAt = Number.NEGATIVE_INFINITY;
  private fileVersion = '';
  private inFlight: Promise<void> | undefined;
  private readonly cooldownMs: number;
  private readonly maxAgeMs: number;
  private readonly fetchTimeoutMs: number;
  private readonly now: () => number;

  constructor(
    readonly config: IssuerConfig,
    options: IssuerKeysOptions = {},
  ) {
    this.cooldownMs = options.refreshCooldownMs ?? 10_000;
    this.maxAgeMs = options.maxAgeMs ?? 300_000;
    this.fetchTimeoutMs = options.fetchTimeoutMs ?? 5000;
    this.now = options.now ?? Date.now;
  }

  /** The key a token's header names (jose's `getKey`), refreshing the set as described above. */
  async keyFor(header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<VerificationKey> {
    await this.ensureFresh();
    const resolver = this.resolver as KeyResolver;
    try {
      return await resolver(header, token);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw error;
      // A kid the set does not hold: the issuer may have rotated. Refetch, rate-limited.
      if (this.config.keys.kind === 'file' || this.now() - this.lastAttemptAt < this.cooldownMs) {
        throw new TokenRefusedError('token_unknown_key');
      }
      await this.refresh();
      try {
        return await (this.resolver as KeyResolver)(header, token);
      } catch (retryError) {
        if ((retryError as { code?: string }).code === 'ERR_JWKS_NO_MATCHING_KEY') {
          throw new TokenRefusedError('token_unknown_key');
        }
        throw retryError;
      }
    }
  }

  private async ensureFresh(): Promise<void> {
    if (this.config.keys.kind === 'file') {
      this.readFile();
      return;
    }
    const stale = this.resolver === undefined || this.now() - this.loadedAt >= this.maxAgeMs;
    if (!stale) return;
    if (this.now() - this.lastAttemptAt < this.cooldownMs) {
      // Tried moments ago and failed: keep the keys we have, or fail closed without a fetch.
      if (this.resolver) return;
      throw new TokenRefusedError('issuer_unavailable');
    }
    try {
      await this.refresh();
    } catch (error) {
      // A set past its age still verifies while the issuer cannot be reached; no set does not.
      if (!this.resolver) throw error;
    }
  }

  /** One fetch at a time; concurrent callers share it. */
  private refresh(): Promise<void> {
    this.inFlight ??= this.fetchKeys().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async fetchKeys(): Promise<void> {
    this.lastAttemptAt = this.now();
    const keys = this.config.keys;
    let jwksUri: string;
    if (keys.kind === 'uri') {
      jwksUri = keys.uri;
    } else if (keys.kind === 'discovery') {
      const discovery = await this.fetchJson(keys.url);
      // OpenID Connect Discovery 1.0, 4.3: the document's issuer must be the one configured.
      if (discovery.issuer !== this.config.issuer || typeof discovery.jwks_uri !== 'string') {
        throw new TokenRefusedError(
          'issuer_unavailable',
          `The discovery document of ${this.config.issuer} names another issuer or no jwks_uri.`,
        );
      }
      jwksUri = discovery.jwks_uri;
    } else {
      this.readFile();
      return;
    }
    this.install(await this.fetchJson(jwksUri));
  }

  private readFile(): void {
    const { path } = this.config.keys as { path: string };
    let version: string;
    try {
      const stat = statSync(path);
      version = `${stat.mtimeMs}:${stat.size}:${stat.ino}`;
    } catch {
      throw new TokenRefusedError('issuer_unavailable', `The JWKS file of ${this.config.issuer} cannot be read.`);
    }
    if (version === this.fileVersion && this.resolver) return;
    let jwks: unknown;
    try {
      jwks = JSON.parse(readFileSync(path, 'utf8'));
    } catch {
      // Caught mid-write, or broken: keep the last good set (if any) and read it again next time.
      if (this.resolver) return;
      throw new TokenRefusedError('issuer_unavailable', `The JWKS file of ${this.config.issuer} is not JSON.`);
    }
    this.install(jwks);
    this.fileVersion = version;
  }

  private install(jwks: unknown): void {
    const keys = (jwks as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys)) {
      throw new TokenRefusedError('issuer_unavailable', `The JWKS of ${this.config.issuer} has no "keys" list.`);
    }
    // Only public keys of asymmetric types: a JWKS listing an `oct` (HMAC) key is never used for it.
    const usable = keys.filter(
      (key): key is Record<string, unknown> =>
        !!key &&
        typeof key === 'object' &&
        ['RSA', 'EC', 'OKP'].includes((key as { kty?: unknown }).kty as string) &&
        (key as { d?: unknown }).d === undefined &&
        ((key as { use?: unknown }).use === undefined || (key as { use?: unknown }).use === 'sig'),
    );
    this.resolver = createLocalJWKSet({ keys: usable } as JSONWebKeySet);
    this.loadedAt = this.now();
  }

  private async fetchJson(url: string): Promise<Record<string, unknown>> {
    let response: Response;
    try {
      response = await fetch(url, {
        signal: AbortSignal.timeout(this.fetchTimeoutMs),
        headers: { accept: 'application/json' },
        redirect: 'error',
      });
    } catch {
      throw new TokenRefusedError('issuer_unavailable', `${url} could not be reached.`);
    }
    if (!response.ok) {
      throw new TokenRefusedError('issuer_unavailable', `${url} answered ${response.status}.`);
    }
    try {
      const body = (await response.json()) as unknown;
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new Error('not an object');
      return body as Record<string, unknown>;
    } catch {
      throw new TokenRefusedError('issuer_unavailable', `${url} did not answer a JSON object.`);
    }
  }
}
