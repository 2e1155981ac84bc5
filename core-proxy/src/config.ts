import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { formatEndpointPattern, isPatternCovered } from './keys/allowlist.js';
import {
  type CostRule,
  type PricingOptions,
  parseCostRules,
  parseFxRates,
  parseSensitiveEndpoints,
} from './pricing/cost-rules.js';
import { type AlertConfig, loadAlertConfig } from './alerts/alert-config.js';
import { type ArchiveConfig, readArchiveConfig } from './archive/archive-config.js';
import { CheckpointSigner } from './audit/checkpoints.js';
import { type IssuersConfig, loadIssuersConfig } from './identity/issuers-file.js';
import { type ExpiryConfig, readExpiryConfig } from './store/expiry-config.js';
import { DEFAULT_LOG_BUFFER_BYTES } from './http/log-destination.js';
import { ConfigError, type Env, flag, positiveInt, readSecret } from './env.js';
import { BUILT_IN_VENDORS, VendorRegistry, baseUrlVariable } from './vendors/registry.js';
import { loadDeclaredVendors } from './vendors/vendors-file.js';
import type { VendorModule, VendorSecrets } from './vendors/vendor.js';

export { ConfigError, readSecret } from './env.js';

/** Everything the proxy is configured with, read from the environment by {@link loadConfig}. */
export interface KeybrakeConfig {
  /** @default '127.0.0.1' */
  readonly host: string;
  /** @default 8080 */
  readonly port: number;
  /** Issuer keys accepted on the admin API. */
  readonly apiKeys: readonly string[];
  /** True when no `KEYBRAKE_API_KEYS` was set and one was generated for this run. */
  readonly generatedApiKey: boolean;
  /** Whether `/console` serves the operator's console (`KEYBRAKE_CONSOLE=off` turns it off). @default true */
  readonly console: boolean;
  /** Set: the shared Redis store. Unset: the embedded store. */
  readonly redisUrl: string | undefined;
  /** Prefix of every Redis key. @default 'keybrake:' */
  readonly redisPrefix: string;
  /** Redis command timeout; past it the call fails closed. @default 2000 */
  readonly redisTimeoutMs: number;
  /** Age at which an unsettled reservation (its replica died) becomes unknown spend. @default 600000 */
  readonly reservationTtlMs: number;
  /** @default './.keybrake-data' */
  readonly dataDir: string;
  /**
   * Every vendor this proxy serves: the built-in ones and those declared in
   * `KEYBRAKE_VENDORS_FILE`. Every per-vendor list (routes, issuance, OpenAPI) is derived from it.
   */
  readonly vendors: VendorRegistry;
  /** Real secrets per vendor; a vendor missing any of its secrets is absent. */
  readonly vendorSecrets: Readonly<Record<string, VendorSecrets>>;
  /** Upstream base URL per vendor. */
  readonly baseUrls: Readonly<Record<string, string>>;
  readonly pricing: PricingOptions;
  /** @default 60000 */
  readonly upstreamTimeoutMs: number;
  /**
   * Connections the kernel may queue for the proxy to accept (the listen backlog; Linux caps it at
   * `net.core.somaxconn`). A fan-out opens hundreds of connections at once: past the backlog the
   * kernel drops their handshakes, which clients see as seconds of SYN retransmits or resets.
   * @default 4096
   */
  readonly listenBacklog: number;
  /**
   * Longest a client may take to send a whole request, headers and body (a trickled body cannot
   * hold a connection): 408 `request_timeout` past it. Not applied once the request is in. @default 30000
   */
  readonly requestTimeoutMs: number;
  /** Longest a client may take to send the request headers; at most `requestTimeoutMs`. @default 10000 */
  readonly headersTimeoutMs: number;
  /** Largest request body the proxy accepts. @default 1 MiB */
  readonly maxBodyBytes: number;
  /** @default 'info' */
  readonly logLevel: string;
  /** Bytes of log lines queued for a slow or unread stdout before lines are dropped (`KEYBRAKE_LOG_BUFFER_BYTES`). @default 4 MiB */
  readonly logBufferBytes: number;
  /** Signs audit chain checkpoints (Ed25519). */
  readonly auditSigner: CheckpointSigner;
  /** True when no `KEYBRAKE_AUDIT_SIGNING_KEY` was set and the data folder's own key is used. */
  readonly generatedAuditSigningKey: boolean;
  /** Sign a checkpoint once this many records were added. @default 1000 */
  readonly auditCheckpointRecords: number;
  /** Sign a checkpoint when this long has passed and records were added. @default 60000 */
  readonly auditCheckpointIntervalMs: number;
  /**
   * `keybrake serve` worker processes sharing the port and the data directory (node:cluster);
   * `KEYBRAKE_WORKERS` or `serve --workers N`. @default 1
   */
  readonly workers: number;
  /** Threshold alerts: the webhook and the default thresholds (issue 26; `alerts/alert-config.ts`). */
  readonly alerts: AlertConfig;
  /** The audit archive and the live window (issue 23; `archive/archive-config.ts`). */
  readonly archive: ArchiveConfig;
  /**
   * Issue 25: trusted token issuers and their policies (`KEYBRAKE_ISSUERS_FILE`); null: the admin
   * API takes issuer keys only. @default null
   */
  readonly issuers: IssuersConfig | null;
  /** Retention of expired keys and of kept idempotent responses (issue 23; `store/expiry-config.ts`). */
  readonly expiry: ExpiryConfig;
}

/**
 * A flat rule is accepted only where the proxy has no price of its own: on an endpoint priced
 * from the request or the object it acts on, a flat number would replace a real bound with a
 * guess ($99,999 moved under a $100 cap with a flat rule for confirm: issue 17). So a rule for
 * such an endpoint is refused at start; a wider wildcard rule applies only to the others.
 */
function checkCostRules(rules: Record<string, CostRule[]>, vendors: VendorRegistry): Record<string, CostRule[]> {
  for (const [vendorName, vendorRules] of Object.entries(rules)) {
    const vendor = vendors.get(vendorName);
    if (!vendor) throw new ConfigError(`KEYBRAKE_COST_RULES: "${vendorName}" is not a vendor.`);
    for (const rule of vendorRules) {
      const priced = vendor.catalogue.find(
        (entry) => entry.estimate && isPatternCovered(rule.pattern, [entry.pattern]),
      );
      if (priced) {
        throw new ConfigError(
          `KEYBRAKE_COST_RULES: "${formatEndpointPattern(rule.pattern)}" is ${formatEndpointPattern(priced.pattern)}, ` +
            'which the proxy prices itself from the request or the object it acts on; a flat rule cannot bound it.',
        );
      }
    }
  }
  return rules;
}

/** `KEYBRAKE_CONSOLE`: `on` (the default) or `off`; `1`/`0`, `true`/`false` also read. */
function consoleEnabled(env: Env): boolean {
  const text = (env.KEYBRAKE_CONSOLE ?? '').trim().toLowerCase();
  if (text === '' || text === 'on' || text === '1' || text === 'true') return true;
  if (text === 'off' || text === '0' || text === 'false') return false;
  throw new ConfigError('KEYBRAKE_CONSOLE must be on or off.');
}

/**
 * Dev mode: with no `KEYBRAKE_API_KEYS`, an issuer key is generated once and kept (mode 0600) in
 * the data folder, so it survives restarts like the keys it issues.
 */
function devApiKey(dataDir: string): string {
  const file = join(dataDir, 'dev-issuer-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(dataDir, { recursive: true });
  const key = `kb_admin_${randomBytes(24).toString('base64url')}`;
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

/**
 * The audit checkpoint signing key: `KEYBRAKE_AUDIT_SIGNING_KEY(_FILE)` (PKCS#8 PEM, Ed25519), or
 * one generated once and kept (mode 0600) in the data folder. Replicas sharing a Redis store
 * should share one configured key, or each signs with its own.
 */
function auditSigner(env: Env, dataDir: string): { signer: CheckpointSigner; generated: boolean } {
  const pem = readSecret(env, 'KEYBRAKE_AUDIT_SIGNING_KEY');
  if (pem !== undefined) {
    try {
      return { signer: CheckpointSigner.fromPem(pem), generated: false };
    } catch {
      throw new ConfigError('KEYBRAKE_AUDIT_SIGNING_KEY must be an Ed25519 private key in PKCS#8 PEM.');
    }
  }
  const file = join(dataDir, 'audit-signing-key.pem');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    try {
      writeFileSync(file, CheckpointSigner.generatePem(), { mode: 0o600, flag: 'wx' });
    } catch (error) {
      // Another process sharing the data folder wrote it first: use that one.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  return { signer: CheckpointSigner.fromPem(readFileSync(file, 'utf8')), generated: true };
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /**
   * The vendors built into this proxy, before those `KEYBRAKE_VENDORS_FILE` declares (a test adds
   * a vendor module here as a new line of `BUILT_IN_VENDORS` would). @default BUILT_IN_VENDORS
   */
  readonly builtInVendors?: readonly VendorModule[];
}

/** Builds the configuration from environment variables (see the README's configuration table). */
export function loadConfig(env: Env = process.env, options: LoadConfigOptions = {}): KeybrakeConfig {
  const builtIns = options.builtInVendors ?? BUILT_IN_VENDORS;
  const apiKeys = (readSecret(env, 'KEYBRAKE_API_KEYS') ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter(Boolean);
  const dataDir = env.KEYBRAKE_DATA_DIR || './.keybrake-data';
  const generatedApiKey = apiKeys.length === 0;
  if (generatedApiKey) apiKeys.push(devApiKey(dataDir));

  // Declared vendors are checked against the built-in names here, so the registry cannot refuse them.
  const vendors = new VendorRegistry([
    ...builtIns,
    ...loadDeclaredVendors(
      env,
      builtIns.map((vendor) => vendor.name),
    ),
  ]);
  const vendorSecrets: Record<string, VendorSecrets> = {};
  const baseUrls: Record<string, string> = {};
  for (const vendor of vendors) {
    const secrets = Object.fromEntries(vendor.secretNames.map((name) => [name, readSecret(env, name)]));
    if (Object.values(secrets).every((value) => value !== undefined)) {
      vendorSecrets[vendor.name] = secrets as VendorSecrets;
    }
    const variable = baseUrlVariable(vendor.name);
    const baseUrl = env[variable] || vendor.defaultBaseUrl;
    try {
      new URL(baseUrl);
    } catch {
      throw new ConfigError(`${variable} is not a URL.`);
    }
    baseUrls[vendor.name] = baseUrl.replace(/\/+$/, '');
  }

  let pricing: PricingOptions;
  try {
    pricing = {
      fxRates: parseFxRates(env.KEYBRAKE_FX_RATES ?? ''),
      vendorOptions: vendors.readOptions(env),
      readBeforeWrite: flag(env, 'KEYBRAKE_STRIPE_READ_BEFORE_WRITE'),
      extraCostRules: env.KEYBRAKE_COST_RULES ? checkCostRules(parseCostRules(env.KEYBRAKE_COST_RULES), vendors) : {},
      extraSensitiveEndpoints: env.KEYBRAKE_SENSITIVE_ENDPOINTS
        ? parseSensitiveEndpoints(env.KEYBRAKE_SENSITIVE_ENDPOINTS)
        : {},
    };
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }

  const { signer, generated } = auditSigner(env, dataDir);
  const requestTimeoutMs = positiveInt(env, 'KEYBRAKE_REQUEST_TIMEOUT_MS', 30_000);
  return {
    host: env.KEYBRAKE_HOST || '127.0.0.1',
    port: env.KEYBRAKE_PORT === '0' ? 0 : positiveInt(env, 'KEYBRAKE_PORT', 8080),
    apiKeys,
    generatedApiKey,
    console: consoleEnabled(env),
    // A Redis URL may carry a password, so it is read like a secret (`KEYBRAKE_REDIS_URL_FILE`).
    redisUrl: readSecret(env, 'KEYBRAKE_REDIS_URL'),
    redisPrefix: env.KEYBRAKE_REDIS_PREFIX || 'keybrake:',
    redisTimeoutMs: positiveInt(env, 'KEYBRAKE_REDIS_TIMEOUT_MS', 2000),
    reservationTtlMs: positiveInt(env, 'KEYBRAKE_RESERVATION_TTL_MS', 600_000),
    dataDir,
    vendors,
    vendorSecrets,
    baseUrls,
    pricing,
    upstreamTimeoutMs: positiveInt(env, 'KEYBRAKE_UPSTREAM_TIMEOUT_MS', 60_000),
    listenBacklog: positiveInt(env, 'KEYBRAKE_LISTEN_BACKLOG', 4096),
    requestTimeoutMs,
    headersTimeoutMs: Math.min(positiveInt(env, 'KEYBRAKE_HEADERS_TIMEOUT_MS', 10_000), requestTimeoutMs),
    maxBodyBytes: positiveInt(env, 'KEYBRAKE_MAX_BODY_BYTES', 1024 * 1024),
    logLevel: env.KEYBRAKE_LOG_LEVEL || 'info',
    logBufferBytes: positiveInt(env, 'KEYBRAKE_LOG_BUFFER_BYTES', DEFAULT_LOG_BUFFER_BYTES),
    auditSigner: signer,
    generatedAuditSigningKey: generated,
    auditCheckpointRecords: positiveInt(env, 'KEYBRAKE_AUDIT_CHECKPOINT_RECORDS', 1000),
    auditCheckpointIntervalMs: positiveInt(env, 'KEYBRAKE_AUDIT_CHECKPOINT_INTERVAL_MS', 60_000),
    workers: positiveInt(env, 'KEYBRAKE_WORKERS', 1),
    alerts: loadAlertConfig(env),
    archive: readArchiveConfig(env, { dataDir, redis: readSecret(env, 'KEYBRAKE_REDIS_URL') !== undefined }),
    issuers: loadIssuersConfig(env, new Set(vendors.names())),
    expiry: readExpiryConfig(env),
  };
}
