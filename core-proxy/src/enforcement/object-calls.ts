import { randomUUID } from 'node:crypto';
import { encodePath } from '../keys/allowlist.js';
import type { PricingOptions } from '../pricing/cost-rules.js';
import { ObjectInUseError, RequestNotPriceableError } from '../errors.js';
import type { Forwarder } from './forwarder.js';
import type { CallPrice, CallSettlement } from '../pricing/price-call.js';
import type { SettledObject, Store, VendorObjectState } from '../store/store.js';
import {
  type ObjectCall,
  type VendorModule,
  type VendorRequest,
  type VendorResponse,
  type VendorSecrets,
  findMoneyMoving,
  isSuccess,
} from '../vendors/vendor.js';

/** What a call on a tracked object needs from the proxy. */
export interface ObjectCallContext {
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly pricing: PricingOptions;
  readonly baseUrl: string;
  readonly secrets: VendorSecrets;
  /** GET an object the family has not seen with the real secret, instead of refusing the call. */
  readonly readBeforeWrite: boolean;
  /** How long a claim lasts if its call dies without releasing it, ms. */
  readonly claimMs: number;
}

/**
 * A call that holds the claim on the object it acts on. Exactly one of `answered` or `release`
 * ends it; both are safe to call twice.
 */
export interface ClaimedObjectCall {
  readonly price: CallPrice;
  /** After the call was settled: records the object's state its answer (or unknown outcome) leaves. */
  answered(settled: CallSettlement, response: VendorResponse | undefined): Promise<void>;
  /** Releases the claim, the object's state unchanged (the call was refused or never sent). */
  release(): Promise<void>;
  /** Releases the claim and forgets the object's state (the call may have changed it, unrecorded). */
  forget(): Promise<void>;
}

/**
 * Claims the object a call acts on and prices the call from its tracked state. Regression:
 * issue 17. An object the family has not seen is refused as `request_not_priceable`, unless the
 * operator opted in to read-before-write; another call on the same object in flight is 409
 * `object_in_use` (Stripe answers concurrent changes to one object the same way).
 */
export async function claimObjectCall(
  context: ObjectCallContext,
  vendor: VendorModule,
  call: ObjectCall,
  keyId: string,
  request: VendorRequest,
  now: number,
): Promise<ClaimedObjectCall> {
  const objectId = call.objectId(request);
  if (objectId === undefined || !/^[A-Za-z0-9_]{1,255}$/.test(objectId)) {
    throw new RequestNotPriceableError('The call does not name the object it acts on, so its amount is not known.');
  }
  const claimId = randomUUID();
  const claim = await context.store.claimObject({ keyId, objectId, claimId, now, until: now + context.claimMs });
  if (claim.kind === 'busy') {
    throw new ObjectInUseError(objectId);
  }
  let done = false;
  const end = async (state: VendorObjectState | null | undefined): Promise<void> => {
    if (done) return;
    done = true;
    await context.store.releaseObject({ keyId, objectId, claimId, state });
  };
  try {
    let state = claim.state;
    if (state === null && call.needsState) {
      if (!context.readBeforeWrite) {
        throw new RequestNotPriceableError(
          'The proxy has not seen this object, so it does not know the amount this call would move ' +
            '(create it through the proxy, or set KEYBRAKE_STRIPE_READ_BEFORE_WRITE=1).',
        );
      }
      state = await readObject(context, vendor, call, objectId, request);
    }
    const tracked = state;
    const micros = call.estimate(request, tracked, context.pricing);
    let after: VendorObjectState | null | undefined;
    const price: CallPrice = {
      micros,
      entry: findMoneyMoving(vendor, request.method, request.segments),
      source: 'built_in',
      settleAnswer: (answeredRequest, response, pricing) => {
        const settled = call.settle(answeredRequest, response, tracked, pricing, micros);
        after = settled.state;
        return settled.micros;
      },
    };
    return {
      price,
      answered: (settled, response) =>
        end(
          settled.unknown
            ? call.unknown(tracked, settled.micros)
            : response && isSuccess(response.status)
              ? after
              : // A refusal changed nothing; a read state is kept (it is the vendor's own).
                tracked !== claim.state
                ? (tracked ?? undefined)
                : undefined,
        ),
      release: () => end(tracked !== claim.state ? (tracked ?? undefined) : undefined),
      forget: () => end(null),
    };
  } catch (error) {
    await end(undefined).catch(() => undefined);
    throw error;
  }
}

/** Read-before-write: the object as the vendor has it, with nothing booked for it yet. */
async function readObject(
  context: ObjectCallContext,
  vendor: VendorModule,
  call: ObjectCall,
  objectId: string,
  request: VendorRequest,
): Promise<VendorObjectState> {
  const upstream = vendor.prepareUpstream(
    { ...request, method: 'GET', segments: call.read.segments(objectId), body: Buffer.alloc(0) },
    context.secrets,
  );
  const result = await context.forwarder.forward(
    `${context.baseUrl}${encodePath(upstream.segments)}`,
    'GET',
    { ...upstream.headers, accept: 'application/json' },
    undefined,
  );
  const state =
    result.kind === 'response' && isSuccess(result.response.status) ? call.read.state(result.response) : undefined;
  if (!state) throw new RequestNotPriceableError('The object could not be read from the vendor to price this call.');
  return { ...state, bookedMicros: 0 };
}

/**
 * The objects a 2xx answer created (a PaymentIntent), with the spend just booked for them: recorded
 * with the call's settlement (`SettleInput.objects`).
 */
export function observedObjects(
  vendor: VendorModule,
  request: VendorRequest,
  response: VendorResponse,
  bookedMicros: number,
): SettledObject[] {
  if (!vendor.observeObjects || !isSuccess(response.status)) return [];
  return vendor.observeObjects(request, response, bookedMicros);
}
