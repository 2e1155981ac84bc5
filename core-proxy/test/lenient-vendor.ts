import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import type { IncomingHttpHeaders } from 'node:http';
import { sendJson, startFakeVendor } from './helpers.js';

/** USD per major unit of the currencies the stand-in charges in. */
export const STAND_IN_RATES: Readonly<Record<string, number>> = { usd: 1, eur: 1.1, jpy: 0.0067 };
const ZERO_DECIMAL = new Set(['jpy']);

/** What the stand-in charged, per test case (`X-Case-Id` header) and in total. */
export interface StandInLedger {
  readonly url: string;
  /** USD charged per case id. */
  readonly byCase: Map<string, number>;
  /** Every request that reached the stand-in. */
  readonly calls: { caseId: string; method: string; path: string; chargedUsd: number }[];
  total(): number;
}

/** Decodes whatever a lenient server would: gzip, deflate, br, any number of BOMs. */
function decodeBody(headers: IncomingHttpHeaders, raw: Buffer): string {
  let bytes = raw;
  const codings = String(headers['content-encoding'] ?? '')
    .split(',')
    .map((coding) => coding.trim().toLowerCase())
    .filter((coding) => coding !== '' && coding !== 'identity')
    .reverse();
  for (const coding of codings) {
    try {
      if (coding === 'gzip' || coding === 'x-gzip') bytes = gunzipSync(bytes);
      else if (coding === 'deflate') bytes = inflateSync(bytes);
      else if (coding === 'br') bytes = brotliDecompressSync(bytes);
    } catch {
      // A lenient server reads what it can.
    }
  }
  return bytes.toString('utf8').replace(/^\uFEFF+/, '');
}

/** Every (name, value) a lenient parser could read: form (`&` or `;`), JSON, multipart. */
function lenientParams(contentType: string, text: string): [string, string][] {
  const params: [string, string][] = [];
  const boundary = /boundary=("?)([^";]+)\1/i.exec(contentType)?.[2];
  if (/multipart/i.test(contentType) && boundary) {
    for (const part of text.split(`--${boundary}`)) {
      const name = /name="([^"]*)"/i.exec(part)?.[1];
      const value = part.split(/\r?\n\r?\n/)[1]?.replace(/\r?\n$/, '');
      if (name !== undefined && value !== undefined) params.push([name, value]);
    }
    return params;
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      const visit = (name: string, value: unknown): void => {
        if (Array.isArray(value)) value.forEach((item) => visit(name, item));
        else if (value !== null && typeof value === 'object') {
          for (const [key, item] of Object.entries(value)) visit(name === '' ? key : `${name}[${key}]`, item);
        } else params.push([name, String(value)]);
      };
      // Any duplicate key may be read: scan the raw text too, not only what JSON.parse kept.
      for (const match of trimmed.matchAll(/"([^"]+)"\s*:\s*("?)([^",}\]]*)\2/g)) {
        params.push([match[1] as string, match[3] as string]);
      }
      const parsed: unknown = JSON.parse(trimmed);
      if (!Array.isArray(parsed)) visit('', parsed);
    } catch {
      // Not JSON after all.
    }
    return params;
  }
  return formParams(text);
}

function formParams(text: string): [string, string][] {
  const params: [string, string][] = [];
  for (const pair of text.split(/[&;]/)) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const decode = (part: string): string => {
      try {
        return decodeURIComponent(part.replace(/\+/g, ' '));
      } catch {
        return part;
      }
    };
    params.push(equals < 0 ? [decode(pair), ''] : [decode(pair.slice(0, equals)), decode(pair.slice(equals + 1))]);
  }
  return params;
}

/** A parameter name as a lenient server folds it: trimmed, lower-cased, brackets and NUL tail dropped. */
function foldName(name: string): string {
  return (name.split('\u0000')[0] as string).trim().toLowerCase().replace(/\[.*$/, '');
}

/** A path as a lenient router folds it: lower-cased, trimmed segments, extensions dropped. */
function foldPath(path: string): string {
  return path
    .split('?')[0]!
    .split('/')
    .map((segment) => {
      let decoded = segment;
      try {
        decoded = decodeURIComponent(segment);
      } catch {
        // keep it
      }
      return decoded
        .toLowerCase()
        .replace(/;.*$/, '')
        .trim()
        .replace(/(\.[a-z0-9]*)+$/, '')
        .trim();
    })
    .filter((segment) => segment !== '')
    .join('/');
}

/** The largest number a lenient parser could read from any of the values. */
function largest(values: string[]): number {
  let best = 0;
  for (const value of values) {
    for (const n of [Number(value.trim()), parseInt(value, 10), parseFloat(value)]) {
      if (Number.isFinite(n) && n > best) best = n;
    }
  }
  return best;
}

/**
 * A vendor stand-in (a fake of our own, on port 0) as lenient as real vendors can be, and then
 * some: it reads the query and the body, decodes gzip/deflate/br, strips BOMs, parses forms
 * (split on `&` or `;`), JSON (every duplicate key), multipart, folds parameter names and paths,
 * honours `_method`, takes the largest amount and the dearest currency of any duplicates. It
 * charges Stripe payment intents and charges (`amount`/`currency`) and Resend batches (per email),
 * answers with what it charged (so the proxy settles at it), and keeps a ledger.
 */
export async function startLenientVendor(options: { readonly resendEmailUsd?: number } = {}): Promise<StandInLedger> {
  const byCase = new Map<string, number>();
  const calls: StandInLedger['calls'] = [];
  const vendor = await startFakeVendor((request, response) => {
    const caseId = String(request.headers['x-case-id'] ?? '');
    const contentType = String(request.headers['content-type'] ?? '');
    const text = decodeBody(request.headers, request.rawBody);
    const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?') + 1) : '';
    const params = [...formParams(query), ...lenientParams(contentType, text)];
    const values = (name: string): string[] => params.filter(([key]) => foldName(key) === name).map(([, v]) => v);
    const override = values('_method')[0]?.trim().toUpperCase();
    const method = override || request.method;
    const path = foldPath(request.url);
    let chargedUsd = 0;
    let body: Record<string, unknown> = { id: 'ok' };
    if (method === 'POST' && (path === 'v1/payment_intents' || path === 'v1/charges')) {
      const amount = largest(values('amount'));
      const currencies = values('currency')
        .map((c) => c.trim().toLowerCase())
        .filter((c) => c in STAND_IN_RATES);
      // The dearest reading of the currency (a missing one: the account's, say euros).
      const currency = (currencies.length > 0 ? currencies : ['eur']).sort(
        (a, b) => (STAND_IN_RATES[b] as number) - (STAND_IN_RATES[a] as number),
      )[0] as string;
      chargedUsd = (amount / (ZERO_DECIMAL.has(currency) ? 1 : 100)) * (STAND_IN_RATES[currency] as number);
      body = { id: 'pi_standin', object: 'payment_intent', amount, currency };
    } else if (method === 'POST' && path === 'emails/batch') {
      let count = 0;
      try {
        const parsed: unknown = JSON.parse(text.trim());
        count = Array.isArray(parsed) ? parsed.length : 1;
      } catch {
        count = (text.match(/"to"/gi) ?? []).length;
      }
      chargedUsd = count * (options.resendEmailUsd ?? 0.0009);
      body = { data: Array.from({ length: count }, (_, i) => ({ id: `em_${i}` })) };
    } else if (method === 'POST' && path === 'emails') {
      chargedUsd = options.resendEmailUsd ?? 0.0009;
      body = { id: 'em_standin' };
    }
    byCase.set(caseId, (byCase.get(caseId) ?? 0) + chargedUsd);
    calls.push({ caseId, method, path, chargedUsd });
    sendJson(response, 200, body);
  });
  return {
    url: vendor.url,
    byCase,
    calls,
    total: () => [...byCase.values()].reduce((sum, usd) => sum + usd, 0),
  };
}
