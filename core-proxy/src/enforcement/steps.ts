/**
 * The contract's checks as named steps, in the contract's order (`shared/CONTRACT.md`, "Proxy"):
 * authenticate → vendor → allowlist → taint → price → reserve → forward → settle. Each step takes
 * the facts the steps before it established and returns the next facts or an {@link Outcome}
 * (a refusal, a replay, the settled call). A step may also throw a `KeybrakeError` (vendor
 * modules refuse that way): the pipeline answers it as a refusal with the step's input facts.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  CapExhaustedError,
  EndpointNotAllowedError,
  IdempotencyKeyInUseError,
  IdempotencyKeyReusedError,
  InvalidRequestError,
  InvalidVaultKeyError,
  type KeybrakeError,
  KeyDepthExceededError,
  LimitRefusalError,
  TaintedRequestRefusedError,
  UnsupportedMediaTypeError,
  UpstreamError,
  VaultKeyExpiredError,
  VaultKeyRevokedError,
  VendorMismatchError,
  VendorNotConfiguredError,
} from '../errors.js';
import type { KeybrakeContext } from '../http/plugins/keybrake.js';
import { MAX_KEY_DEPTH } from '../keys/key-depth.js';
import { inactiveKeyError } from '../keys/key-status.js';
import { allowsCall, encodePath, normalizePath } from '../keys/allowlist.js';
import type { ReserveOutput } from '../store/store.js';
import { countHeader, findMethodOverride } from '../vendors/request-params.js';
import { auditRecord, pendingRecord } from './answer.js';
import {
  type Allowed,
  type Arrived,
  type Authenticated,
  type Forwarded,
  type Outcome,
  type Priced,
  type Reserved,
  type TaintChecked,
  type VendorChecked,
  refused,
} from './call-facts.js';
import { claimObjectCall, observedObjects } from './object-calls.js';
import { END_TO_END_HEADERS, connectionNamed, forwardedHeaders, overriddenMethod, returnedHeaders } from './headers.js';
import { findKey, reserve as reserveInStore, settle as settleInStore } from './store-calls.js';
import { isSensitiveCall, objectCallOf, priceOf, settlementOf, vendorBaseUrl, vendorSecrets } from './vendor-seam.js';

/** One step of the pipeline: `In` is what is known before it, `Out` what it establishes. */
export interface Step<In, Out> {
  readonly name: string;
  /**
   * The step decides from the key record `authenticate` read, which may come from a cache that
   * lags a revocation: its refusals are confirmed against the store, so a revoked or expired key
   * is reported as such, not as whatever check it failed next.
   */
  readonly readsCachedKey: boolean;
  /** A property, not a method: its parameter is checked contravariantly, so steps chain only in order. */
  readonly run: (kb: KeybrakeContext, facts: In) => Out | Outcome | Promise<Out | Outcome>;
}

const MAX_IDEMPOTENCY_KEY = 255;

/** 401 `invalid_vault_key`, `vault_key_revoked`, `vault_key_expired`. */
export const authenticate: Step<Arrived, Authenticated> = {
  name: 'authenticate',
  readsCachedKey: false,
  async run(kb, facts) {
    const vaultKey = facts.call.vendor.readVaultKey(facts.call.headers);
    if (!vaultKey) return refused(facts, new InvalidVaultKeyError(false));
    const key = await findKey(kb, vaultKey);
    if (!key) return refused(facts, new InvalidVaultKeyError(true));
    const authenticated = { ...facts, key };
    const inactive = inactiveKeyError(key, facts.call.at);
    return inactive ? refused(authenticated, inactive) : authenticated;
  },
};

/** 403 `vendor_mismatch`; 400 `vendor_not_configured` for a key issued before its secret was removed. */
export const checkVendor: Step<Authenticated, VendorChecked> = {
  name: 'vendor',
  readsCachedKey: true,
  run(kb, facts) {
    const { vendor } = facts.call;
    if (facts.key.vendor !== vendor.name) return refused(facts, new VendorMismatchError(facts.key.vendor, vendor.name));
    // Regression: issue 16. The same answer as at issuance (it was a 503 here).
    const secrets = vendorSecrets(kb, vendor);
    if (!secrets) return refused(facts, new VendorNotConfiguredError(vendor.name));
    return { ...facts, secrets, baseUrl: vendorBaseUrl(kb, vendor) };
  },
};

/**
 * 403 `endpoint_not_allowed`: the normalized method and path, which no override may change, are
 * in the key's `allowed_endpoints`. 400 `invalid_request` for a path that cannot be normalized.
 */
export const checkAllowlist: Step<VendorChecked, Allowed> = {
  name: 'allowlist',
  readsCachedKey: true,
  run(_kb, facts) {
    const { method, headers, rawHeaders, query, body } = facts.call;
    const segments = normalizePath(facts.call.rawPath);
    if (overriddenMethod(headers, method)) {
      const error = new EndpointNotAllowedError(
        method,
        `/${segments.join('/')}`,
        'Method override headers cannot change the method of a proxied call.',
      );
      return refused({ ...facts, segments }, error);
    }
    // Regression: issue 16. `_method` in the query (any case) or in a form or JSON body is what
    // Rack, Laravel and Express method-override read: never forwarded, whatever it names.
    const vendorRequest = { method, segments, headers, rawHeaders, query: query.slice(1), body };
    const override = findMethodOverride(vendorRequest);
    if (override === 'found') {
      const error = new EndpointNotAllowedError(
        method,
        `/${segments.join('/')}`,
        'A _method parameter cannot change the method of a proxied call.',
      );
      return refused({ ...facts, segments }, error);
    }
    if (!allowsCall(facts.key.allowedEndpoints, method, segments)) {
      return refused({ ...facts, segments }, new EndpointNotAllowedError(method, `/${segments.join('/')}`));
    }
    return { ...facts, segments, vendorRequest, bodyUnreadable: override === 'unreadable' };
  },
};

/** 403 `tainted_request_refused`: a tainted key or request never reaches a sensitive endpoint. */
export const checkTaint: Step<Allowed, TaintChecked> = {
  name: 'taint',
  readsCachedKey: true,
  run(kb, facts) {
    const sensitive = isSensitiveCall(kb, facts.call.vendor, facts.call.method, facts.segments);
    // The key's taint is checked again by the store inside the reservation (a cached record lags).
    if (sensitive && (facts.call.untrusted || facts.key.tainted))
      return refused(facts, new TaintedRequestRefusedError());
    return { ...facts, sensitive };
  },
};

/**
 * 400 `request_not_priceable` (or the vendor's `currency_not_supported`): the call is read
 * exactly as the vendor will read it, then priced. Exactly: one `Idempotency-Key` of at most 255
 * characters (it is part of what is reserved), no `Connection` that would drop a header the price
 * depends on, and the vendor's own header rules; then the vendor catalogue's price, else a
 * configured flat cost. A money-moving call with neither is refused here, before the cap.
 */
export const price: Step<TaintChecked, Priced> = {
  name: 'price',
  readsCachedKey: true,
  run(kb, facts) {
    const { call, vendorRequest } = facts;
    if (call.idempotencyKey !== null && call.idempotencyKey.length > MAX_IDEMPOTENCY_KEY) {
      return refused(
        facts,
        new InvalidRequestError(`Idempotency-Key may be at most ${MAX_IDEMPOTENCY_KEY} characters.`),
      );
    }
    // Regression: issue 16. Node joins repeats into "D1, D2": neither the vendor's key nor ours.
    if (countHeader(call.rawHeaders, 'idempotency-key') > 1) {
      return refused(facts, new InvalidRequestError('Send one Idempotency-Key header, not several.'));
    }
    const hopByHop = connectionNamed(call.headers);
    const protectedName = END_TO_END_HEADERS.find((name) => hopByHop.has(name));
    if (protectedName !== undefined) {
      return refused(
        facts,
        new InvalidRequestError(`Connection may not name ${protectedName}: the vendor must receive it.`),
      );
    }
    call.vendor.checkHeaders?.(vendorRequest);
    const objectCall = objectCallOf(call.vendor, vendorRequest);
    const callPrice = objectCall ? undefined : priceOf(kb, call.vendor, vendorRequest);
    if (facts.bodyUnreadable) {
      // A compressed body could hide a `_method`; and a vendor that decompresses it reads a body
      // nothing here checked. To a costed endpoint the price refused it first.
      return refused(
        facts,
        new UnsupportedMediaTypeError(
          'Keybrake does not forward request bodies with a Content-Encoding other than identity.',
        ),
      );
    }
    return { ...facts, price: callPrice, objectCall };
  },
};

/**
 * 429 `cap_exhausted` (own or any ancestor's cap), 429 `rate_limited` / `concurrency_limited` (own or
 * any ancestor's limit, issue 26), 409 `idempotency_key_in_use`, 400
 * `idempotency_key_reused`, or the stored response of a finished repeat. A call on a tracked
 * object first claims the object (409 `object_in_use`), and is priced from its state. The store
 * checks the key's state and taint again, atomically with the reservation.
 * Reserve before forwarding: a call that reaches the vendor can no longer be un-spent.
 */
export const reserve: Step<Priced, Reserved> = {
  name: 'reserve',
  readsCachedKey: false,
  async run(kb, facts) {
    const { call, key } = facts;
    const claim = facts.objectCall
      ? await claimObjectCall(
          {
            store: kb.store,
            forwarder: kb.forwarder,
            pricing: kb.config.pricing,
            baseUrl: facts.baseUrl,
            secrets: facts.secrets,
            readBeforeWrite: kb.config.pricing.readBeforeWrite,
            // Lapses only if its call died mid-way; the object's state is then forgotten.
            claimMs: 2 * kb.config.upstreamTimeoutMs + 30_000,
          },
          call.vendor,
          facts.objectCall,
          key.keyId,
          facts.vendorRequest,
          call.at,
        )
      : undefined;
    const callPrice = claim?.price ?? (facts.price as NonNullable<Priced['price']>);
    const reservationId = randomUUID();
    let reserved: ReserveOutput;
    try {
      reserved = await reserveInStore(kb, {
        keyId: key.keyId,
        reservationId,
        costMicros: callPrice.micros,
        now: call.at,
        sensitive: facts.sensitive,
        idempotency:
          call.idempotencyKey === null ? null : { key: call.idempotencyKey, fingerprint: fingerprint(facts) },
        pending: pendingRecord(facts),
      });
    } catch (error) {
      await claim?.release().catch(() => undefined);
      throw error;
    }
    if (reserved.kind === 'reserved')
      return { ...facts, price: callPrice, claim, reservationId, keyTainted: reserved.tainted, room: reserved.room };
    const claimed = { ...facts, price: callPrice, claim };
    if (reserved.kind === 'replay') return { kind: 'replayed', facts: claimed, stored: reserved.response };
    return refused(
      reserved.code === 'tainted_request_refused' ? { ...claimed, keyTainted: true } : claimed,
      reserveRefusal(reserved, key.keyId),
    );
  },
};

/** The call with the real secret and never the vault key, to the path the allowlist checked. */
export const forward: Step<Reserved, Forwarded> = {
  name: 'forward',
  readsCachedKey: false,
  async run(kb, facts) {
    const { call } = facts;
    const upstream = call.vendor.prepareUpstream(facts.vendorRequest, facts.secrets);
    const headers = forwardedHeaders(call.headers);
    // A vault key in a header of its own (a declared vendor's) never reaches the vendor.
    if (call.vendor.vaultKeyHeaders) for (const name of call.vendor.vaultKeyHeaders) delete headers[name];
    Object.assign(headers, upstream.headers, { 'accept-encoding': 'identity' });
    const url = `${facts.baseUrl}${encodePath(upstream.segments)}${call.query}`;
    const started = process.hrtime.bigint();
    const result = await kb.forwarder.forward(url, call.method, headers, call.body);
    if (result.kind === 'response') {
      kb.metrics.upstreamLatency.observe(
        { vendor: call.vendor.name, status_class: `${Math.floor(result.response.status / 100)}xx` },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
    }
    return { ...facts, result };
  },
};

/**
 * Books what the call cost, with its audit record, in one store write: the vendor's answer as
 * priced; no answer after sending, the whole reservation (unknown outcome); not sent, nothing.
 * Every reservation ends here, in exactly one settlement (or one held for when the store is back).
 */
export const settle: Step<Forwarded, never> = {
  name: 'settle',
  readsCachedKey: false,
  async run(kb, facts) {
    const { call, key, result, claim } = facts;
    if (result.kind !== 'response') {
      // Not sent: nothing can have been charged. Unknown: it may have been, so the reservation stays spent.
      const sent = result.kind === 'unknown';
      const error = new UpstreamError(
        call.vendor.name,
        sent ? (result.timedOut ? 'upstream_timeout' : 'upstream_error') : 'upstream_unreachable',
      );
      const costMicros = sent ? facts.price.micros : 0;
      await settleInStore(kb, sent, {
        keyId: key.keyId,
        reservationId: facts.reservationId,
        actualMicros: costMicros,
        idempotentResponse: null,
        audit: auditRecord(facts, sent ? 'unknown' : 'blocked', error.code, error.statusCode, costMicros),
      });
      if (sent) await claim?.answered({ micros: costMicros, unknown: true }, undefined).catch(() => undefined);
      return { kind: 'upstream_failed', facts, error, costMicros, cause: result.error };
    }

    const { response } = result;
    const settled = settlementOf(kb, facts.price, facts.vendorRequest, response);
    const body = call.vendor.maskResponseBody?.(facts.vendorRequest, response.body, facts.secrets) ?? response.body;
    const returned = returnedHeaders(response);
    const headers = call.vendor.maskResponseHeaders?.(returned, facts.secrets) ?? returned;
    const vendorRequestId = call.vendor.vendorRequestId(response) ?? null;
    // Objects the answer created are recorded in the settlement's own write; a claimed one when its claim ends.
    const objects = claim ? [] : observedObjects(call.vendor, facts.vendorRequest, response, settled.micros);
    const settling = settleInStore(kb, true, {
      keyId: key.keyId,
      reservationId: facts.reservationId,
      actualMicros: settled.micros,
      // Only a call with an idempotency key has a claim to keep it in (the stores ignore it otherwise).
      idempotentResponse:
        call.idempotencyKey !== null && keepsForReplay(response.status)
          ? { status: response.status, headers, body: body.toString('base64'), vendorRequestId }
          : null,
      audit: auditRecord(
        facts,
        settled.unknown ? 'unknown' : 'forwarded',
        settled.unknown ? 'upstream_5xx' : null,
        response.status,
        settled.micros,
        vendorRequestId,
      ),
      ...(objects.length > 0 ? { objects } : {}),
    });
    // In the same turn as the settlement, so the embedded store commits both in one group commit.
    // Not recorded (the store failed): a claimed object's state is forgotten.
    const tracking = claim?.answered(settled, response).catch(() => undefined);
    try {
      await settling;
    } finally {
      await tracking;
    }
    return { kind: 'forwarded', facts, response, body, headers, settled };
  },
};

/** The typed refusal for a reservation the store refused. */
function reserveRefusal(reserved: Extract<ReserveOutput, { kind: 'refused' }>, keyId: string): KeybrakeError {
  switch (reserved.code) {
    case 'cap_exhausted':
      return new CapExhaustedError(reserved.capKeyId ?? keyId);
    case 'vault_key_revoked':
      return new VaultKeyRevokedError(keyId);
    case 'vault_key_expired':
      return new VaultKeyExpiredError(keyId);
    case 'invalid_vault_key':
      return new InvalidVaultKeyError(true);
    case 'tainted_request_refused':
      return new TaintedRequestRefusedError();
    case 'idempotency_key_reused':
      return new IdempotencyKeyReusedError();
    case 'idempotency_key_in_use':
      return new IdempotencyKeyInUseError();
    case 'key_depth_exceeded':
      return new KeyDepthExceededError(MAX_KEY_DEPTH);
    case 'rate_limited':
    case 'concurrency_limited':
      return new LimitRefusalError(reserved.code, reserved.retryAfterS ?? 1);
  }
}

/**
 * Keep a response for replay when the vendor reached a decision. A vendor 5xx, its own 429 or its
 * concurrency 409 mean the call did not run: the claim is released so a retry reaches the vendor.
 */
function keepsForReplay(status: number): boolean {
  return status < 500 && status !== 429 && status !== 409;
}

/** Same method, same normalized path and query, same body bytes. */
function fingerprint(facts: Priced): string {
  return createHash('sha256')
    .update(`${facts.call.method}\n${encodePath(facts.segments)}\n${facts.call.query}\n`)
    .update(facts.call.body)
    .digest('hex');
}
