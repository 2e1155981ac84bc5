import twilio from 'twilio';
import type TwilioRequestClient from 'twilio/lib/base/RequestClient.js';
import type * as TwilioResponseModule from 'twilio/lib/http/response.js';
import { CAP_HIT_HEADER } from './cap-hit.js';
import { CapExhaustedError, KeybrakeApiError } from './errors.js';
import { ERROR_HEADER } from './refusal.js';

type TwilioResponse<TData> = TwilioResponseModule.default<TData>;

/**
 * An `AC...` account SID to construct the Twilio SDK with: the SDK insists on one, and the proxy
 * rewrites it to the real SID (and back in responses), so the agent never learns the real one.
 */
export const TWILIO_PLACEHOLDER_SID = `AC${'0'.repeat(32)}`;

/** Options of {@link twilioOptions}, with the Twilio SDK's own defaults. */
export interface TwilioProxyOptions {
  /** Retry Twilio's own 429s with exponential backoff (never a cap hit). @default false, as the SDK */
  readonly autoRetry?: boolean;
  /** @default 3 */
  readonly maxRetries?: number;
  /** @default 3000 */
  readonly maxRetryDelay?: number;
  /** @default 30000 */
  readonly timeout?: number;
}

/**
 * The Twilio SDK's HTTP client, sending every request to the proxy's `/twilio` route instead of
 * `api.twilio.com`. The SDK's own auto-retry would retry any 429, a cap hit included, so it is
 * done here instead: Twilio's 429s are retried as the SDK would, a cap hit throws
 * `CapExhaustedError` at once, and any other refusal of Keybrake's a `KeybrakeApiError` with its code.
 */
export class KeybrakeTwilioHttpClient extends twilio.RequestClient {
  private readonly proxyBase: string;

  constructor(
    proxyUrl: string,
    private readonly proxyOptions: TwilioProxyOptions = {},
  ) {
    super({ timeout: proxyOptions.timeout ?? 30_000, autoRetry: false });
    this.proxyBase = `${proxyUrl.replace(/\/+$/, '')}/twilio`;
  }

  override async request<TData>(opts: TwilioRequestClient.RequestOptions<TData>): Promise<TwilioResponse<TData>> {
    const target = new URL(opts.uri);
    const uri = `${this.proxyBase}${target.pathname}${target.search}`;
    const maxRetries = this.proxyOptions.maxRetries ?? 3;
    for (let attempt = 1; ; attempt += 1) {
      const response = await super.request<TData>({ ...opts, uri });
      const headers = (response.headers ?? {}) as Record<string, unknown>;
      if (String(headers[CAP_HIT_HEADER] ?? '') === 'true') {
        throw new CapExhaustedError(undefined, 'twilio');
      }
      // Keybrake's own refusals (taint, allowlist, revoked key...): the Twilio SDK would make a
      // RestException without their code out of them.
      const refusal = headers[ERROR_HEADER];
      if (refusal !== undefined) {
        throw new KeybrakeApiError(
          response.statusCode,
          String(refusal),
          `Keybrake refused the call: ${String(refusal)}`,
        );
      }
      if (response.statusCode !== 429) return response;
      if (!this.proxyOptions.autoRetry || attempt > maxRetries) return response;
      // Twilio's own policy: 100 ms * 2^n, capped, with full jitter.
      const base = Math.min(this.proxyOptions.maxRetryDelay ?? 3000, 100 * 2 ** attempt);
      await new Promise((resolve) => setTimeout(resolve, Math.floor(base * Math.random())));
    }
  }
}

/**
 * Constructor options that point the official `twilio` SDK at a Keybrake proxy.
 *
 * @example twilio(TWILIO_PLACEHOLDER_SID, vaultKey, twilioOptions('http://keybrake:8080'))
 */
export function twilioOptions(
  proxyUrl: string,
  options: TwilioProxyOptions = {},
): { httpClient: KeybrakeTwilioHttpClient } {
  return { httpClient: new KeybrakeTwilioHttpClient(proxyUrl, options) };
}
