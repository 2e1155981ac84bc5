/** A vault key as the admin API shows it (`GET /vault/keys/{id}`, and each entry of `GET /vault/keys`). */
export interface VaultKeyView {
  readonly key_id: string;
  readonly vendor: string;
  readonly status: 'active' | 'revoked' | 'expired';
  readonly spent_usd: number;
  readonly reserved_usd: number;
  readonly remaining_usd: number | null;
  readonly spent_today_usd?: number;
  readonly unknown_usd?: number;
  readonly expires_at: string;
  readonly created_at?: string;
  readonly revoked_at?: string | null;
  readonly agent_run_label: string | null;
  readonly daily_usd_cap: number | null;
  readonly usd_cap: number | null;
  readonly allowed_endpoints?: readonly string[];
  readonly parent_key_id?: string | null;
  readonly tainted?: boolean;
  /** Issue 25: the workload identity the key was issued to; null for an issuer key's. */
  readonly identity?: { readonly issuer: string; readonly subject: string; readonly policy: string } | null;
  /** Listing only: how many proxied calls this key made. */
  readonly calls?: number;
  /** Listing only: calls refused with `cap_exhausted`. */
  readonly cap_hits?: number;
  /** Listing only: calls refused for any reason. */
  readonly refusals?: number;
}

/** One proxied call with a key (`GET /vault/keys/{id}/calls`). */
export interface CallEntry {
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
  readonly tainted?: boolean;
  readonly key_id?: string | null;
}

/** `GET /vault/keys`. */
export interface KeyPage {
  readonly keys: readonly VaultKeyView[];
  readonly next_cursor: string | null;
}

/** `GET /vault/keys/{id}/calls?limit=`. */
export interface CallPage {
  readonly calls: readonly CallEntry[];
  readonly next_cursor?: string | null;
}

/** `GET /audit/verify`. */
export interface AuditVerification {
  readonly ok: boolean;
  readonly records: number;
  readonly head?: string;
  readonly checkpoints?: number;
  readonly last_checkpoint_records?: number;
  readonly untrusted_checkpoints?: number;
  readonly first_bad_seq?: number;
  readonly reason?: string;
}

/** One signed checkpoint of the audit chain. */
export interface AuditCheckpoint {
  readonly records: number;
  readonly head: string;
  readonly at: string;
  readonly key_id: string;
  readonly signature: string;
}

/** `GET /audit/checkpoints`. */
export interface AuditCheckpoints {
  readonly public_key: { readonly key_id: string; readonly pem: string };
  readonly checkpoints: readonly AuditCheckpoint[];
}

/** Sort orders of `GET /vault/keys`. */
export type KeySort = 'newest' | 'most_spent' | 'closest_to_cap';

/** Filters and paging of `GET /vault/keys`; empty strings mean "any". */
export interface KeyQuery {
  readonly status?: '' | 'active' | 'revoked' | 'expired';
  readonly vendor?: string;
  readonly label_prefix?: string;
  readonly parent_key_id?: string;
  readonly tainted?: '' | 'true' | 'false';
  readonly sort?: KeySort;
  readonly limit?: number;
  readonly cursor?: string | null;
}

/** A refusal from the admin API, with the contract's `error.code`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** `?a=b&…` of the non-empty values only. */
export function queryString(values: Readonly<Record<string, string | number | null | undefined>>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  }
  const text = params.toString();
  return text === '' ? '' : `?${text}`;
}

/**
 * The admin API, called with the issuer key the operator pasted. The key lives only in this
 * object (memory of this tab): it is sent as a bearer header, never in a URL, a cookie or storage.
 */
export class AdminClient {
  readonly #issuerKey: string;

  constructor(issuerKey: string) {
    this.#issuerKey = issuerKey;
  }

  /** Request options every admin call shares: the bearer header, no cookies, no caching, no referrer. */
  requestInit(init: RequestInit = {}): RequestInit {
    const headers = new Headers(init.headers);
    headers.set('authorization', `Bearer ${this.#issuerKey}`);
    if (!headers.has('accept')) headers.set('accept', 'application/json');
    return { ...init, headers, credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer' };
  }

  /** Fetches `path` and answers the response, throwing {@link ApiError} for any non-2xx. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const response = await fetch(path, this.requestInit(init));
    if (!response.ok) throw await apiError(response);
    return response;
  }

  async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return (await (await this.fetch(path, init)).json()) as T;
  }

  listKeys(query: KeyQuery): Promise<KeyPage> {
    return this.json<KeyPage>(`/vault/keys${queryString({ ...query })}`);
  }

  getKey(keyId: string): Promise<VaultKeyView> {
    return this.json<VaultKeyView>(`/vault/keys/${encodeURIComponent(keyId)}`);
  }

  /** A page of a key's calls, oldest first: after `cursor`, or after the call `after_seq` (live catch-up). */
  listCalls(keyId: string, page: { limit: number; cursor?: string | null; after_seq?: number }): Promise<CallPage> {
    return this.json<CallPage>(`/vault/keys/${encodeURIComponent(keyId)}/calls${queryString(page)}`);
  }

  revokeKey(keyId: string): Promise<{ key_id: string; status: string }> {
    return this.json(`/vault/keys/${encodeURIComponent(keyId)}`, { method: 'DELETE' });
  }

  taintKey(keyId: string): Promise<{ key_id: string; tainted: boolean }> {
    return this.json(`/vault/keys/${encodeURIComponent(keyId)}/taint`, { method: 'POST' });
  }

  verifyAudit(): Promise<AuditVerification> {
    return this.json<AuditVerification>('/audit/verify');
  }

  checkpoints(): Promise<AuditCheckpoints> {
    return this.json<AuditCheckpoints>('/audit/checkpoints');
  }

  /** The whole audit export, as a Blob to save: through `fetch`, since the issuer key may not go in a URL. */
  async exportAudit(): Promise<Blob> {
    return (await this.fetch('/audit/export', { headers: { accept: 'application/x-ndjson' } })).blob();
  }
}

async function apiError(response: Response): Promise<ApiError> {
  let code = 'http_error';
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === 'string') code = body.error.code;
    if (typeof body.error?.message === 'string') message = body.error.message;
  } catch {
    // Not the contract's JSON (a proxy in between): the status line says enough.
  }
  return new ApiError(response.status, code, message);
}
