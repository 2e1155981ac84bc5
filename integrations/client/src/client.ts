import { CapExhaustedError, KeybrakeApiError } from './errors.js';
import type { TokenProvider } from './token-provider.js';
import type { VendorName } from './vendors.js';

/** Options of {@link KeybrakeClient}. */
export interface KeybrakeClientOptions {
  /** Where the proxy listens, e.g. `http://keybrake:8080`. */
  readonly baseUrl: string;
  /** An issuer key (one of the proxy's `KEYBRAKE_API_KEYS`). Give this or `tokenProvider`, not both. */
  readonly apiKey?: string;
  /**
   * Issue 25: workload identity. Called before every request for the bearer token to send (a JWT
   * from one of the proxy's trusted issuers), e.g. `fromTokenFile('/var/run/secrets/keybrake/token')`,
   * which re-reads the file when Kubernetes rotates it. Give this or `apiKey`, not both.
   */
  readonly tokenProvider?: TokenProvider;
  /** Per-request timeout, as the Stripe SDK's. @default 80000 */
  readonly timeoutMs?: number;
  /**
   * Retries of requests that are safe to repeat (reads, revocations, and any request that was
   * refused before it was stored: connection refused, 503), with exponential backoff and jitter as
   * the Stripe SDK does. A cap hit is never retried. @default 2
   */
  readonly maxNetworkRetries?: number;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** Input of {@link KeybrakeClient.issueVaultKey}: the proxy's `POST /vault/keys` body. */
export interface IssueVaultKeyInput {
  /** A built-in vendor, or one declared in the proxy's `KEYBRAKE_VENDORS_FILE`. */
  readonly vendor: VendorName;
  readonly daily_usd_cap?: number;
  readonly usd_cap?: number;
  readonly allowed_endpoints: readonly string[];
  /** `"90s"`, `"30m"`, `"2h"`, `"1d"` or seconds; at most 7 days. */
  readonly expires_in: string | number;
  readonly agent_run_label?: string;
  readonly parent_key_id?: string;
  readonly tainted?: boolean;
  /** Issue 26: request and concurrency limits (integers >= 1); children count against them. */
  readonly max_requests_per_second?: number;
  readonly max_requests_per_minute?: number;
  readonly max_concurrent?: number;
}

/** A newly issued key. `vault_key` is shown only here. */
export interface IssuedVaultKey {
  readonly key_id: string;
  readonly vault_key: string;
  readonly vendor: string;
  readonly expires_at: string;
  readonly daily_usd_cap: number | null;
  readonly usd_cap: number | null;
  readonly allowed_endpoints: readonly string[];
  readonly agent_run_label: string | null;
  readonly parent_key_id: string | null;
  readonly tainted: boolean;
}

/** A key's state and spend. */
export interface VaultKeyState {
  readonly key_id: string;
  readonly vendor: string;
  readonly status: 'active' | 'revoked' | 'expired';
  readonly spent_usd: number;
  readonly reserved_usd: number;
  readonly remaining_usd: number | null;
  readonly expires_at: string;
  readonly agent_run_label: string | null;
  readonly tainted: boolean;
  readonly [field: string]: unknown;
}

/** One proxied request made with a key. */
export interface VaultKeyCall {
  readonly seq: number;
  readonly at: string;
  readonly method: string;
  readonly path: string;
  readonly outcome: 'forwarded' | 'blocked' | 'replayed' | 'unknown';
  readonly reason: string | null;
  readonly status: number | null;
  readonly cost_usd: number;
  readonly vendor_request_id: string | null;
  readonly idempotency_key: string | null;
  readonly agent_run_label: string | null;
  readonly tainted: boolean;
}

const RETRYABLE_STATUSES = new Set([502, 503, 504]);

/** Typed client of the Keybrake admin API. */
export class KeybrakeClient {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;
  private readonly maxNetworkRetries: number;
  private readonly fetchImpl: typeof fetch;
  private readonly bearer: TokenProvider;
  private readonly rotates: boolean;

  constructor(options: KeybrakeClientOptions) {
    const { apiKey, tokenProvider } = options;
    if ((apiKey === undefined) === (tokenProvider === undefined)) {
      throw new TypeError('KeybrakeClient: give exactly one of apiKey (an issuer key) and tokenProvider');
    }
    this.bearer = tokenProvider ?? (() => apiKey as string);
    this.rotates = tokenProvider !== undefined;
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? 80_000;
    this.maxNetworkRetries = options.maxNetworkRetries ?? 2;
    this.fetchImpl = options.fetch ?? fetch;
  }

  /** Issues a vault key for one execution. Not retried once sent: a second key would be issued. */
  issueVaultKey(input: IssueVaultKeyInput): Promise<IssuedVaultKey> {
    return this.request('POST', '/vault/keys', input, false);
  }

  getVaultKey(keyId: string): Promise<VaultKeyState> {
    return this.request('GET', `/vault/keys/${encodeURIComponent(keyId)}`);
  }

  /** Revokes a key and its children; idempotent, effective on the next call everywhere. */
  revokeVaultKey(keyId: string): Promise<{ key_id: string; status: 'revoked' }> {
    return this.request('DELETE', `/vault/keys/${encodeURIComponent(keyId)}`);
  }

  /** Taints a key and its children for good: they can no longer call money-moving endpoints. */
  taintVaultKey(keyId: string): Promise<{ key_id: string; tainted: true }> {
    return this.request('POST', `/vault/keys/${encodeURIComponent(keyId)}/taint`);
  }

  async listCalls(keyId: string): Promise<VaultKeyCall[]> {
    return (await this.request<{ calls: VaultKeyCall[] }>('GET', `/vault/keys/${encodeURIComponent(keyId)}/calls`))
      .calls;
  }

  /**
   * @param repeatable whether the request may be sent again after it may have reached the proxy.
   */
  private async request<T>(method: string, path: string, body?: unknown, repeatable = true): Promise<T> {
    let retriedExpired = false;
    for (let attempt = 0; ; attempt += 1) {
      // Asked on every attempt: a retry after a rotation sends the new token.
      const token = await this.bearer();
      let response: Response;
      try {
        response = await this.fetchImpl(`${this.baseUrl}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        const notSent = (error as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED';
        if ((repeatable || notSent) && attempt < this.maxNetworkRetries) {
          await backoff(attempt);
          continue;
        }
        throw error;
      }
      const text = await response.text();
      if (response.ok) return JSON.parse(text) as T;
      const parsed = safeJson(text) as { error?: { code?: string; message?: string } } | undefined;
      const code = parsed?.error?.code ?? 'unknown_error';
      const message = parsed?.error?.message ?? `HTTP ${response.status}`;
      if (response.status === 429 && response.headers.get('x-keybrake-cap-hit') === 'true') {
        throw new CapExhaustedError(message);
      }
      // Issue 25: an expired token was refused before anything was stored. If the token file has
      // been rotated since (the kubelet replaces it well before expiry), send the new one, once.
      if (response.status === 401 && code === 'token_expired' && this.rotates && !retriedExpired) {
        retriedExpired = true;
        if ((await this.bearer()) !== token) {
          attempt -= 1;
          continue;
        }
      }
      // 503 store_unavailable stored nothing: safe to repeat whatever the method.
      const storedNothing = response.status === 503 && code === 'store_unavailable';
      if (
        RETRYABLE_STATUSES.has(response.status) &&
        (repeatable || storedNothing) &&
        attempt < this.maxNetworkRetries
      ) {
        await backoff(attempt);
        continue;
      }
      throw new KeybrakeApiError(response.status, code, message);
    }
  }
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s... at most 8 s, as the Stripe SDK. */
function backoff(attempt: number): Promise<void> {
  const base = Math.min(500 * 2 ** attempt, 8000);
  return new Promise((resolve) => setTimeout(resolve, base / 2 + Math.random() * (base / 2)));
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
