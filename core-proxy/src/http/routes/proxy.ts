import { createHash, randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  METHOD_OVERRIDE_HEADERS,
  encodePath,
  isAllowed,
  normalizePath,
  parseEndpointPattern,
} from '../../keys/allowlist.js';
import { isSensitive } from '../../pricing/cost-rules.js';
import { type CallPrice, priceCall, settleCall } from '../../pricing/price-call.js';
import {
  type ClaimedObjectCall,
  type ObjectCallContext,
  claimObjectCall,
  recordObservedObjects,
} from '../../enforcement/object-calls.js';
import {
  CapExhaustedError,
  InvalidRequestError,
  KeybrakeError,
  OutcomeNotRecordedError,
  StoreUnavailableError,
  httpError,
} from '../../errors.js';
import type { KeybrakeContext } from '../plugins/keybrake.js';
import type { AuditInput, SettleInput, StoredResponse, VaultKeyRecord } from '../../store/store.js';
import { hashVaultKey } from '../../keys/vault-keys.js';
import type { VendorModule, VendorRequest, VendorResponse, VendorSecrets } from '../../vendors/index.js';
import { countHeader, findMethodOverride } from '../../vendors/request-params.js';
import { type ObjectCall, findObjectCall } from '../../vendors/vendor.js';
import { keyStatus } from './admin.js';

/** Request headers never forwarded: hop-by-hop, credentials we replace, routing overrides, and our own. */
const DROPPED_REQUEST_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // Regression: issue 16. Only meaningful on the client's own hop (an h2c upgrade).
  'http2-settings',
  'authorization',
  'content-length',
  'accept-encoding',
  'expect',
  ...METHOD_OVERRIDE_HEADERS,
  // Routing and rewrite headers: a vendor's gateway that honours one would route the call
  // somewhere other than the path the allowlist checked.
  'x-original-url',
  'x-rewrite-url',
  'x-original-method',
  'x-forwarded-host',
  'x-forwarded-prefix',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-server',
  'x-forwarded-for',
  'x-host',
  'x-real-ip',
  'forwarded',
]);
/** Response headers not passed back: hop-by-hop ones, and the length we recompute. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);
/** Headers the vendor must see as priced and checked: `Connection` may not make them hop-by-hop. */
const END_TO_END_HEADERS = ['content-type', 'content-encoding', 'idempotency-key'];
const MAX_IDEMPOTENCY_KEY = 255;
const MAX_AUDITED_PATH = 1024;

/** Per-request facts the audit record is built from, filled in as the checks pass. */
interface CallFacts {
  readonly vendor: VendorModule;
  readonly method: string;
  readonly rawPath: string;
  readonly query: string;
  readonly body: Buffer;
  readonly idempotencyKey: string | null;
  readonly untrusted: boolean;
  /** When the call arrived, epoch ms, from the app clock. */
  readonly at: number;
  segments?: string[];
  /** The key or an ancestor is tainted, as the store read it (fresher than a cached key record). */
  keyTainted?: boolean;
  key?: VaultKeyRecord;
}

/** The vendor proxy: `/{vendor}/{rest}` for every vendor module. */
export async function proxyRoutes(app: FastifyInstance): Promise<void> {
  const kb = app.keybrake;
  // Vendor bodies are read as raw bytes: they are forwarded exactly as sent, and parsed only to estimate cost.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: kb.config.maxBodyBytes }, (_request, body, done) => {
    done(null, body);
  });

  for (const vendor of kb.config.vendors) {
    app.all(`/${vendor.name}/*`, (request, reply) => proxyCall(kb, vendor, request, reply));
  }
}

async function proxyCall(
  kb: KeybrakeContext,
  vendor: VendorModule,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const afterPrefix = (request.raw.url ?? '/').slice(vendor.name.length + 1) || '/';
  const queryAt = afterPrefix.indexOf('?');
  const idempotencyHeader = request.headers['idempotency-key'];
  const rawHeaders = request.raw.rawHeaders;
  const facts: CallFacts = {
    vendor,
    method: request.method,
    rawPath: queryAt >= 0 ? afterPrefix.slice(0, queryAt) : afterPrefix,
    query: queryAt >= 0 ? afterPrefix.slice(queryAt) : '',
    body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
    idempotencyKey: typeof idempotencyHeader === 'string' && idempotencyHeader !== '' ? idempotencyHeader : null,
    untrusted: isUntrusted(request.headers, rawHeaders),
    at: kb.now(),
  };
  try {
    return await forwardChecked(kb, facts, request, reply);
  } catch (error) {
    if (!(error instanceof KeybrakeError)) throw error;
    return refuse(kb, facts, error, reply);
  }
}

/** Runs the contract's checks in order, reserves, forwards, settles, audits. */
async function forwardChecked(
  kb: KeybrakeContext,
  facts: CallFacts,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const { vendor } = facts;
  const vaultKey = vendor.readVaultKey(request.headers);
  if (!vaultKey) throw httpError(401, 'invalid_vault_key', 'No vault key was presented.');
  const key = await kb.store.findKeyByHash(hashVaultKey(vaultKey));
  if (!key) throw httpError(401, 'invalid_vault_key', 'The vault key is not known.');
  facts.key = key;
  const now = facts.at;
  const status = keyStatus(key, now);
  if (status === 'revoked') throw httpError(401, 'vault_key_revoked', 'The vault key has been revoked.');
  if (status === 'expired') throw httpError(401, 'vault_key_expired', 'The vault key has expired.');
  let checked: LocalChecks;
  try {
    checked = checkLocally(kb, facts, key, request);
  } catch (error) {
    // The key record may come from a cache that lags a revocation: a revoked or expired key must
    // be reported as such, not as whatever check it failed next.
    if (error instanceof KeybrakeError) await confirmStillActive(kb, key.keyId, now);
    throw error;
  }
  // A call on a tracked object (a Stripe PaymentIntent) holds the object's claim until it is settled.
  const claimed =
    checked.objectCall &&
    (await claimObjectCall(
      objectCallContext(kb, vendor, checked.secrets),
      vendor,
      checked.objectCall,
      key.keyId,
      checked.vendorRequest,
      now,
    ));
  const progress = { sent: false };
  try {
    return await reserveAndForward(kb, facts, request, reply, key, checked, claimed, progress);
  } finally {
    // Sent but never answered into the store: what the vendor did to the object is not known.
    await (progress.sent ? claimed?.forget() : claimed?.release())?.catch(() => undefined);
  }
}

/** Reserves the call's price, forwards it, settles and audits it. */
async function reserveAndForward(
  kb: KeybrakeContext,
  facts: CallFacts,
  request: FastifyRequest,
  reply: FastifyReply,
  key: VaultKeyRecord,
  checked: LocalChecks,
  claimed: ClaimedObjectCall | undefined,
  progress: { sent: boolean },
): Promise<FastifyReply> {
  const { vendor, method } = facts;
  const now = facts.at;
  const { secrets, segments, sensitive, vendorRequest } = checked;
  const price = claimed?.price ?? (checked.price as CallPrice);
  const estimate = price.micros;

  const reservationId = randomUUID();
  const reserved = await kb.store.reserve({
    keyId: key.keyId,
    reservationId,
    costMicros: estimate,
    now,
    sensitive,
    idempotency:
      facts.idempotencyKey === null ? null : { key: facts.idempotencyKey, fingerprint: fingerprint(facts, segments) },
    pending: auditBase(facts),
  });
  if (reserved.kind === 'reserved') facts.keyTainted = reserved.tainted;
  if (reserved.kind === 'refused') {
    if (reserved.code === 'tainted_request_refused') facts.keyTainted = true;
    if (reserved.code === 'cap_exhausted') throw new CapExhaustedError(reserved.capKeyId ?? key.keyId);
    const [statusCode, code, message] = REFUSALS[reserved.code];
    throw httpError(statusCode, code, message);
  }
  if (reserved.kind === 'replay') return replay(kb, facts, reserved.response, reply);

  const upstream = vendor.prepareUpstream(vendorRequest, secrets);
  const headers = forwardedHeaders(request.headers);
  // A vault key in a header of its own (a declared vendor's) never reaches the vendor.
  if (vendor.vaultKeyHeaders) for (const name of vendor.vaultKeyHeaders) delete headers[name];
  Object.assign(headers, upstream.headers, { 'accept-encoding': 'identity' });
  const url = `${kb.config.baseUrls[vendor.name]}${encodePath(upstream.segments)}${facts.query}`;

  const started = process.hrtime.bigint();
  progress.sent = true;
  const result = await kb.forwarder.forward(url, method, headers, facts.body);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  if (result.kind !== 'response') {
    // Not sent: nothing can have been charged. Unknown: it may have been, so the reservation stays spent.
    const sent = result.kind === 'unknown';
    const code = sent ? (result.timedOut ? 'upstream_timeout' : 'upstream_error') : 'upstream_unreachable';
    const statusCode = code === 'upstream_timeout' ? 504 : 502;
    request.log.warn({ vendor: vendor.name, code, cause: result.error.message }, 'vendor call failed');
    const cost = sent ? estimate : 0;
    await settleRecording(kb, sent, {
      keyId: key.keyId,
      reservationId,
      actualMicros: cost,
      idempotentResponse: null,
      audit: audit(facts, sent ? 'unknown' : 'blocked', code, statusCode, cost),
    });
    if (sent) await claimed?.answered({ micros: cost, unknown: true }, undefined).catch(() => undefined);
    progress.sent = false;
    kb.metrics.requests.inc({ vendor: vendor.name, outcome: sent ? 'unknown' : 'blocked', reason: code });
    kb.metrics.spend.inc({ vendor: vendor.name }, cost / 1e6);
    const error = httpError(
      statusCode,
      code,
      sent
        ? 'The vendor call may have been made, but no answer came back.'
        : 'The vendor could not be reached; nothing was sent.',
    );
    return reply
      .code(statusCode)
      .header('x-keybrake-key-id', key.keyId)
      .header('x-keybrake-error', code)
      .send(error.toJSON());
  }

  const response = result.response;
  kb.metrics.upstreamLatency.observe(
    { vendor: vendor.name, status_class: `${Math.floor(response.status / 100)}xx` },
    seconds,
  );
  const settled = settleCall(price, vendorRequest, response, kb.config.pricing);
  const actual = settled.micros;
  const outcome = settled.unknown ? 'unknown' : 'forwarded';
  const body = vendor.maskResponseBody?.(vendorRequest, response.body, secrets) ?? response.body;
  const responseHeaders = returnedHeaders(response);
  const vendorRequestId = vendor.vendorRequestId(response) ?? null;
  const settling = settleRecording(kb, true, {
    keyId: key.keyId,
    reservationId,
    actualMicros: actual,
    idempotentResponse: keepsForReplay(response.status)
      ? { status: response.status, headers: responseHeaders, body: body.toString('base64'), vendorRequestId }
      : null,
    audit: {
      ...audit(facts, outcome, settled.unknown ? 'upstream_5xx' : null, response.status, actual),
      vendorRequestId,
    },
  });
  // In the same turn as the settlement, so the embedded store commits both in one group commit.
  // Not recorded (the store failed): a claimed object's state is forgotten, a created one untracked.
  const tracking = (
    claimed
      ? claimed.answered(settled, response)
      : recordObservedObjects(kb.store, vendor, key.keyId, vendorRequest, response, actual)
  ).catch(() => undefined);
  try {
    await settling;
  } finally {
    await tracking;
  }
  progress.sent = false;
  kb.metrics.requests.inc({ vendor: vendor.name, outcome, reason: settled.unknown ? 'upstream_5xx' : '' });
  kb.metrics.spend.inc({ vendor: vendor.name }, actual / 1e6);
  return reply.code(response.status).headers(responseHeaders).header('x-keybrake-key-id', key.keyId).send(body);
}

/** Settles; when the vendor was (or may have been) called, a store failure says so. */
async function settleRecording(kb: KeybrakeContext, vendorCalled: boolean, input: SettleInput): Promise<void> {
  try {
    await kb.store.settle(input);
  } catch (error) {
    if (!(error instanceof StoreUnavailableError)) throw error;
    // The outcome is known: hold it and record it once the store is back (a call that never left
    // releases its reservation then). An OutcomeNotRecordedError is a StoreUnavailableError:
    // refuse() answers it without auditing the call as blocked (it was not).
    kb.settlements.hold(input);
    throw vendorCalled ? new OutcomeNotRecordedError(error.cause) : error;
  }
}

/** What the checks that need no store establish about a call. */
interface LocalChecks {
  readonly secrets: VendorSecrets;
  readonly segments: string[];
  readonly sensitive: boolean;
  readonly vendorRequest: VendorRequest;
  /** The reservation and where it comes from (vendor catalogue, flat rule, or free); none for an object call. */
  readonly price: CallPrice | undefined;
  /** A call priced from the tracked object it acts on, once the object is claimed. */
  readonly objectCall: ObjectCall | undefined;
}

/** The contract's checks after the key's status, in order: vendor, path, allowlist, taint, headers, cost. */
function checkLocally(
  kb: KeybrakeContext,
  facts: CallFacts,
  key: VaultKeyRecord,
  request: FastifyRequest,
): LocalChecks {
  const { vendor, method } = facts;
  const rawHeaders = request.raw.rawHeaders;
  if (key.vendor !== vendor.name) {
    throw httpError(403, 'vendor_mismatch', `This vault key was issued for ${key.vendor}, not ${vendor.name}.`);
  }

  // A key issued while the vendor was configured, presented after a restart without its secret.
  // Regression: issue 16. The same answer as at issuance, 400 `vendor_not_configured`: the
  // contract fixes that status for the code, and no retry can succeed until an operator configures
  // the secret (a 5xx would invite every vendor SDK's automatic retries).
  const secrets = kb.config.vendorSecrets[vendor.name];
  if (!secrets) {
    throw httpError(
      400,
      'vendor_not_configured',
      `No secret is configured for ${vendor.name} on this proxy; nothing was forwarded.`,
    );
  }

  const segments = normalizePath(facts.rawPath);
  facts.segments = segments;
  if (overriddenMethod(request.headers, method)) {
    throw httpError(403, 'endpoint_not_allowed', 'Method override headers cannot change the method of a proxied call.');
  }
  // Regression: issue 16. `_method` in the query (any case) or in a form or JSON body is what
  // Rack, Laravel and Express method-override read: never forwarded, whatever it names.
  const source = { headers: request.headers, rawHeaders, query: facts.query.slice(1), body: facts.body };
  const override = findMethodOverride(source);
  if (override === 'found') {
    throw httpError(403, 'endpoint_not_allowed', 'A _method parameter cannot change the method of a proxied call.');
  }
  if (!isAllowed(key.allowedEndpoints.map(parseEndpointPattern), method, segments)) {
    throw httpError(
      403,
      'endpoint_not_allowed',
      `${method} /${segments.join('/')} is not in this key's allowed_endpoints.`,
    );
  }
  const sensitive = isSensitive(
    kb.config.pricing,
    vendor.name,
    [...vendor.catalogue.map((entry) => entry.pattern), ...vendor.sensitiveEndpoints],
    method,
    segments,
  );
  if (sensitive && (facts.untrusted || key.tainted)) {
    throw httpError(403, 'tainted_request_refused', 'A tainted request may not call a money-moving endpoint.');
  }
  if (facts.idempotencyKey !== null && facts.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
    throw new InvalidRequestError(`Idempotency-Key may be at most ${MAX_IDEMPOTENCY_KEY} characters.`);
  }
  // Regression: issue 16. Node joins repeats into "D1, D2": neither the vendor's key nor ours.
  if (countHeader(rawHeaders, 'idempotency-key') > 1) {
    throw new InvalidRequestError('Send one Idempotency-Key header, not several.');
  }
  const hopByHop = connectionNamed(request.headers);
  const protectedName = END_TO_END_HEADERS.find((name) => hopByHop.has(name));
  if (protectedName !== undefined) {
    throw new InvalidRequestError(`Connection may not name ${protectedName}: the vendor must receive it.`);
  }

  const vendorRequest: VendorRequest = { method, segments, ...source };
  vendor.checkHeaders?.(vendorRequest);
  // The vendor catalogue's price, else a configured flat cost; a money-moving call with neither,
  // or a body it cannot price with certainty, is refused with request_not_priceable, before the cap.
  const objectCall = findObjectCall(vendor, method, segments);
  const price = objectCall ? undefined : priceCall(vendor, vendorRequest, kb.config.pricing);
  if (override === 'unreadable') {
    // A compressed body could hide a `_method`; and a vendor that decompresses it reads a body
    // nothing here checked.
    throw httpError(
      415,
      'unsupported_media_type',
      'Keybrake does not forward request bodies with a Content-Encoding other than identity.',
    );
  }
  return { secrets, segments, sensitive, vendorRequest, price, objectCall };
}

function objectCallContext(kb: KeybrakeContext, vendor: VendorModule, secrets: VendorSecrets): ObjectCallContext {
  return {
    store: kb.store,
    forwarder: kb.forwarder,
    pricing: kb.config.pricing,
    baseUrl: kb.config.baseUrls[vendor.name] as string,
    secrets,
    readBeforeWrite: kb.config.pricing.readBeforeWrite,
    // Lapses only if its call died mid-way; the object's state is then forgotten.
    claimMs: 2 * kb.config.upstreamTimeoutMs + 30_000,
  };
}

/** Throws the revocation or expiry error if the store (fresh, not cached) says the key is no longer active. */
async function confirmStillActive(kb: KeybrakeContext, keyId: string, now: number): Promise<void> {
  const fresh = await kb.store.getKey(keyId, now);
  const status = fresh ? keyStatus(fresh, now) : 'revoked';
  if (status === 'revoked') throw httpError(401, 'vault_key_revoked', 'The vault key has been revoked.');
  if (status === 'expired') throw httpError(401, 'vault_key_expired', 'The vault key has expired.');
}

const REFUSALS = {
  vault_key_revoked: [401, 'vault_key_revoked', 'The vault key has been revoked.'],
  vault_key_expired: [401, 'vault_key_expired', 'The vault key has expired.'],
  invalid_vault_key: [401, 'invalid_vault_key', 'The vault key is not known.'],
  tainted_request_refused: [403, 'tainted_request_refused', 'A tainted key may not call a money-moving endpoint.'],
  idempotency_key_reused: [
    400,
    'idempotency_key_reused',
    'This Idempotency-Key was used with a different method, path or body.',
  ],
  idempotency_key_in_use: [409, 'idempotency_key_in_use', 'A request with this Idempotency-Key is still in flight.'],
  key_depth_exceeded: [
    400,
    'key_depth_exceeded',
    'This vault key has more ancestors than MAX_KEY_DEPTH allows (issued before the limit); it cannot be used.',
  ],
} as const;

/**
 * Keep a response for replay when the vendor reached a decision. A vendor 5xx, its own 429 or its
 * concurrency 409 mean the call did not run: the claim is released so a retry reaches the vendor.
 */
function keepsForReplay(status: number): boolean {
  return status < 500 && status !== 429 && status !== 409;
}

async function replay(
  kb: KeybrakeContext,
  facts: CallFacts,
  stored: StoredResponse,
  reply: FastifyReply,
): Promise<FastifyReply> {
  await kb.store.appendAudit({
    ...audit(facts, 'replayed', null, stored.status, 0),
    vendorRequestId: stored.vendorRequestId,
  });
  kb.metrics.requests.inc({ vendor: facts.vendor.name, outcome: 'replayed', reason: '' });
  return reply
    .code(stored.status)
    .headers(stored.headers)
    .header('idempotent-replayed', 'true')
    .header('x-keybrake-key-id', facts.key?.keyId ?? '')
    .send(Buffer.from(stored.body, 'base64'));
}

/** Audits and answers a refused call. Nothing was forwarded. */
async function refuse(
  kb: KeybrakeContext,
  facts: CallFacts,
  error: KeybrakeError,
  reply: FastifyReply,
): Promise<FastifyReply> {
  let answer = error;
  if (!(error instanceof StoreUnavailableError)) {
    try {
      await kb.store.appendAudit(audit(facts, 'blocked', error.code, error.statusCode, 0));
    } catch (auditError) {
      // The record must be durable before we answer: if it cannot be written, say so.
      answer = auditError instanceof StoreUnavailableError ? auditError : new StoreUnavailableError(auditError);
    }
  }
  kb.metrics.requests.inc({ vendor: facts.vendor.name, outcome: 'blocked', reason: answer.code });
  if (answer.code === 'cap_exhausted') kb.metrics.capHits.inc({ vendor: facts.vendor.name });
  if (facts.key) void reply.header('x-keybrake-key-id', facts.key.keyId);
  // Tells Keybrake's own refusals from the vendor's (a vendor 403 never carries it).
  return reply
    .code(answer.statusCode)
    .headers(answer.headers)
    .header('x-keybrake-error', answer.code)
    .send(answer.toJSON());
}

function auditBase(
  facts: CallFacts,
): Omit<AuditInput, 'at' | 'outcome' | 'reason' | 'status' | 'costMicros' | 'vendorRequestId'> {
  return {
    keyId: facts.key?.keyId ?? null,
    vendor: facts.vendor.name,
    method: facts.method,
    path: facts.segments ? encodePath(facts.segments) : facts.rawPath.slice(0, MAX_AUDITED_PATH),
    idempotencyKey: facts.idempotencyKey?.slice(0, MAX_IDEMPOTENCY_KEY) ?? null,
    agentRunLabel: facts.key?.agentRunLabel ?? null,
    tainted: facts.untrusted || (facts.keyTainted ?? facts.key?.tainted ?? false),
  };
}

function audit(
  facts: CallFacts,
  outcome: AuditInput['outcome'],
  reason: string | null,
  status: number | null,
  costMicros: number,
): AuditInput {
  return {
    ...auditBase(facts),
    at: new Date(facts.at).toISOString(),
    outcome,
    reason,
    status,
    costMicros,
    vendorRequestId: null,
  };
}

/** Same method, same normalized path and query, same body bytes. */
function fingerprint(facts: CallFacts, segments: readonly string[]): string {
  return createHash('sha256')
    .update(`${facts.method}\n${encodePath(segments)}\n${facts.query}\n`)
    .update(facts.body)
    .digest('hex');
}

/** True when a method-override header names a method other than the real one. */
function overriddenMethod(headers: IncomingHttpHeaders, method: string): boolean {
  const overrides = METHOD_OVERRIDE_HEADERS.map((name) => headers[name]).filter((value) => value !== undefined);
  return overrides.some((value) => String(value).trim().toUpperCase() !== method);
}

/**
 * Whether `X-Keybrake-Provenance` taints the request. It fails closed: only its absence or exactly
 * one header saying `trusted` leaves a request untainted; `untrusted`, `untrusted; src=email`,
 * two headers (joined as `untrusted, untrusted`), an empty value or anything else taints it.
 * Regression: issue 16.
 */
function isUntrusted(headers: IncomingHttpHeaders, rawHeaders: readonly string[]): boolean {
  const value = headers['x-keybrake-provenance'];
  if (value === undefined) return false;
  return countHeader(rawHeaders, 'x-keybrake-provenance') !== 1 || String(value).trim().toLowerCase() !== 'trusted';
}

/** Header names the client's `Connection` header lists: hop-by-hop for that hop only (RFC 9110 7.6.1). */
function connectionNamed(headers: IncomingHttpHeaders): Set<string> {
  return new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}

function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  // Regression: issue 16. Headers named in `Connection` were forwarded (`Connection: close, X-Foo`).
  const named = connectionNamed(headers);
  const forwarded: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name) || named.has(name) || name.startsWith('x-keybrake-'))
      continue;
    forwarded[name] = value;
  }
  return forwarded;
}

function returnedHeaders(response: VendorResponse): Record<string, string | string[]> {
  const returned: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || name.startsWith('x-keybrake-')) continue;
    returned[name] = value;
  }
  return returned;
}
