import type { FastifyBaseLogger } from 'fastify';
import type { ProxyMetrics } from '../http/metrics.js';
import type { AlertEntry, AlertState, Store } from '../store/store.js';
import type { AlertWebhookConfig } from './alert-config.js';
import { alertBody, signatureHeader, slackBody } from './alert-webhook.js';

/** Options of {@link AlertSender}. */
export interface AlertSenderOptions {
  readonly store: Store;
  readonly webhook: AlertWebhookConfig;
  readonly metrics: ProxyMetrics;
  readonly log: FastifyBaseLogger;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
  /** How often the outbox is looked at. @default 1000 */
  readonly pollMs?: number;
}

/** Alerts leased per claim. */
const CLAIM_BATCH = 20;
/** Claims per poll at most, so that one poll ends. */
const CLAIMS_PER_POLL = 10;
/** The longest delay between two attempts. */
const MAX_RETRY_DELAY_MS = 5 * 60 * 1000;

/** How one attempt ended. */
type AttemptResult =
  | { readonly kind: 'delivered'; readonly status: number }
  /** A 5xx, 408, 429, a timeout or a connection error: worth another attempt. */
  | { readonly kind: 'retry'; readonly status: number | null; readonly reason: string }
  /** Any other answer: the receiver refuses it, another attempt would too. */
  | { readonly kind: 'refused'; readonly status: number };

/**
 * Drains the store's alert outbox to the webhook, on a timer of its own: nothing here runs on a
 * proxied call's path. Each alert is leased to one sender (one replica or worker) at a time, so
 * an alert is delivered at least once, twice only when a lease lapses mid-attempt (receivers
 * de-duplicate on `id`). Failed attempts are retried with exponential backoff and jitter, until
 * `maxAttempts` or `maxAgeMs`, then the alert is marked failed. Logs name the alert, never the
 * webhook URL, the secret or the body.
 */
export class AlertSender {
  private readonly now: () => number;
  private readonly pollMs: number;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: AlertSenderOptions) {
    this.now = options.now ?? Date.now;
    this.pollMs = options.pollMs ?? 1000;
  }

  start(): void {
    this.timer = setInterval(() => void this.poll(), this.pollMs);
    this.timer.unref();
    void this.poll();
  }

  /** Stops polling and waits for attempts in flight (each bounded by the timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.polling;
  }

  private poll(): Promise<void> {
    if (this.polling || this.stopped) return this.polling ?? Promise.resolve();
    this.polling = this.drain()
      .catch((error: unknown) => {
        this.options.log.warn({ code: errorCode(error) }, 'alert outbox: claim failed, retrying on the next poll');
      })
      .finally(() => {
        this.polling = undefined;
      });
    return this.polling;
  }

  private async drain(): Promise<void> {
    const { webhook, store, metrics } = this.options;
    for (let round = 0; round < CLAIMS_PER_POLL && !this.stopped; round += 1) {
      const { claimed, pending } = await store.claimAlerts({
        now: this.now(),
        // Past the attempt's own timeout: a live sender never loses its lease mid-attempt.
        leaseMs: webhook.timeoutMs + 5000,
        limit: CLAIM_BATCH,
      });
      for (const [type, count] of Object.entries(pending)) metrics.alertsPending.set({ type }, count);
      if (claimed.length === 0) return;
      await Promise.all(claimed.map((entry) => this.deliver(entry)));
    }
  }

  private async deliver(entry: AlertEntry): Promise<void> {
    const { webhook, store, metrics, log } = this.options;
    const now = this.now();
    const fields = { alert_id: entry.id, type: entry.type, key_id: entry.keyId, attempt: entry.attempts };
    let result: AttemptResult;
    if (now - entry.createdAt > webhook.maxAgeMs) {
      result = { kind: 'refused', status: 0 };
      log.warn(fields, 'alert outbox: alert too old, marked failed');
    } else {
      result = await this.attempt(entry);
    }
    const { kind } = result;
    const status = result.status === 0 ? null : result.status;
    const finish = (state: AlertState, nextAttemptAt: number): Promise<void> =>
      store.finishAlert({ id: entry.id, keyId: entry.keyId, state, lastStatus: status, nextAttemptAt });
    if (kind === 'delivered') {
      await finish('delivered', 0);
      metrics.alertsSent.inc({ type: entry.type });
      log.info({ ...fields, status }, 'alert delivered');
      return;
    }
    if (kind === 'retry' && entry.attempts < webhook.maxAttempts) {
      const delay = Math.min(MAX_RETRY_DELAY_MS, webhook.retryBaseMs * 2 ** (entry.attempts - 1));
      // Equal jitter: replicas retrying a receiver that came back do not arrive in lockstep.
      const nextAttemptAt = this.now() + delay / 2 + Math.random() * (delay / 2);
      await finish('pending', nextAttemptAt);
      log.warn({ ...fields, status, reason: result.reason }, 'alert delivery failed, will retry');
      return;
    }
    await finish('failed', 0);
    metrics.alertsFailed.inc({ type: entry.type });
    log.warn({ ...fields, status }, 'alert delivery failed for good');
  }

  private async attempt(entry: AlertEntry): Promise<AttemptResult> {
    const { webhook } = this.options;
    const body = JSON.stringify(webhook.format === 'slack' ? slackBody(entry) : alertBody(entry));
    const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'keybrake-alerts' };
    if (webhook.secret !== null) {
      headers['keybrake-signature'] = signatureHeader(webhook.secret, body, Math.floor(this.now() / 1000));
    }
    try {
      const response = await fetch(webhook.url, {
        method: 'POST',
        headers,
        body,
        // A redirect would send the signed alert to a URL nobody configured.
        redirect: 'manual',
        signal: AbortSignal.timeout(webhook.timeoutMs),
      });
      await response.arrayBuffer().catch(() => undefined);
      const { status } = response;
      if (status >= 200 && status < 300) return { kind: 'delivered', status };
      if (status >= 500 || status === 408 || status === 429) return { kind: 'retry', status, reason: 'status' };
      return { kind: 'refused', status };
    } catch (error) {
      return { kind: 'retry', status: null, reason: errorCode(error) };
    }
  }
}

/** An error's code only (`ECONNREFUSED`, `TimeoutError`): a message could quote the URL. */
function errorCode(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string') return code;
  const name = (error as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? name : 'error';
}
