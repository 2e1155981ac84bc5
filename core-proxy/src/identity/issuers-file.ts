import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, type Env, positiveInt } from '../env.js';
import { type EndpointPattern, parseEndpointPattern } from '../keys/allowlist.js';
import { MAX_TTL_SECONDS, parseExpiresIn } from '../keys/durations.js';
import { type Micros, usdToMicros } from '../pricing/money.js';
import { type ClaimMatcher, parseClaimMatcher } from './claim-match.js';
import { isCanonicalLabel } from './run-label.js';

/**
 * Asymmetric JWS algorithms only. `none` and HMAC (`HS*`) are refused when the file is loaded and
 * again when a token is verified: an HMAC "signature" made with the issuer's public key would
 * otherwise verify (the classic RS256-to-HS256 confusion).
 */
export const ASYMMETRIC_ALGORITHMS: ReadonlySet<string> = new Set([
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]);

/** The largest clock skew an issuer may allow: 5 minutes. */
const MAX_CLOCK_SKEW_SECONDS = 300;

/** One trusted token issuer of `KEYBRAKE_ISSUERS_FILE`. */
export interface IssuerConfig {
  /** The exact `iss` claim its tokens carry. */
  readonly issuer: string;
  /**
   * Where its keys come from: a static JWKS file (re-read when it changes), a JWKS URL, or OIDC
   * discovery (`{issuer}/.well-known/openid-configuration` → `jwks_uri`).
   */
  readonly keys:
    | { readonly kind: 'file'; readonly path: string }
    | { readonly kind: 'uri'; readonly uri: string }
    | { readonly kind: 'discovery'; readonly url: string };
  /** Accepted `aud` values: a token must name at least one. */
  readonly audiences: readonly string[];
  /** Accepted `alg` values, all asymmetric. */
  readonly algorithms: readonly string[];
  /** Seconds of clock skew allowed on `exp`, `nbf` and `iat`. @default 30 */
  readonly clockSkewSeconds: number;
}

/** What a policy lets an identity do. */
export interface PolicyGrant {
  /** Vendors it may issue keys for. */
  readonly vendors: ReadonlySet<string>;
  /** When set, every key must have a `usd_cap` of at most this. */
  readonly maxCapMicros: Micros | null;
  /** When set, every key must have a `daily_usd_cap` of at most this. */
  readonly maxDailyCapMicros: Micros | null;
  /** The longest `expires_in`. @default 7 days */
  readonly maxTtlSeconds: number;
  /** When set, every requested allowlist entry must be covered by one of these. */
  readonly allowedEndpoints: readonly EndpointPattern[] | null;
  /** When set, `agent_run_label` is required, canonical, and starts with this. */
  readonly labelPrefix: string | null;
  /**
   * Keys not issued to this identity (another issuer or subject, or an issuer key): `none`, not
   * even read; `read` (GET, list, calls); `manage` (also revoke and taint). @default 'none'
   */
  readonly otherKeys: 'none' | 'read' | 'manage';
}

/** One policy: the claims it matches, and its grant. */
export interface PolicyConfig {
  readonly name: string;
  /** Every matcher must match; one always matches `iss` exactly. */
  readonly match: readonly ClaimMatcher[];
  readonly grant: PolicyGrant;
}

/** The parsed `KEYBRAKE_ISSUERS_FILE`. */
export interface IssuersConfig {
  readonly issuers: readonly IssuerConfig[];
  /** In file order: the first that matches a token is its policy. */
  readonly policies: readonly PolicyConfig[];
  /** Tokens longer than this are refused before they are parsed. @default 8192 */
  readonly maxTokenBytes: number;
}

/**
 * A `KEYBRAKE_ISSUERS_FILE` the proxy cannot use: the server does not start. The message names the
 * file and the field (`issuers.yaml: policies[0].grant.vendors: "stripee" is not a vendor`).
 */
export class IssuersFileError extends ConfigError {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${file}: ${field === '' ? '' : `${field}: `}${problem}`);
  }
}

type Fail = (field: string, problem: string) => never;

function object(value: unknown, field: string, fail: Fail, allowed: readonly string[]): Record<string, unknown> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) fail(field, 'must be a mapping.');
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((name) => !allowed.includes(name));
  if (unknown.length > 0) fail(field, `unknown field(s): ${unknown.join(', ')} (allowed: ${allowed.join(', ')}).`);
  return fields;
}

function text(value: unknown, field: string, fail: Fail): string {
  if (typeof value !== 'string' || value.trim() === '') fail(field, 'must be a non-empty string.');
  return value as string;
}

function texts(value: unknown, field: string, fail: Fail): string[] {
  if (!Array.isArray(value) || value.length === 0) fail(field, 'must be a non-empty list of strings.');
  return (value as unknown[]).map((entry, i) => text(entry, `${field}[${i}]`, fail));
}

function httpUrl(value: string, field: string, fail: Fail): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(field, `"${value}" is not a URL.`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(field, 'must be an http(s) URL.');
  return value;
}

/** `30s`, `2m` or a number of seconds, as `expires_in` reads. */
function seconds(value: unknown, field: string, fail: Fail): number {
  if (value === 0) return 0;
  try {
    return parseExpiresIn(value);
  } catch {
    return fail(field, 'must look like "30s", "5m", "2h", "1d" or be a whole number of seconds.');
  }
}

function usd(value: unknown, field: string, fail: Fail): Micros | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0.000001 || value > 1_000_000_000) {
    fail(field, 'must be a number of USD from 0.000001 to 1000000000.');
  }
  return usdToMicros(value as number);
}

function parseIssuer(value: unknown, field: string, fail: Fail, baseDir: string): IssuerConfig {
  const fields = object(value, field, fail, [
    'issuer',
    'jwks_file',
    'jwks_uri',
    'audiences',
    'algorithms',
    'clock_skew',
  ]);
  const issuer = text(fields.issuer, `${field}.issuer`, fail);
  if (fields.jwks_file !== undefined && fields.jwks_uri !== undefined) {
    fail(field, 'name jwks_file or jwks_uri, not both.');
  }
  let keys: IssuerConfig['keys'];
  if (fields.jwks_file !== undefined) {
    keys = { kind: 'file', path: resolve(baseDir, text(fields.jwks_file, `${field}.jwks_file`, fail)) };
  } else if (fields.jwks_uri !== undefined) {
    keys = { kind: 'uri', uri: httpUrl(text(fields.jwks_uri, `${field}.jwks_uri`, fail), `${field}.jwks_uri`, fail) };
  } else {
    httpUrl(issuer, `${field}.issuer`, fail);
    keys = { kind: 'discovery', url: `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration` };
  }
  const algorithms = texts(fields.algorithms, `${field}.algorithms`, fail);
  for (const [i, algorithm] of algorithms.entries()) {
    if (!ASYMMETRIC_ALGORITHMS.has(algorithm)) {
      fail(
        `${field}.algorithms[${i}]`,
        `"${algorithm}" is not an asymmetric JWS algorithm (none and HS* are refused; use ${[...ASYMMETRIC_ALGORITHMS].join(', ')}).`,
      );
    }
  }
  const clockSkewSeconds =
    fields.clock_skew === undefined ? 30 : seconds(fields.clock_skew, `${field}.clock_skew`, fail);
  if (clockSkewSeconds > MAX_CLOCK_SKEW_SECONDS) fail(`${field}.clock_skew`, 'may be at most 5m.');
  return {
    issuer,
    keys,
    audiences: texts(fields.audiences, `${field}.audiences`, fail),
    algorithms,
    clockSkewSeconds,
  };
}

function parseGrant(value: unknown, field: string, fail: Fail, vendors: ReadonlySet<string>): PolicyGrant {
  const fields = object(value, field, fail, [
    'vendors',
    'max_usd_cap',
    'max_daily_usd_cap',
    'max_ttl',
    'allowed_endpoints',
    'label_prefix',
    'other_keys',
  ]);
  const grantVendors = texts(fields.vendors, `${field}.vendors`, fail);
  for (const [i, vendor] of grantVendors.entries()) {
    if (!vendors.has(vendor)) fail(`${field}.vendors[${i}]`, `"${vendor}" is not a vendor of this proxy.`);
  }
  let allowedEndpoints: EndpointPattern[] | null = null;
  if (fields.allowed_endpoints !== undefined) {
    allowedEndpoints = texts(fields.allowed_endpoints, `${field}.allowed_endpoints`, fail).map((entry, i) => {
      try {
        return parseEndpointPattern(entry);
      } catch (error) {
        return fail(`${field}.allowed_endpoints[${i}]`, (error as Error).message);
      }
    });
  }
  let labelPrefix: string | null = null;
  if (fields.label_prefix !== undefined) {
    labelPrefix = text(fields.label_prefix, `${field}.label_prefix`, fail);
    // The prefix is compared with canonical labels only, so it must be canonical itself.
    if (!isCanonicalLabel(labelPrefix)) {
      fail(`${field}.label_prefix`, 'must be canonical: no "." or ".." segment, no "//", "%" or "\\".');
    }
  }
  const otherKeys = fields.other_keys ?? 'none';
  if (otherKeys !== 'none' && otherKeys !== 'read' && otherKeys !== 'manage') {
    fail(`${field}.other_keys`, 'must be none, read or manage.');
  }
  const maxTtlSeconds =
    fields.max_ttl === undefined ? MAX_TTL_SECONDS : seconds(fields.max_ttl, `${field}.max_ttl`, fail);
  return {
    vendors: new Set(grantVendors),
    maxCapMicros: usd(fields.max_usd_cap, `${field}.max_usd_cap`, fail),
    maxDailyCapMicros: usd(fields.max_daily_usd_cap, `${field}.max_daily_usd_cap`, fail),
    maxTtlSeconds,
    allowedEndpoints,
    labelPrefix,
    otherKeys: otherKeys as PolicyGrant['otherKeys'],
  };
}

/**
 * Parses an issuers file's text.
 * @param file the path, for errors; relative `jwks_file` paths are read from its folder.
 * @param vendors the vendors the proxy serves (a grant naming another is refused).
 * @throws IssuersFileError naming the field at fault.
 */
export function parseIssuersFile(
  source: string,
  file: string,
  vendors: ReadonlySet<string>,
  maxTokenBytes = 8192,
): IssuersConfig {
  const fail: Fail = (field, problem) => {
    throw new IssuersFileError(file, field, problem);
  };
  const document = parseDocument(source, { uniqueKeys: true });
  if (document.errors.length > 0) fail('', `not valid YAML: ${document.errors[0]?.message ?? ''}`);
  const root = object(document.toJS(), '', fail, ['issuers', 'policies']);
  if (!Array.isArray(root.issuers) || root.issuers.length === 0) fail('issuers', 'must be a non-empty list.');
  const baseDir = dirname(resolve(file));
  const issuers = (root.issuers as unknown[]).map((entry, i) => parseIssuer(entry, `issuers[${i}]`, fail, baseDir));
  const issuerNames = new Set<string>();
  for (const [i, issuer] of issuers.entries()) {
    if (issuerNames.has(issuer.issuer)) fail(`issuers[${i}].issuer`, `"${issuer.issuer}" is listed twice.`);
    issuerNames.add(issuer.issuer);
  }
  if (!Array.isArray(root.policies) || root.policies.length === 0) fail('policies', 'must be a non-empty list.');
  const names = new Set<string>();
  const policies = (root.policies as unknown[]).map((entry, i): PolicyConfig => {
    const field = `policies[${i}]`;
    const fields = object(entry, field, fail, ['name', 'match', 'grant']);
    const name = text(fields.name, `${field}.name`, fail);
    if (names.has(name)) fail(`${field}.name`, `"${name}" is used twice.`);
    names.add(name);
    const match = object(fields.match, `${field}.match`, fail, Object.keys(fields.match ?? {}));
    // A policy is bound to one issuer: the same `sub` minted by another issuer is another identity.
    if (typeof match.iss !== 'string' || !issuerNames.has(match.iss)) {
      fail(`${field}.match.iss`, 'is required: the exact issuer of one of the issuers entries.');
    }
    const matchers = Object.entries(match).map(([claim, expected]) => {
      try {
        return parseClaimMatcher(claim, expected, claim === 'iss');
      } catch (error) {
        return fail(`${field}.match.${claim}`, (error as Error).message);
      }
    });
    return { name, match: matchers, grant: parseGrant(fields.grant, `${field}.grant`, fail, vendors) };
  });
  return { issuers, policies, maxTokenBytes };
}

/**
 * Reads `KEYBRAKE_ISSUERS_FILE` (unset: no workload identity, issuer keys only) and
 * `KEYBRAKE_MAX_TOKEN_BYTES`.
 */
export function loadIssuersConfig(env: Env, vendors: ReadonlySet<string>): IssuersConfig | null {
  const file = env.KEYBRAKE_ISSUERS_FILE;
  if (file === undefined || file === '') return null;
  let source: string;
  try {
    source = readFileSync(file, 'utf8');
  } catch {
    throw new IssuersFileError(file, '', 'cannot read the file (KEYBRAKE_ISSUERS_FILE).');
  }
  return parseIssuersFile(source, file, vendors, positiveInt(env, 'KEYBRAKE_MAX_TOKEN_BYTES', 8192));
}
