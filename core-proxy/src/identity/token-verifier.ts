import { type JWTPayload, jwtVerify } from 'jose';
import { KeybrakeError, PolicyRefusedError, TokenRefusedError } from '../errors.js';
import { matchesClaim } from './claim-match.js';
import { hasDuplicateKeys } from './duplicate-keys.js';
import { IssuerKeys, type IssuerKeysOptions } from './issuer-keys.js';
import type { KeyIdentity } from '../store/store.js';
import { ASYMMETRIC_ALGORITHMS, type IssuersConfig, type PolicyConfig, type PolicyGrant } from './issuers-file.js';

/** Who called, as a verified token says: recorded on the keys it issues. Never the token itself. */
export type WorkloadIdentity = KeyIdentity;

/** A verified caller: its identity and what its policy grants. */
export interface VerifiedCaller {
  readonly identity: WorkloadIdentity;
  readonly grant: PolicyGrant;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Whether a bearer credential is meant as a JWT: three dot-separated parts (the JWS compact
 * serialization). An issuer key never is (a generated one has no dot), and only a credential that
 * is not one of `KEYBRAKE_API_KEYS` is asked this; the verifier checks the rest, size first.
 */
export function looksLikeJwt(credential: string): boolean {
  return credential.split('.', 4).length === 3;
}

/** Decodes one base64url part to its JSON object, refusing duplicated names. */
function decodePart(part: string, what: string): Record<string, unknown> {
  if (!BASE64URL.test(part)) throw new TokenRefusedError('token_invalid', `The token's ${what} is not base64url.`);
  const text = Buffer.from(part, 'base64url').toString('utf8');
  if (hasDuplicateKeys(text)) {
    throw new TokenRefusedError('token_duplicate_claim', `The token's ${what} names a member twice.`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TokenRefusedError('token_invalid', `The token's ${what} is not JSON.`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new TokenRefusedError('token_invalid', `The token's ${what} is not a JSON object.`);
  }
  return value as Record<string, unknown>;
}

/** jose's refusals as the admin API's codes. */
function tokenError(error: unknown): KeybrakeError {
  if (error instanceof KeybrakeError) return error;
  const { code, claim } = error as { code?: string; claim?: string };
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new TokenRefusedError('token_expired');
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claim === 'nbf' || claim === 'iat') return new TokenRefusedError('token_not_yet_valid');
      if (claim === 'aud') return new TokenRefusedError('token_audience');
      if (claim === 'iss') return new TokenRefusedError('token_issuer');
      return new TokenRefusedError('token_invalid', `The token's "${claim ?? '?'}" claim is missing or invalid.`);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return new TokenRefusedError('token_algorithm');
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return new TokenRefusedError('token_signature');
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return new TokenRefusedError('token_unknown_key');
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return new TokenRefusedError('token_unknown_key', 'The token names no kid and several keys of its issuer fit.');
    default:
      return new TokenRefusedError('token_invalid');
  }
}

/** Options of {@link TokenVerifier}. */
export type TokenVerifierOptions = IssuerKeysOptions;

/**
 * Verifies `Authorization: Bearer <JWT>` against the issuers file and finds the caller's policy.
 * In order: size (before any parsing), shape, duplicated names, `alg` (asymmetric and the
 * issuer's), `iss` (a trusted issuer, exactly), signature (the issuer's JWKS), `exp`, `nbf`,
 * `iat`, `aud`; then the first policy whose every matcher matches. The token is never kept,
 * logged or echoed: errors say what failed, never what the token held.
 */
export class TokenVerifier {
  private readonly keys = new Map<string, IssuerKeys>();
  private readonly now: () => number;

  constructor(
    readonly config: IssuersConfig,
    options: TokenVerifierOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    for (const issuer of config.issuers) this.keys.set(issuer.issuer, new IssuerKeys(issuer, options));
  }

  /** @throws TokenRefusedError (401, or 503 `issuer_unavailable`) or PolicyRefusedError (403 `policy_no_match`). */
  async verify(token: string): Promise<VerifiedCaller> {
    if (Buffer.byteLength(token) > this.config.maxTokenBytes) throw new TokenRefusedError('token_too_large');
    const parts = token.split('.');
    if (parts.length !== 3) throw new TokenRefusedError('token_invalid');
    const header = decodePart(parts[0] as string, 'header');
    const payload = decodePart(parts[1] as string, 'payload');
    if (typeof header.alg !== 'string' || !ASYMMETRIC_ALGORITHMS.has(header.alg)) {
      throw new TokenRefusedError('token_algorithm');
    }
    const issuerKeys = typeof payload.iss === 'string' ? this.keys.get(payload.iss) : undefined;
    if (!issuerKeys) throw new TokenRefusedError('token_issuer');
    const issuer = issuerKeys.config;
    if (!issuer.algorithms.includes(header.alg)) throw new TokenRefusedError('token_algorithm');
    const nowMs = this.now();
    let claims: JWTPayload;
    try {
      ({ payload: claims } = await jwtVerify(token, (h, t) => issuerKeys.keyFor(h, t), {
        issuer: issuer.issuer,
        audience: [...issuer.audiences],
        algorithms: [...issuer.algorithms],
        clockTolerance: issuer.clockSkewSeconds,
        currentDate: new Date(nowMs),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (error) {
      throw tokenError(error);
    }
    // jose reads `iat` only for a maximum token age: one from the future is not yet valid either.
    if (typeof claims.iat === 'number' && claims.iat > nowMs / 1000 + issuer.clockSkewSeconds) {
      throw new TokenRefusedError('token_not_yet_valid');
    }
    if (typeof claims.sub !== 'string' || claims.sub === '') {
      throw new TokenRefusedError('token_invalid', 'The token has no subject (sub).');
    }
    const policy = this.policyFor(claims);
    return { identity: { issuer: issuer.issuer, subject: claims.sub, policy: policy.name }, grant: policy.grant };
  }

  private policyFor(claims: JWTPayload): PolicyConfig {
    const policy = this.config.policies.find((candidate) => candidate.match.every((m) => matchesClaim(m, claims)));
    if (!policy) throw new PolicyRefusedError('policy_no_match');
    return policy;
  }
}
