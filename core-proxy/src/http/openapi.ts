/**
 * The OpenAPI 3.1 document of the admin API, the proxy and the error shape, served at
 * `/openapi.json`. It restates `shared/CONTRACT.md` and writes down what the contract leaves open.
 */
import { CHAIN_FAILURE_REASONS } from '../archive/verify.js';
import { MAX_KEY_DEPTH } from '../keys/key-depth.js';
import { BUILT_IN_REGISTRY, type VendorRegistry } from '../vendors/registry.js';

const error = (description: string, codes: string[]) => ({
  description: `${description} (error.code: ${codes.join(', ')})`,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

const keyIdParam = { name: 'key_id', in: 'path', required: true, schema: { type: 'string' } };
const cursorSchema = { type: 'string', pattern: '^[A-Za-z0-9_-]+$', minLength: 1, maxLength: 400 };
const query = (name: string, schema: Record<string, unknown>, description: string) => ({
  name,
  in: 'query',
  required: false,
  schema,
  description,
});
const unauthorized = error('Missing or wrong issuer key, or a bearer JWT that does not verify (issue 25)', [
  'unauthorized',
  'token_invalid',
  'token_too_large',
  'token_algorithm',
  'token_duplicate_claim',
  'token_expired',
  'token_not_yet_valid',
  'token_issuer',
  'token_audience',
  'token_unknown_key',
  'token_signature',
]);
const storeDown = error("The store, or a token issuer's keys (JWKS, discovery), cannot be reached; nothing changed", [
  'store_unavailable',
  'issuer_unavailable',
]);
/** Issue 25: a workload identity (bearer JWT) asking for more than its policy grants. */
const beyondPolicy = error('A workload identity beyond its policy (issue 25); nothing changed', [
  'policy_no_match',
  'policy_vendor',
  'policy_cap',
  'policy_ttl',
  'policy_endpoints',
  'policy_label',
  'policy_not_own_key',
]);
const operatorOnly = error('A workload token on a route that needs an issuer key (issue 25)', [
  'policy_no_match',
  'policy_operator_only',
]);
/** Issue 25: the identity a key was issued to. */
const identitySchema = {
  oneOf: [{ $ref: '#/components/schemas/KeyIdentity' }, { type: 'null' }],
  description: 'Issue 25: the workload identity the key was issued to (never the token); null: an issuer key',
};

/** `{"checkpoint": Checkpoint | null}`, the answer of `POST /audit/checkpoints`. */
const newestCheckpoint = {
  'application/json': {
    schema: {
      type: 'object',
      properties: { checkpoint: { oneOf: [{ $ref: '#/components/schemas/Checkpoint' }, { type: 'null' }] } },
    },
  },
};

/**
 * How proxied calls are priced and the environment that configures it (issue 17; docs/pricing.md):
 * every catalogued money-moving endpoint is priced, or refused until given a cost rule.
 */
function pricingConfiguration(vendors: VendorRegistry) {
  const vendorKnobs = [...vendors].flatMap((vendor) => Object.entries(vendor.options?.environment ?? {}));
  return {
    description:
      'Money-moving endpoints are priced from the request (and Stripe PaymentIntents from their tracked state), ' +
      'or refused with 400 request_not_priceable until given a cost rule. A vendor 5xx keeps the reservation as unknown spend.',
    environment: {
      KEYBRAKE_FX_RATES: 'USD per unit of each other currency (Stripe amounts, Twilio price_unit), e.g. eur=1.08',
      KEYBRAKE_COST_RULES: 'JSON flat USD cost per endpoint the proxy does not price itself',
      KEYBRAKE_SENSITIVE_ENDPOINTS: 'JSON endpoints refused to tainted requests, besides the catalogue',
      KEYBRAKE_STRIPE_READ_BEFORE_WRITE:
        '1: GET a PaymentIntent the proxy has not seen, to price a call on it (default 0: refused)',
      KEYBRAKE_VENDORS_FILE: 'YAML file declaring more vendors with no code (README, "Vendors from configuration")',
      ...Object.fromEntries(vendorKnobs),
    },
  };
}

/**
 * The OpenAPI document for the vendors one proxy serves: the `vendor` enums list the built-in
 * vendors and those declared in `KEYBRAKE_VENDORS_FILE`.
 */
export function openApiDocument(vendors: VendorRegistry) {
  const vendorNames = vendors.names();
  return {
    openapi: '3.1.0',
    info: {
      title: 'Keybrake',
      version: '1',
      description:
        'Credential-enforcement proxy: scoped, capped, revocable vault keys in front of Stripe, Twilio and Resend. ' +
        'Money is reserved before a call is forwarded and settled from the vendor response. Every proxied request ' +
        'appends a record to a SHA-256 hash chain: hash_n = sha256(hex(hash_{n-1}) || canonical_json(record_n)), ' +
        'hash_0 = 64 zeros, canonical JSON = keys sorted, no whitespace; record_n is the `calls` entry of the record.',
      'x-keybrake-serve': {
        environment: {
          KEYBRAKE_WORKERS:
            'keybrake serve worker processes on one port and one data directory (also serve --workers N); every guarantee holds across them as across replicas (default 1)',
        },
      },
      'x-keybrake-archive': {
        description:
          'The audit archive (README, "Audit archive"): sealed, checkpointed ranges of the chain written once as ' +
          'segments/<first>-<last>.jsonl.gz to a sink, read back (size and SHA-256), then trimmed from the live store.',
        environment: {
          KEYBRAKE_ARCHIVE:
            'dir:/path, s3://bucket/prefix or off (default: dir:<data dir>/archive embedded; off on Redis)',
          KEYBRAKE_ARCHIVE_S3_ENDPOINT: 'S3-compatible endpoint (MinIO, Ceph, R2, GCS); credentials from AWS_* only',
          KEYBRAKE_ARCHIVE_S3_REGION: 'S3 region (default AWS_REGION or us-east-1)',
          KEYBRAKE_ARCHIVE_S3_PATH_STYLE: '1: path-style URLs (default 0)',
          KEYBRAKE_ARCHIVE_S3_TIMEOUT: 'Longest one S3 request may take (default 30s)',
          KEYBRAKE_ARCHIVE_OBJECT_LOCK:
            'Days of Object Lock COMPLIANCE retention per segment (the bucket must have Object Lock)',
          KEYBRAKE_AUDIT_LIVE_RECORDS: 'Newest records kept live (default 1000000)',
          KEYBRAKE_AUDIT_LIVE_HOURS:
            'Records younger than this stay live (default 168; KEYBRAKE_AUDIT_LIVE_SECONDS wins if set)',
          KEYBRAKE_ARCHIVE_INTERVAL: 'Time between archive rounds without a backlog (default 60s)',
          KEYBRAKE_ARCHIVE_SEGMENT_RECORDS: 'Most records per segment (default 10000)',
        },
      },
      'x-keybrake-workload-identity': {
        description:
          'Issue 25 (README, "Workload identity"): the admin API also takes Authorization: Bearer <JWT> from the issuers ' +
          'of KEYBRAKE_ISSUERS_FILE, verified against their JWKS (asymmetric algorithms only; exp, nbf, iat, iss and aud ' +
          'checked with the clock skew; duplicated claims refused). The first policy whose match entries all match the ' +
          'claims bounds what the caller may issue (vendors, caps, TTL, an allowlist ceiling, a run-label prefix) and ' +
          'which keys it may read, revoke or taint. Issuer keys keep working and are never JWTs.',
        environment: {
          KEYBRAKE_ISSUERS_FILE: 'YAML file of trusted token issuers and their policies; unset: issuer keys only',
          KEYBRAKE_MAX_TOKEN_BYTES:
            'Bearer JWTs longer than this are refused unparsed, 401 token_too_large (default 8192)',
        },
      },
      'x-keybrake-expiry': {
        description:
          'Removal of expired keys (README, "Removal of expired keys"), on the archive\'s schedule and lease: a key family whose ' +
          'root key expired longer ago than the retention goes, once no call of it is in flight, no alert of it is pending and ' +
          'none of its audit records is live; afterwards its keys answer 404 not_found and its vault keys 401 invalid_vault_key. ' +
          'Kept idempotent responses go past their retention.',
        environment: {
          KEYBRAKE_EXPIRED_KEY_RETENTION: 'How long a family stays after its root key expired (default 30d; 36h, 90m)',
          KEYBRAKE_IDEMPOTENCY_RETENTION:
            'How long a kept idempotent response replays (default 24h; less than 24h is refused at start-up)',
        },
      },
      'x-keybrake-alerts': {
        description:
          'Threshold and cap-hit alerts (README, "Alerts"): each fires once per key, cap period and threshold across every replica, ' +
          'from a durable outbox in the store, POSTed with Keybrake-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">.',
        environment: {
          KEYBRAKE_ALERT_WEBHOOK_URL:
            'Where alerts are POSTed (read like a secret, also _FILE; never logged). Unset: none sent',
          KEYBRAKE_ALERT_WEBHOOK_SECRET:
            'HMAC-SHA256 key of Keybrake-Signature (also _FILE; never logged); required with json',
          KEYBRAKE_ALERT_FORMAT: 'json (default) or slack (an incoming-webhook {"text"} body)',
          KEYBRAKE_ALERT_THRESHOLDS:
            'Thresholds of a key issued without alerts, when a webhook is set (default 0.8,1; empty: none)',
          KEYBRAKE_ALERT_MAX_ATTEMPTS: 'Attempts before an alert is marked failed (default 12)',
          KEYBRAKE_ALERT_MAX_AGE_S: 'Age past which an undelivered alert is marked failed (default 86400)',
          KEYBRAKE_ALERT_RETRY_BASE_MS:
            'First retry delay, doubled per attempt up to 5 minutes, with jitter (default 1000)',
          KEYBRAKE_ALERT_TIMEOUT_MS: 'One delivery attempt; a timeout is retried (default 10000)',
        },
        webhookBody: {
          type: 'object',
          required: [
            'id',
            'type',
            'created_at',
            'key_id',
            'agent_run_label',
            'vendor',
            'spent_usd',
            'cap_usd',
            'cap',
            'period',
            'at_fraction',
          ],
          properties: {
            id: { type: 'string', description: 'Stable per key, cap period and threshold: de-duplicate on it' },
            type: { enum: ['keybrake.alert.threshold', 'keybrake.alert.cap_hit'] },
            created_at: { type: 'string', format: 'date-time' },
            key_id: { type: 'string' },
            agent_run_label: { type: ['string', 'null'] },
            vendor: { type: 'string' },
            spent_usd: {
              type: 'number',
              description: 'Spend on the cap when it fired (a cap hit: settled plus reserved)',
            },
            cap_usd: { type: 'number' },
            cap: { enum: ['lifetime', 'daily'] },
            period: { type: 'string', description: 'lifetime, or the UTC day (YYYY-MM-DD) of the daily cap' },
            at_fraction: { type: ['number', 'null'], description: 'null for a cap hit' },
          },
        },
      },
    },
    components: {
      securitySchemes: {
        issuerKey: { type: 'http', scheme: 'bearer', description: 'One of KEYBRAKE_API_KEYS' },
        workloadToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description:
            'Issue 25: a JWT of an issuer of KEYBRAKE_ISSUERS_FILE; /vault/keys routes only, within its policy',
        },
      },
      schemas: {
        KeyIdentity: {
          type: 'object',
          required: ['issuer', 'subject', 'policy'],
          properties: {
            issuer: { type: 'string', description: "The token's iss" },
            subject: { type: 'string', description: "The token's sub" },
            policy: { type: 'string', description: 'The policy of the issuers file that matched' },
          },
        },
        Checkpoint: {
          type: 'object',
          description:
            'Ed25519 signature (base64) over canonical_json({"type":"keybrake.audit.checkpoint/v1","records","head","at","key_id"}); ' +
            'key_id = first 16 hex digits of sha256(SPKI DER of the public key)',
          required: ['records', 'head', 'at', 'key_id', 'signature'],
          properties: {
            records: { type: 'integer', minimum: 1 },
            head: { type: 'string' },
            at: { type: 'string', format: 'date-time' },
            key_id: { type: 'string' },
            signature: { type: 'string' },
          },
        },
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: { code: { type: 'string', pattern: '^[a-z_]+$' }, message: { type: 'string' } },
            },
          },
        },
        IssueKeyRequest: {
          type: 'object',
          additionalProperties: false,
          required: ['vendor', 'allowed_endpoints', 'expires_in'],
          anyOf: [{ required: ['daily_usd_cap'] }, { required: ['usd_cap'] }],
          description: 'At least one of daily_usd_cap and usd_cap. Unknown fields are refused.',
          properties: {
            vendor: { enum: vendorNames },
            daily_usd_cap: { type: 'number', minimum: 0.000001, maximum: 1e9, description: 'Resets at 00:00 UTC' },
            usd_cap: { type: 'number', minimum: 0.000001, maximum: 1e9, description: 'Lifetime cap' },
            allowed_endpoints: {
              type: 'array',
              minItems: 1,
              maxItems: 100,
              items: {
                type: 'string',
                pattern: '^(GET|POST|PUT|PATCH|DELETE|HEAD) /[^?#\\s]*$',
                maxLength: 2048,
                examples: ['POST /v1/charges'],
              },
              description: '"*" matches exactly one path segment. A child key may not allow more than its parent.',
            },
            expires_in: {
              oneOf: [
                { type: 'string', pattern: '^[1-9][0-9]*[smhd]$' },
                { type: 'integer', minimum: 1, maximum: 604800 },
              ],
              description: 'At most 7 days. A child key never outlives its parent.',
            },
            agent_run_label: { type: 'string', minLength: 1, maxLength: 200 },
            parent_key_id: {
              type: ['string', 'null'],
              minLength: 1,
              description: `Spend of the child also counts against the parent caps; must name an active key. A key has at most MAX_KEY_DEPTH = ${MAX_KEY_DEPTH} ancestors: a parent that already has ${MAX_KEY_DEPTH} is refused with 400 key_depth_exceeded`,
            },
            tainted: { type: 'boolean', default: false },
            max_requests_per_second: {
              type: ['integer', 'null'],
              minimum: 1,
              maximum: 1_000_000,
              description:
                "Issue 26: calls admitted per UTC clock second (fixed window: up to twice this within 1 s across a boundary), counting every descendant's calls. Over it: 429 rate_limited",
            },
            max_requests_per_minute: {
              type: ['integer', 'null'],
              minimum: 1,
              maximum: 1_000_000,
              description:
                'Issue 26: calls admitted per UTC clock minute (fixed window), descendants included. Over it: 429 rate_limited',
            },
            max_concurrent: {
              type: ['integer', 'null'],
              minimum: 1,
              maximum: 1_000_000,
              description:
                'Issue 26: calls in flight at once (reserved, not yet settled), descendants included. Over it: 429 concurrency_limited',
            },
            alerts: {
              type: 'array',
              maxItems: 10,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['at_fraction'],
                properties: { at_fraction: { type: 'number', exclusiveMinimum: 0, maximum: 1 } },
              },
              description:
                'Threshold alerts on the key own spend (children included), of each of its caps; distinct. Absent: KEYBRAKE_ALERT_THRESHOLDS when a webhook is configured. A child inherits none. Bad input: 400 invalid_request',
            },
          },
        },
        AlertThresholds: {
          type: 'array',
          items: { type: 'object', properties: { at_fraction: { type: 'number' } } },
        },
        FiredAlert: {
          type: 'object',
          properties: {
            period: { type: 'string', description: 'lifetime, or the UTC day of the daily cap' },
            cap: { enum: ['lifetime', 'daily'] },
            fired_at: { type: 'string', format: 'date-time' },
            spent_usd: { type: 'number' },
            deliveries: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  id: { type: 'string', description: 'The alert id, as the webhook body carries it' },
                  state: { enum: ['pending', 'delivered', 'failed'] },
                  attempts: { type: 'integer', minimum: 0 },
                  last_status: { type: ['integer', 'null'] },
                },
              },
            },
          },
        },
        IssuedKey: {
          type: 'object',
          required: [
            'key_id',
            'vault_key',
            'vendor',
            'expires_at',
            'daily_usd_cap',
            'usd_cap',
            'allowed_endpoints',
            'agent_run_label',
          ],
          properties: {
            key_id: { type: 'string' },
            vault_key: { type: 'string', description: 'Shown only here; stored as SHA-256' },
            vendor: { type: 'string' },
            expires_at: { type: 'string', format: 'date-time' },
            daily_usd_cap: { type: ['number', 'null'] },
            usd_cap: { type: ['number', 'null'] },
            allowed_endpoints: { type: 'array', items: { type: 'string' } },
            agent_run_label: { type: ['string', 'null'] },
            parent_key_id: { type: ['string', 'null'] },
            tainted: { type: 'boolean' },
            created_at: { type: 'string', format: 'date-time' },
            identity: identitySchema,
            alerts: { $ref: '#/components/schemas/AlertThresholds' },
            limits: {
              type: 'object',
              description: 'Issue 26: present only when the key has a limit of its own',
              properties: {
                max_requests_per_second: { type: ['integer', 'null'] },
                max_requests_per_minute: { type: ['integer', 'null'] },
                max_concurrent: { type: ['integer', 'null'] },
              },
            },
          },
        },
        VaultKey: {
          type: 'object',
          properties: {
            key_id: { type: 'string' },
            vendor: { type: 'string' },
            status: { enum: ['active', 'revoked', 'expired'] },
            spent_usd: {
              type: 'number',
              description: 'Settled spend plus spend of unknown outcome, children included',
            },
            reserved_usd: { type: 'number', description: 'Held by calls in flight' },
            remaining_usd: { type: ['number', 'null'], description: 'Least headroom of the key own caps' },
            spent_today_usd: { type: 'number' },
            unknown_usd: { type: 'number' },
            expires_at: { type: 'string', format: 'date-time' },
            created_at: { type: 'string', format: 'date-time' },
            revoked_at: { type: ['string', 'null'], format: 'date-time' },
            agent_run_label: { type: ['string', 'null'] },
            daily_usd_cap: { type: ['number', 'null'] },
            usd_cap: { type: ['number', 'null'] },
            allowed_endpoints: { type: 'array', items: { type: 'string' } },
            parent_key_id: { type: ['string', 'null'] },
            tainted: { type: 'boolean' },
            identity: identitySchema,
            alerts: {
              type: 'array',
              description: 'GET /vault/keys/{key_id} only: each threshold with the alerts it fired (issue 26)',
              items: {
                type: 'object',
                properties: {
                  at_fraction: { type: 'number' },
                  fired: { type: 'array', items: { $ref: '#/components/schemas/FiredAlert' } },
                },
              },
            },
            cap_hit_alerts: {
              type: 'array',
              description: 'GET /vault/keys/{key_id} only: the cap-hit alerts fired, once per cap period',
              items: { $ref: '#/components/schemas/FiredAlert' },
            },
            limits: {
              type: 'object',
              description:
                'Issue 26: present only when the key has a limit of its own; in_flight: calls of the key and its descendants in flight now (counted while the key has max_concurrent)',
              properties: {
                max_requests_per_second: { type: ['integer', 'null'] },
                max_requests_per_minute: { type: ['integer', 'null'] },
                max_concurrent: { type: ['integer', 'null'] },
                in_flight: { type: 'integer', minimum: 0 },
              },
            },
          },
        },
        ListedKey: {
          description:
            'A key as GET /vault/keys/{key_id} shows it, plus counts of its audit records (calls, cap_exhausted refusals, all refusals). ' +
            'Counts come from a digest of the audit chain brought up to date before each page (on Redis the chain is sealed about a second after a call).',
          allOf: [
            { $ref: '#/components/schemas/VaultKey' },
            {
              type: 'object',
              required: ['calls', 'cap_hits', 'refusals'],
              properties: {
                calls: { type: 'integer', minimum: 0 },
                cap_hits: { type: 'integer', minimum: 0 },
                refusals: { type: 'integer', minimum: 0 },
              },
            },
          ],
        },
        Call: {
          type: 'object',
          properties: {
            seq: { type: 'integer', description: 'Position in the global audit chain' },
            at: { type: 'string', format: 'date-time' },
            key_id: { type: ['string', 'null'] },
            vendor: { type: 'string' },
            method: { type: 'string' },
            path: { type: 'string', description: 'Normalized path as the client sent it' },
            outcome: { enum: ['forwarded', 'blocked', 'replayed', 'unknown'] },
            reason: { type: ['string', 'null'], description: 'The error code when blocked or unknown' },
            status: { type: ['integer', 'null'] },
            cost_usd: { type: 'number' },
            vendor_request_id: { type: ['string', 'null'] },
            idempotency_key: { type: ['string', 'null'] },
            agent_run_label: { type: ['string', 'null'] },
            tainted: { type: 'boolean' },
          },
        },
      },
    },
    security: [{ issuerKey: [] }, { workloadToken: [] }],
    paths: {
      '/vault/keys': {
        get: {
          operationId: 'listVaultKeys',
          summary: 'List keys, filtered and sorted, a page at a time (the console)',
          description:
            'Every filter is optional and they combine. A page walks the sort index from the cursor and keeps the keys that match; ' +
            'each request walks at most 2,000 index entries, so with selective filters a page can hold fewer than `limit` keys ' +
            '(even none) while next_cursor is not null: follow next_cursor until it is null. newest is stable under concurrent ' +
            'issuance (no key repeated or skipped). closest_to_cap orders by remaining USD ascending against the tightest cap: ' +
            "the lifetime cap less spend and reservations, or the daily cap less today's (UTC) spend and reservations, whichever " +
            "is smaller; a daily cap starts over at 00:00 UTC, and so does its key's place in this order. Ties order by key_id.",
          parameters: [
            query('status', { enum: ['active', 'revoked', 'expired'] }, 'Status at the time of the request'),
            query('vendor', { type: 'string', minLength: 1, maxLength: 64 }, 'Keys of this vendor'),
            query('label_prefix', { type: 'string', minLength: 1, maxLength: 200 }, 'agent_run_label starts with this'),
            query('parent_key_id', { type: 'string', minLength: 1, maxLength: 100 }, 'Direct children of this key'),
            query('tainted', { type: 'boolean' }, 'true or false'),
            query(
              'sort',
              { enum: ['newest', 'most_spent', 'closest_to_cap'], default: 'newest' },
              'newest: created_at descending; most_spent: spent_usd descending; closest_to_cap: remaining ascending',
            ),
            query('limit', { type: 'integer', minimum: 1, maximum: 500, default: 100 }, 'Keys per page at most'),
            query('cursor', cursorSchema, 'next_cursor of the previous page, with the same sort'),
          ],
          responses: {
            '200': {
              description: 'A page of keys',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['keys', 'next_cursor'],
                    properties: {
                      keys: { type: 'array', items: { $ref: '#/components/schemas/ListedKey' } },
                      next_cursor: { type: ['string', 'null'], description: 'Opaque (base64url); null: the last page' },
                    },
                  },
                },
              },
            },
            '400': error('A bad filter, sort, limit or cursor, or an unknown parameter', ['invalid_request']),
            '401': unauthorized,
            '403': beyondPolicy,
            '503': storeDown,
          },
        },
        post: {
          operationId: 'issueVaultKey',
          summary: 'Issue a vault key for one execution',
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { $ref: '#/components/schemas/IssueKeyRequest' } } },
          },
          responses: {
            '201': {
              description: 'Issued',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/IssuedKey' } } },
              links: Object.fromEntries(
                ['getVaultKey', 'revokeVaultKey', 'taintVaultKey', 'listVaultKeyCalls'].map((operationId) => [
                  operationId,
                  { operationId, parameters: { key_id: '$response.body#/key_id' } },
                ]),
              ),
            },
            '400': error(
              `Invalid body, vendor without a configured secret, or a parent that already has MAX_KEY_DEPTH (${MAX_KEY_DEPTH}) ancestors`,
              ['invalid_request', 'vendor_not_configured', 'key_depth_exceeded'],
            ),
            '401': unauthorized,
            '403': beyondPolicy,
            '413': error('Body over 64 KiB', ['payload_too_large']),
            '415': error('Body is not JSON', ['unsupported_media_type']),
            '503': storeDown,
          },
        },
      },
      '/vault/keys/{key_id}': {
        parameters: [keyIdParam],
        get: {
          operationId: 'getVaultKey',
          summary: 'Read a key, its status and spend',
          responses: {
            '200': {
              description: 'The key',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/VaultKey' } } },
            },
            '401': unauthorized,
            '403': beyondPolicy,
            '404': error('Unknown key, or one removed after its retention (KEYBRAKE_EXPIRED_KEY_RETENTION)', [
              'not_found',
            ]),
            '503': storeDown,
          },
        },
        delete: {
          operationId: 'revokeVaultKey',
          summary: 'Revoke a key and its children (idempotent, effective on the next call)',
          responses: {
            '200': { description: '`{"key_id", "status": "revoked"}`' },
            '401': unauthorized,
            '403': beyondPolicy,
            '404': error('Unknown key', ['not_found']),
            '503': storeDown,
          },
        },
      },
      '/vault/keys/{key_id}/taint': {
        parameters: [keyIdParam],
        post: {
          operationId: 'taintVaultKey',
          summary: 'Taint a key and its children for good',
          responses: {
            '200': { description: '`{"key_id", "tainted": true}`' },
            '401': unauthorized,
            '403': beyondPolicy,
            '404': error('Unknown key', ['not_found']),
          },
        },
      },
      '/vault/keys/{key_id}/calls': {
        parameters: [keyIdParam],
        get: {
          operationId: 'listVaultKeyCalls',
          summary: 'Every proxied request made with this key, oldest first',
          description:
            'Without parameters: every call, as the contract says. With limit, cursor or after_seq: a page, oldest first, ' +
            'and next_cursor (null when the page was not full). after_seq=N starts after audit seq N (live catch-up). ' +
            'Calls come from the live store only: once records are archived (issue 23), archived says up to which seq ' +
            'calls are not listed here and where the archive is.',
          parameters: [
            query('limit', { type: 'integer', minimum: 1, maximum: 1000, default: 100 }, 'Calls per page at most'),
            query('cursor', cursorSchema, 'next_cursor of the previous page'),
            query(
              'after_seq',
              { type: 'integer', minimum: 0, maximum: 9007199254740991 },
              'Calls after this seq (not with cursor)',
            ),
          ],
          responses: {
            '200': {
              description: 'Calls',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['calls'],
                    properties: {
                      calls: { type: 'array', items: { $ref: '#/components/schemas/Call' } },
                      next_cursor: { type: ['string', 'null'], description: 'Paged form only' },
                      archived: {
                        type: 'object',
                        description:
                          'Issue 23, present once records are archived: calls with seq <= through_seq are not listed ' +
                          '(they left the live store) and are in the archive segments at archive (dir:/path or ' +
                          's3://bucket/prefix; null when the proxy has no archive configured now)',
                        required: ['through_seq', 'archive', 'segments'],
                        properties: {
                          through_seq: { type: 'integer', minimum: 1 },
                          archive: { type: ['string', 'null'] },
                          segments: { type: 'integer', minimum: 0 },
                        },
                      },
                    },
                  },
                },
              },
            },
            '400': error('A bad limit, cursor or after_seq', ['invalid_request']),
            '401': unauthorized,
            '403': beyondPolicy,
            '404': error('Unknown key', ['not_found']),
          },
        },
      },
      '/events': {
        get: {
          operationId: 'streamEvents',
          summary: 'The live feed: calls and key changes as Server-Sent Events (the console)',
          description:
            'text/event-stream, behind the issuer key (send it in Authorization: read the stream with fetch, as EventSource cannot send headers). ' +
            'Events: `call` (data: the calls entry, with key_id), `key` (data: {"key_id", "change": "issued"|"revoked"|"tainted", ...the GET /vault/keys/{key_id} fields}; ' +
            'a revocation or taint of a parent sends one per key of its subtree), `resync` (data: {"reason": "slow_consumer"}: the client fell more than 1,000 records behind; ' +
            'events were skipped, re-read what is shown). A `: ping` comment every 15 s. The first block carries `retry` and the `id` of where the stream starts. ' +
            'Every event has an opaque `id`: reconnect with `Last-Event-ID` to resume after it. Calls and changes made through any worker or replica are seen ' +
            '(at once on the embedded store, within about a second on Redis, where records are sealed into the chain every second). Expiry is not an event: ' +
            'compare expires_at. The stream ends when the proxy shuts down.',
          parameters: [
            query('key_id', { type: 'string', minLength: 1, maxLength: 100 }, 'Events of this key and its descendants'),
            query(
              'label_prefix',
              { type: 'string', minLength: 1, maxLength: 200 },
              'Events of keys whose agent_run_label starts with this',
            ),
            {
              name: 'Last-Event-ID',
              in: 'header',
              required: false,
              schema: { type: 'string', pattern: '^[0-9]+_[0-9]+(-[0-9]+)?$' },
              description: 'The id of the last event received: the stream resumes after it',
            },
          ],
          responses: {
            '200': {
              description: 'The stream (never ends while the proxy runs)',
              content: { 'text/event-stream': { schema: { type: 'string' } } },
            },
            '400': error('An unknown parameter, an empty or too long filter, or a Last-Event-ID not of this feed', [
              'invalid_request',
            ]),
            '401': unauthorized,
            '403': operatorOnly,
            '404': error('key_id names no key', ['not_found']),
            '503': storeDown,
          },
        },
      },
      '/audit/verify': {
        get: {
          operationId: 'verifyAudit',
          summary: 'Recompute the audit hash chain and hold it against every signed checkpoint',
          responses: {
            '200': {
              description:
                "ok: every record chains, and every checkpoint signed by this proxy's key verifies and matches. " +
                'Otherwise first_bad_seq and reason: chain_broken (a record edited, removed or moved), truncated ' +
                '(records a checkpoint vouches for are gone), checkpoint_mismatch (the chain was rewritten after the ' +
                'last matching checkpoint), checkpoint_signature_invalid (a checkpoint was forged or edited), ' +
                'records_missing (the chain verifies, but the store holds records that are not in it: first_bad_seq ' +
                'is the seq after the end of the chain, missing_records how many). Issue 23: the chain is checked from ' +
                'genesis through every archived segment (archived_records, segments) to the live head; an archive ' +
                'failure names the segment and one of segment_missing (a gap: deleted, or the archive ends before the ' +
                'store says), segment_overlap, segment_truncated (records or its checkpoint cut, gzip cut short), ' +
                'record_edited, record_missing, segment_reordered (content not what the name says: renamed, swapped), ' +
                'signature_invalid, checkpoint_untrusted (signed by a key not trusted), segment_unsigned, ' +
                'segment_unreadable, archive_unavailable (records archived but the archive cannot be read). For a ' +
                'signature failure first_bad_seq is the first record no valid checkpoint vouches for.',
              content: {
                'application/json': {
                  schema: {
                    oneOf: [
                      {
                        type: 'object',
                        required: ['ok', 'records', 'head', 'checkpoints'],
                        properties: {
                          ok: { const: true },
                          records: { type: 'integer', minimum: 0 },
                          head: { type: 'string' },
                          checkpoints: { type: 'integer', minimum: 0 },
                          last_checkpoint_records: { type: 'integer', minimum: 0 },
                          untrusted_checkpoints: { type: 'integer', minimum: 0 },
                          archived_records: {
                            type: 'integer',
                            minimum: 0,
                            description: 'Records 1..N verified in the archive (issue 23)',
                          },
                          segments: { type: 'integer', minimum: 0, description: 'Archive segments verified' },
                        },
                      },
                      {
                        type: 'object',
                        required: ['ok', 'records', 'first_bad_seq', 'reason'],
                        properties: {
                          ok: { const: false },
                          records: { type: 'integer', minimum: 0 },
                          first_bad_seq: { type: 'integer' },
                          reason: { enum: [...CHAIN_FAILURE_REASONS] },
                          missing_records: { type: 'integer', minimum: 1 },
                          archived_records: { type: 'integer', minimum: 0 },
                          segment: { type: 'string', description: 'The archive segment at fault' },
                          detail: { type: 'string', description: 'What the archive or the decoder said' },
                        },
                      },
                    ],
                  },
                },
              },
            },
            '401': unauthorized,
            '403': operatorOnly,
            '503': storeDown,
          },
        },
      },
      '/audit/checkpoints': {
        get: {
          operationId: 'listAuditCheckpoints',
          summary: 'The Ed25519 public key that signs checkpoints, and every checkpoint, oldest first',
          responses: {
            '200': {
              description: 'Checkpoints',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['public_key', 'checkpoints'],
                    properties: {
                      public_key: {
                        type: 'object',
                        properties: { key_id: { type: 'string' }, pem: { type: 'string' } },
                      },
                      checkpoints: { type: 'array', items: { $ref: '#/components/schemas/Checkpoint' } },
                    },
                  },
                },
              },
            },
            '401': unauthorized,
            '403': operatorOnly,
            '503': storeDown,
          },
        },
        post: {
          operationId: 'createAuditCheckpoint',
          summary: 'Sign the current head now, if records were added since the last checkpoint',
          responses: {
            '200': {
              description: 'Nothing was added since the newest checkpoint: that one (null when the chain is empty)',
              content: newestCheckpoint,
            },
            '201': { description: 'Signed now: the new checkpoint', content: newestCheckpoint },
            '401': unauthorized,
            '403': operatorOnly,
            '503': storeDown,
          },
        },
      },
      '/audit/export': {
        get: {
          operationId: 'exportAudit',
          summary: 'The whole audit log as JSON Lines, for `keybrake audit verify-export`',
          description:
            'Line 1: {"type":"keybrake.audit.export","version":1,"exported_at","records","head","public_keys"}; ' +
            'then {"type":"checkpoint",...} lines; then {"type":"record","seq","prev_hash","hash","record"} lines.',
          responses: {
            '200': { description: 'The export', content: { 'application/x-ndjson': { schema: { type: 'string' } } } },
            '401': unauthorized,
            '403': operatorOnly,
            '503': storeDown,
          },
        },
      },
      '/{vendor}/{path}': {
        parameters: [
          { name: 'vendor', in: 'path', required: true, schema: { enum: vendorNames } },
          { name: 'path', in: 'path', required: true, schema: { type: 'string' } },
          {
            name: 'X-Keybrake-Provenance',
            in: 'header',
            required: false,
            description:
              'Fails closed: absent or exactly one header saying `trusted` leaves the request untainted; `untrusted`, `untrusted; src=email`, two headers or any other value taint it.',
            schema: { type: 'string' },
          },
          {
            name: 'Idempotency-Key',
            in: 'header',
            required: false,
            description: 'At most 255 characters; one header only (two: 400 invalid_request).',
            schema: { type: 'string', maxLength: 255 },
          },
          {
            name: 'Stripe-Version',
            in: 'header',
            required: false,
            description: 'Stripe only: forwarded when it is one well-formed API version, else 400 invalid_request.',
            schema: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}(\\.[a-z]+)?(;\\s*[a-z0-9_]+=v\\d+)*$' },
          },
          {
            name: 'Stripe-Account',
            in: 'header',
            required: false,
            description:
              'Stripe only: refused (403 endpoint_not_allowed), as is Stripe-Context: a vault key acts only on the proxy account.',
            schema: { type: 'string' },
          },
        ],
        post: {
          summary: 'Proxied vendor call (any method)',
          description:
            'Vault key as the vendor SDK presents its secret (each vendor module, or its KEYBRAKE_VENDORS_FILE entry, says how: Bearer, Basic or a named header). ' +
            'Idempotency-Key (<= 255 chars) scopes replays per key for at least 24 hours; a replay carries Idempotent-Replayed: true. ' +
            'Every response carries X-Keybrake-Key-Id once the key is known. A refusal or error of Keybrake itself (not of the vendor) carries X-Keybrake-Error: <error.code>. ' +
            'Issue 26: every response of a call that reserved (the vendor answer, or an upstream error) carries X-Keybrake-Remaining-Usd (USD left under the tightest cap, own or any ancestor, lifetime or daily, after this call, with exactly 6 decimals), ' +
            'X-Keybrake-Requests-Remaining (calls left in the tightest request window of the key and its ancestors; absent when none has a rate limit) and X-Keybrake-Concurrent-Remaining (calls that may still start; absent without a concurrency limit). Replays and refusals carry none of them.',
          security: [],
          'x-keybrake-pricing': pricingConfiguration(vendors),
          responses: {
            default: { description: "The vendor's response, as it came" },
            '400': error(
              "Bad path, bad Idempotency-Key, unsupported currency, reused idempotency key; request_not_priceable: a call to a costed endpoint whose cost cannot be determined with certainty (a body it cannot parse or decode: multipart, Content-Encoding other than identity, a media type other than form or JSON, a charset other than utf-8; a priced parameter repeated, in both body and query, or under another spelling), checked after the allowlist and taint, before the cap; nothing forwarded; vendor_not_configured: the key's vendor has no secret configured on this proxy (a key issued before a restart without it), nothing forwarded; key_depth_exceeded: a key deeper than MAX_KEY_DEPTH (only one issued before the limit), nothing forwarded; a money-moving endpoint with no price is refused as request_not_priceable too (docs/pricing.md)",
              [
                'invalid_request',
                'currency_not_supported',
                'idempotency_key_reused',
                'request_not_priceable',
                'vendor_not_configured',
                'key_depth_exceeded',
              ],
            ),
            '401': error('Missing, unknown, revoked or expired vault key', [
              'invalid_vault_key',
              'vault_key_revoked',
              'vault_key_expired',
            ]),
            '403': error(
              'Wrong vendor, endpoint not allowed (also: a _method parameter anywhere, Stripe-Account), tainted',
              ['vendor_mismatch', 'endpoint_not_allowed', 'tainted_request_refused'],
            ),
            '408': error(
              'The request (headers and body) was not received within KEYBRAKE_REQUEST_TIMEOUT_MS (headers: KEYBRAKE_HEADERS_TIMEOUT_MS); nothing forwarded',
              ['request_timeout'],
            ),
            '409': error(
              'Same Idempotency-Key still in flight, or another call on the same tracked object (a Stripe PaymentIntent)',
              ['idempotency_key_in_use', 'object_in_use'],
            ),
            '413': error('Body over KEYBRAKE_MAX_BODY_BYTES', ['payload_too_large']),
            '415': error(
              'A body with a Content-Encoding other than identity to an endpoint with no cost rule (to a costed one: 400 request_not_priceable)',
              ['unsupported_media_type'],
            ),
            '429': {
              description:
                'Cap exhausted: header X-Keybrake-Cap-Hit: true and Stripe-Should-Retry: false, nothing forwarded; terminal. ' +
                'Issue 26, rate_limited / concurrency_limited: a request or concurrency limit of the key or an ancestor; transient: Retry-After (whole seconds >= 1, also error.retry_after_s), Stripe-Should-Retry: true, never X-Keybrake-Cap-Hit; nothing forwarded, nothing reserved. ' +
                'A vendor 429 has none of these headers. (error.code: cap_exhausted, rate_limited, concurrency_limited)',
              headers: {
                'X-Keybrake-Cap-Hit': { schema: { const: 'true' }, description: 'cap_exhausted only' },
                'Retry-After': {
                  schema: { type: 'integer', minimum: 1 },
                  description: 'rate_limited, concurrency_limited',
                },
                'Stripe-Should-Retry': { schema: { enum: ['true', 'false'] } },
              },
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
            },
            '502': error('Vendor unreachable (nothing sent) or failed mid-call (outcome unknown)', [
              'upstream_unreachable',
              'upstream_error',
            ]),
            '405': error('A method the router does not route on this path (admin paths too), with an Allow header', [
              'method_not_allowed',
            ]),
            '431': error('Request headers over 16 KiB; nothing forwarded', ['headers_too_large']),
            '500': error('A bug in Keybrake; nothing forwarded unless the message says otherwise', ['internal_error']),
            '503': error(
              'Store unreachable before forwarding: nothing forwarded. If the store fails after the vendor was called, also store_unavailable, with a message saying so: the call stays reserved and is counted as unknown spend. shutting_down: the proxy is draining, retry another replica',
              ['store_unavailable', 'shutting_down'],
            ),
            '504': error('Vendor did not answer in time (outcome unknown, reservation kept as spent)', [
              'upstream_timeout',
            ]),
          },
        },
      },
      '/healthz': { get: { summary: 'Alive', security: [], responses: { '200': { description: '`{"ok": true}`' } } } },
      '/readyz': {
        get: {
          summary: 'Store reachable',
          security: [],
          responses: { '200': { description: 'Ready' }, '503': storeDown },
        },
      },
      '/metrics': {
        get: { summary: 'Prometheus metrics', security: [], responses: { '200': { description: 'text/plain' } } },
      },
    },
  } as const;
}

/** The document of a proxy that serves the built-in vendors only. */
export const OPENAPI_DOCUMENT = openApiDocument(BUILT_IN_REGISTRY);
