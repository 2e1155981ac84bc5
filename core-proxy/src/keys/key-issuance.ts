import { type EndpointPattern, formatEndpointPattern, isPatternCovered, parseEndpointPattern } from './allowlist.js';
import { parseExpiresIn } from './durations.js';
import { parseAlertsField } from '../alerts/alert-thresholds.js';
import { InvalidRequestError, VendorNotConfiguredError } from '../errors.js';
import { type Micros, usdToMicros } from '../pricing/money.js';
import { BUILT_IN_REGISTRY, type VendorRegistry } from '../vendors/registry.js';
import { type KeyLimits, MAX_LIMIT_VALUE, hasLimits } from '../store/key-limits.js';

/** The largest cap accepted: a billion dollars keeps every micro-dollar sum exact in a double. */
const MAX_CAP_USD = 1_000_000_000;
const MAX_ENDPOINTS = 100;
/** Characters a run label may not hold: control (Cc), format (Cf, incl. bidi), separators (Zl, Zp), surrogates, private use, unassigned. */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}\p{Co}\p{Cn}]/u;
/** The fields of a `POST /vault/keys` body; any other is refused. */
export const ISSUANCE_FIELDS: ReadonlySet<string> = new Set([
  'vendor',
  'daily_usd_cap',
  'usd_cap',
  'allowed_endpoints',
  'expires_in',
  'agent_run_label',
  'parent_key_id',
  'tainted',
  'alerts',
  // Issue 26.
  'max_requests_per_second',
  'max_requests_per_minute',
  'max_concurrent',
]);

/** A validated `POST /vault/keys` body. */
export interface IssueKeyInput {
  readonly vendor: string;
  readonly dailyCapMicros: Micros | null;
  readonly capMicros: Micros | null;
  readonly allowedEndpoints: readonly EndpointPattern[];
  readonly ttlSeconds: number;
  readonly agentRunLabel: string | null;
  readonly parentKeyId: string | null;
  readonly tainted: boolean;
  /** `alerts` (issue 26): thresholds ascending; null when absent (the server's defaults apply). */
  readonly alertFractions: readonly number[] | null;
  /** Issue 26: request and concurrency limits; null when none is set. */
  readonly limits: KeyLimits | null;
}

/** Issue 26: an optional limit, an integer from 1 to `MAX_LIMIT_VALUE`. */
function parseLimit(body: Record<string, unknown>, field: string): number | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIMIT_VALUE) {
    throw new InvalidRequestError(`${field} must be an integer from 1 to ${MAX_LIMIT_VALUE}.`);
  }
  return value;
}

function parseCap(body: Record<string, unknown>, field: string): Micros | null {
  const value = body[field];
  if (value === undefined || value === null) return null;
  // Regression: schemathesis found 5e-324 accepted and stored as a $0 cap. Spend is counted in
  // micro-dollars, so a cap must be at least one.
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0.000001 || value > MAX_CAP_USD) {
    throw new InvalidRequestError(`${field} must be a number from 0.000001 to ${MAX_CAP_USD}.`);
  }
  return usdToMicros(value);
}

/**
 * Validates a `POST /vault/keys` body. Unknown fields are refused rather than ignored: a typo in
 * `usd_cap` must not silently issue a key with no lifetime cap.
 * @param configuredVendors vendors whose real secrets are configured.
 * @param vendors every vendor the proxy serves. @default the built-in ones
 */
export function parseIssueKeyInput(
  body: unknown,
  configuredVendors: ReadonlySet<string>,
  vendors: VendorRegistry = BUILT_IN_REGISTRY,
): IssueKeyInput {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new InvalidRequestError('The body must be a JSON object.');
  }
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((field) => !ISSUANCE_FIELDS.has(field));
  if (unknown.length > 0) throw new InvalidRequestError(`Unknown field(s): ${unknown.join(', ')}.`);

  const vendor = fields.vendor;
  if (typeof vendor !== 'string' || !vendors.has(vendor)) {
    throw new InvalidRequestError(`vendor must be one of: ${vendors.names().join(', ')}.`);
  }

  const dailyCapMicros = parseCap(fields, 'daily_usd_cap');
  const capMicros = parseCap(fields, 'usd_cap');
  if (dailyCapMicros === null && capMicros === null) {
    throw new InvalidRequestError('At least one of daily_usd_cap and usd_cap is required.');
  }

  const endpoints = fields.allowed_endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0 || endpoints.length > MAX_ENDPOINTS) {
    throw new InvalidRequestError(`allowed_endpoints must be a non-empty array of at most ${MAX_ENDPOINTS} entries.`);
  }
  const allowedEndpoints = endpoints.map((entry) => {
    if (typeof entry !== 'string') throw new InvalidRequestError('allowed_endpoints entries must be strings.');
    return parseEndpointPattern(entry);
  });

  const ttlSeconds = parseExpiresIn(fields.expires_in);

  const label = fields.agent_run_label;
  if (label !== undefined && label !== null) {
    // Control and format characters (bidi overrides U+202A-U+202E, isolates U+2066-U+2069), line
    // and paragraph separators, lone surrogates: a label could be spoofed in a display. Regression: issue 16.
    if (typeof label !== 'string' || label.length < 1 || label.length > 200 || UNPRINTABLE.test(label)) {
      throw new InvalidRequestError(
        'agent_run_label must be a string of 1 to 200 printable characters (no control, format or bidi characters).',
      );
    }
  }

  const parentKeyId = fields.parent_key_id;
  if (parentKeyId !== undefined && parentKeyId !== null && (typeof parentKeyId !== 'string' || parentKeyId === '')) {
    throw new InvalidRequestError('parent_key_id must be a key id string.');
  }
  const tainted = fields.tainted;
  if (tainted !== undefined && typeof tainted !== 'boolean') {
    throw new InvalidRequestError('tainted must be a boolean.');
  }
  const alertFractions = parseAlertsField(fields.alerts);

  const limits: KeyLimits = {
    maxRequestsPerSecond: parseLimit(fields, 'max_requests_per_second'),
    maxRequestsPerMinute: parseLimit(fields, 'max_requests_per_minute'),
    maxConcurrent: parseLimit(fields, 'max_concurrent'),
  };

  // Validation first, configuration second: a malformed body is the caller's bug either way.
  if (!configuredVendors.has(vendor)) {
    throw new VendorNotConfiguredError(vendor);
  }

  return {
    vendor,
    dailyCapMicros,
    capMicros,
    allowedEndpoints,
    ttlSeconds,
    agentRunLabel: (label as string | undefined) ?? null,
    parentKeyId: (parentKeyId as string | undefined) ?? null,
    tainted: tainted === true,
    alertFractions,
    limits: hasLimits(limits) ? limits : null,
  };
}

/** Refuses a child whose allowlist is wider than its parent's. */
export function assertWithinParent(child: readonly EndpointPattern[], parentEndpoints: readonly string[]): void {
  const parent = parentEndpoints.map(parseEndpointPattern);
  const wider = child.filter((pattern) => !isPatternCovered(pattern, parent));
  if (wider.length > 0) {
    throw new InvalidRequestError(
      `A child key may not allow more than its parent: ${wider.map(formatEndpointPattern).join(', ')}.`,
    );
  }
}
