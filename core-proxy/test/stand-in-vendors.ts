/**
 * Stand-in vendors that bill the way Stripe, Twilio and Resend publish that they bill, each with a
 * ledger of what it "charged" in USD. They are written from the vendors' documentation, not from
 * the proxy's code: a test holds the proxy's spend against what the stand-in charged.
 *
 * None of these vendors has an official mock that bills (stripe-mock keeps no state and returns
 * canned objects), so these are our own; tests that use them say "stand-in" in their names.
 */
import type { ServerResponse } from 'node:http';
import { type ReceivedRequest, sendJson, startFakeVendor } from './helpers.js';

/** What a stand-in charged, in USD, one entry per billed request. */
export class Ledger {
  readonly entries: { readonly what: string; readonly usd: number }[] = [];

  charge(what: string, usd: number): void {
    this.entries.push({ what, usd });
  }

  get totalUsd(): number {
    return Math.round(this.entries.reduce((sum, entry) => sum + entry.usd, 0) * 1e6) / 1e6;
  }
}

export interface StandIn {
  readonly url: string;
  readonly ledger: Ledger;
  readonly received: ReceivedRequest[];
}

// ---------------------------------------------------------------------------------------------
// Stripe: amounts in the currency's smallest unit (JPY has none); a PaymentIntent moves its
// `amount` when confirmed with automatic capture, or `amount_to_capture` (default: all of
// `amount_capturable`) when captured; `increment_authorization` raises an authorized amount to the
// given total; refunds default to the whole remaining amount; charges, transfers, payouts and
// topups move their `amount`. Stripe documents a 5xx as "the result is indeterminate".

export interface StripeStandInOptions {
  /** USD per major unit. @default { usd: 1 } */
  readonly usdPerUnit?: Record<string, number>;
  /** Answer 500 after charging (Stripe: the outcome of a 5xx is indeterminate). @default false */
  readonly failAfterCharging?: () => boolean;
}

interface StandInPaymentIntent {
  id: string;
  object: 'payment_intent';
  amount: number;
  currency: string;
  capture_method: 'automatic' | 'manual';
  status: string;
  amount_capturable: number;
  amount_received: number;
}

export async function startStripeStandIn(
  options: StripeStandInOptions = {},
): Promise<StandIn & { createDirectly(amount: number, currency?: string): string }> {
  const ledger = new Ledger();
  const rates = options.usdPerUnit ?? { usd: 1 };
  const zeroDecimal = new Set(['jpy', 'krw', 'vnd']);
  const intents = new Map<string, StandInPaymentIntent>();
  const charges = new Map<string, { amount: number; currency: string; refunded: number }>();
  let next = 0;
  const usd = (amount: number, currency: string): number => {
    const rate = rates[currency];
    if (rate === undefined) throw new Error(`stand-in: no rate for ${currency}`);
    return (amount / (zeroDecimal.has(currency) ? 1 : 100)) * rate;
  };
  const answer = (response: ServerResponse, body: unknown): void => {
    if (options.failAfterCharging?.()) {
      sendJson(response, 500, { error: { type: 'api_error', message: 'An unknown error occurred' } });
    } else {
      sendJson(response, 200, body, { 'request-id': `req_${(next += 1)}` });
    }
  };
  const refuse = (response: ServerResponse, message: string): void =>
    sendJson(response, 400, { error: { type: 'invalid_request_error', message } });
  const move = (what: string, amount: number, currency: string): void => ledger.charge(what, usd(amount, currency));

  const vendor = await startFakeVendor((request, response) => {
    const params = new URLSearchParams(request.body);
    const path = request.url.split('?')[0] as string;
    const amount = params.has('amount') ? Number(params.get('amount')) : undefined;
    const currency = params.get('currency')?.toLowerCase();
    let match: RegExpExecArray | null;
    if (path === '/v1/payment_intents') {
      if (amount === undefined || !currency) return refuse(response, 'Missing required param: amount or currency.');
      const intent: StandInPaymentIntent = {
        id: `pi_${(next += 1)}`,
        object: 'payment_intent',
        amount,
        currency,
        capture_method: params.get('capture_method') === 'manual' ? 'manual' : 'automatic',
        status: 'requires_confirmation',
        amount_capturable: 0,
        amount_received: 0,
      };
      intents.set(intent.id, intent);
      if (params.get('confirm') === 'true') confirm(intent);
      return answer(response, intent);
    }
    if ((match = /^\/v1\/payment_intents\/([^/]+)(?:\/([a-z_]+))?$/.exec(path))) {
      const intent = intents.get(match[1] as string);
      if (!intent)
        return sendJson(response, 404, { error: { type: 'invalid_request_error', code: 'resource_missing' } });
      const action = match[2];
      if (action === undefined && request.method === 'GET') return sendJson(response, 200, intent);
      if (action === undefined) {
        if (amount !== undefined) intent.amount = amount;
        return answer(response, intent);
      }
      if (action === 'confirm') {
        if (intent.status !== 'requires_confirmation') return refuse(response, 'already confirmed');
        confirm(intent);
        return answer(response, intent);
      }
      if (action === 'increment_authorization') {
        if (intent.status !== 'requires_capture' || amount === undefined || amount < intent.amount) {
          return refuse(response, 'cannot increment');
        }
        intent.amount = amount;
        intent.amount_capturable = amount;
        return answer(response, intent);
      }
      if (action === 'capture') {
        if (intent.status !== 'requires_capture') return refuse(response, 'nothing to capture');
        const captured = params.has('amount_to_capture')
          ? Number(params.get('amount_to_capture'))
          : intent.amount_capturable;
        if (captured > intent.amount_capturable) return refuse(response, 'amount_to_capture too large');
        move(`capture ${intent.id}`, captured, intent.currency);
        intent.amount_received = captured;
        intent.amount_capturable = 0;
        intent.status = 'succeeded';
        return answer(response, intent);
      }
      return refuse(response, `unknown action ${action}`);
    }
    if (path === '/v1/charges' || path === '/v1/transfers' || path === '/v1/payouts' || path === '/v1/topups') {
      if (amount === undefined || !currency) return refuse(response, 'Missing required param: amount or currency.');
      const id = `${path.slice(4, 6)}_${(next += 1)}`;
      move(`${path} ${id}`, amount, currency);
      if (path === '/v1/charges') charges.set(id, { amount, currency, refunded: 0 });
      return answer(response, { id, object: path.slice(4, -1), amount, currency });
    }
    if (path === '/v1/refunds') {
      const intent = intents.get(params.get('payment_intent') ?? '');
      if (!intent || intent.amount_received === 0) return refuse(response, 'nothing to refund');
      const refunded = amount ?? intent.amount_received;
      move(`refund ${intent.id}`, refunded, intent.currency);
      return answer(response, {
        id: `re_${(next += 1)}`,
        object: 'refund',
        amount: refunded,
        currency: intent.currency,
      });
    }
    return refuse(response, `stand-in has no ${request.method} ${path}`);
  });

  function confirm(intent: StandInPaymentIntent): void {
    if (intent.capture_method === 'manual') {
      intent.status = 'requires_capture';
      intent.amount_capturable = intent.amount;
    } else {
      move(`confirm ${intent.id}`, intent.amount, intent.currency);
      intent.status = 'succeeded';
      intent.amount_received = intent.amount;
    }
  }

  return {
    url: vendor.url,
    ledger,
    received: vendor.received,
    /** Creates a PaymentIntent directly at the stand-in (as another system would), not through the proxy. */
    createDirectly(amount: number, currency = 'usd'): string {
      const intent: StandInPaymentIntent = {
        id: `pi_${(next += 1)}`,
        object: 'payment_intent',
        amount,
        currency,
        capture_method: 'automatic',
        status: 'requires_confirmation',
        amount_capturable: 0,
        amount_received: 0,
      };
      intents.set(intent.id, intent);
      return intent.id;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Twilio: an SMS is billed per segment at the destination country's price. From Twilio's
// "What the heck is a segment?": a segment is 140 bytes; GSM-7 characters take 7 bits (those of
// the extension table take two septets), and a message with any other character is UCS-2 (16
// bits per code unit); a multi-segment message loses a 6-byte header per segment; a character is
// never split across two segments (Twilio's segment calculator splits on grapheme clusters). An
// MMS (`MediaUrl`, or `SendAsMms=true`) is billed as one MMS. Twilio answers `price: null` at
// create and prices the message later.

const GSM7 = new Set([
  ...'@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡',
  ...'ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿',
]);
for (const char of 'abcdefghijklmnopqrstuvwxyzäöñüà') GSM7.add(char);
const GSM7_ESCAPED = new Set(['\f', '^', '{', '}', '\\', '[', '~', ']', '|', '€']);

/** Twilio's published segment rules, as a stand-in computes them. */
export function standInSegments(text: string): number {
  const clusters = [...new Intl.Segmenter('en', { granularity: 'grapheme' }).segment(text)].map((s) => s.segment);
  const gsm = clusters.every((c) => c.length === 1 && (GSM7.has(c) || GSM7_ESCAPED.has(c)));
  const bitsOf = (cluster: string): number => (gsm ? (GSM7_ESCAPED.has(cluster) ? 14 : 7) : 16 * cluster.length);
  const total = clusters.reduce((sum, c) => sum + bitsOf(c), 0);
  if (total <= 140 * 8) return 1;
  const segments: number[] = [0];
  for (const cluster of clusters) {
    const bits = bitsOf(cluster);
    if ((segments[segments.length - 1] as number) + bits > 134 * 8) segments.push(0);
    segments[segments.length - 1] = (segments[segments.length - 1] as number) + bits;
  }
  return segments.length;
}

export interface TwilioStandInOptions {
  /** USD per SMS segment by destination prefix, longest first. @default US 0.0079, UK 0.0524, Nepal 0.3022 */
  readonly smsPrices?: readonly [string, number][];
  /** USD per MMS. @default 0.02 */
  readonly mmsUsd?: number;
  /** Segments of each Content template, by SID. @default {} */
  readonly templateSegments?: Record<string, number>;
  /** What the create answer says: Twilio's `price: null`, or a price (negative) and its unit. */
  readonly answerPrice?: (usd: number) => { price: string | null; price_unit: string };
}

export async function startTwilioStandIn(options: TwilioStandInOptions = {}): Promise<StandIn> {
  const ledger = new Ledger();
  const prices = options.smsPrices ?? [
    ['+977', 0.3022],
    ['+44', 0.0524],
    ['+1', 0.0079],
  ];
  let next = 0;
  const vendor = await startFakeVendor((request, response) => {
    const params = new URLSearchParams(request.body);
    if (!/\/Messages\.json$/.test(request.url.split('?')[0] as string)) {
      return sendJson(response, 404, { code: 20404, message: 'stand-in: not found' });
    }
    const to = params.get('To') ?? '';
    const price = prices.find(([prefix]) => to.startsWith(prefix))?.[1];
    if (price === undefined)
      return sendJson(response, 400, { code: 21408, message: 'Permission to send to this region is not enabled' });
    const mms = params.has('MediaUrl') || params.get('SendAsMms') === 'true';
    const contentSid = params.get('ContentSid');
    const segments = contentSid
      ? (options.templateSegments?.[contentSid] ?? 1)
      : standInSegments(params.get('Body') ?? '');
    const usd = mms ? (options.mmsUsd ?? 0.02) : segments * price;
    ledger.charge(`${mms ? 'MMS' : `${segments} segments`} to ${to}`, usd);
    const answer = options.answerPrice?.(usd) ?? { price: null, price_unit: 'USD' };
    sendJson(response, 201, {
      sid: `SM${String((next += 1)).padStart(32, '0')}`,
      status: 'queued',
      num_segments: String(segments),
      ...answer,
    });
  });
  return { url: vendor.url, ledger, received: vendor.received };
}

// ---------------------------------------------------------------------------------------------
// Resend: every recipient of an email (to, cc and bcc) counts as one email against the plan; a
// batch is up to 100 emails, each billed the same way. Priced here at the pay-as-you-go rate of
// $0.90 per 1,000 emails.

export async function startResendStandIn(usdPerEmail = 0.0009): Promise<StandIn> {
  const ledger = new Ledger();
  const count = (field: unknown): number => (field === undefined ? 0 : Array.isArray(field) ? field.length : 1);
  const recipients = (email: Record<string, unknown>): number => count(email.to) + count(email.cc) + count(email.bcc);
  let next = 0;
  const vendor = await startFakeVendor((request, response) => {
    const body = JSON.parse(request.body) as unknown;
    if (request.url === '/emails' && body && typeof body === 'object' && !Array.isArray(body)) {
      ledger.charge('email', recipients(body as Record<string, unknown>) * usdPerEmail);
      return sendJson(response, 200, { id: `email_${(next += 1)}` });
    }
    if (request.url === '/emails/batch' && Array.isArray(body)) {
      const data = body.map((email: Record<string, unknown>) => {
        ledger.charge('batch email', recipients(email) * usdPerEmail);
        return { id: `email_${(next += 1)}` };
      });
      return sendJson(response, 200, { data });
    }
    sendJson(response, 404, { name: 'not_found', message: 'stand-in: not found' });
  });
  return { url: vendor.url, ledger, received: vendor.received };
}
