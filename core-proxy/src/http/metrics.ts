import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Archiver, ArchiverStatus } from '../archive/archiver.js';
import type { ExpiryPurger } from '../archive/expiry-purger.js';
import { logLinesDropped } from './log-destination.js';

/** Distinct run labels `keybrake_spend_by_label_usd_total` keeps per process; later ones count as `other`. */
export const MAX_SPEND_LABELS = 1000;

/** The proxy's Prometheus metrics, on a registry of their own (one per app instance). */
export class ProxyMetrics {
  readonly registry = new Registry();

  /** Proxied requests by vendor and outcome (`forwarded`, `blocked`, `replayed`, `unknown`). */
  readonly requests = new Counter({
    name: 'keybrake_proxy_requests_total',
    help: 'Proxied requests by vendor, outcome and reason.',
    labelNames: ['vendor', 'outcome', 'reason'] as const,
    registers: [this.registry],
  });

  /** Settled spend in USD, unknown outcomes included. */
  readonly spend = new Counter({
    name: 'keybrake_spend_usd_total',
    help: 'Spend settled through the proxy, in USD (calls of unknown outcome count as spent).',
    labelNames: ['vendor'] as const,
    registers: [this.registry],
  });

  /**
   * Settled spend per vendor and run label (issue 22: the Grafana dashboard's spend per label). A run
   * label names one execution, so the label values are bounded: see {@link MAX_SPEND_LABELS}.
   */
  readonly spendByLabel = new Counter({
    name: 'keybrake_spend_by_label_usd_total',
    help: 'Spend settled through the proxy per agent_run_label, in USD (the first 1,000 labels per process; later ones as "other").',
    labelNames: ['vendor', 'label'] as const,
    registers: [this.registry],
  });

  private readonly spendLabels = new Set<string>();

  /** Calls refused because a cap would have been exceeded. */
  readonly capHits = new Counter({
    name: 'keybrake_cap_hits_total',
    help: 'Calls refused with 429 cap_exhausted.',
    labelNames: ['vendor'] as const,
    registers: [this.registry],
  });

  /** Alerts delivered to the webhook by this process (issue 26). */
  readonly alertsSent = new Counter({
    name: 'keybrake_alerts_sent_total',
    help: 'Alerts delivered to the webhook by this process, by type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  /** Alerts this process gave up on (attempts or age exhausted, or refused by the receiver). */
  readonly alertsFailed = new Counter({
    name: 'keybrake_alerts_failed_total',
    help: 'Alerts marked failed by this process (attempts or age exhausted, or refused by the receiver), by type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  /** Alerts of the store's outbox not yet delivered nor failed, as this process's sender last counted. */
  readonly alertsPending = new Gauge({
    name: 'keybrake_alerts_pending',
    help: "Alerts waiting in the store's outbox (all replicas), as this process's sender last counted them, by type.",
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  /** Issue 26: calls refused by a request or concurrency limit, by reason (`rate_limited`, `concurrency_limited`). */
  readonly limitRefusals = new Counter({
    name: 'keybrake_limit_refusals_total',
    help: 'Calls refused with 429 rate_limited or concurrency_limited, by vendor and reason.',
    labelNames: ['vendor', 'reason'] as const,
    registers: [this.registry],
  });

  /**
   * Log lines this process dropped: its stdout queue was past `KEYBRAKE_LOG_BUFFER_BYTES` (a full,
   * unread pipe) or stdout had failed. Process-wide: every app of the process logs through one destination.
   */
  readonly logLinesDropped: Counter = new Counter({
    name: 'keybrake_log_lines_dropped_total',
    help: 'Log lines this process dropped because its stdout was not read fast enough (queue past KEYBRAKE_LOG_BUFFER_BYTES) or had failed.',
    registers: [this.registry],
    collect: () => {
      this.logLinesDropped.reset();
      this.logLinesDropped.inc(logLinesDropped());
    },
  });

  /** Time the vendor took to answer. */
  readonly upstreamLatency = new Histogram({
    name: 'keybrake_upstream_duration_seconds',
    help: 'Latency of forwarded vendor calls, in seconds.',
    labelNames: ['vendor', 'status_class'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  /** How many answered calls wait for the store to record them (see `DeferredSettlements`). */
  deferredSettlementsCount: () => number = () => 0;

  readonly deferredSettlements: Gauge = new Gauge({
    name: 'keybrake_deferred_settlements',
    help: 'Vendor calls answered while the store could not record them, waiting to be settled.',
    registers: [this.registry],
    collect: () => {
      this.deferredSettlements.set(this.deferredSettlementsCount());
    },
  });

  /** The audit archiver whose figures the archive gauges show (issue 23); none when archiving is off. */
  archiver: Archiver | undefined;

  private archiveStatus(): ArchiverStatus | undefined {
    return this.archiver?.snapshot();
  }

  /** Audit records in the live store (issue 23). */
  readonly auditRecordsLive: Gauge = new Gauge({
    name: 'keybrake_audit_records_live',
    help: 'Audit records held in the live store (the chain minus the records archived and trimmed), as of the last archive round.',
    registers: [this.registry],
    collect: () => {
      const status = this.archiveStatus();
      if (status?.head && status.state) this.auditRecordsLive.set(status.head.records - status.state.trimmedThrough);
    },
  });

  readonly auditRecordsArchived: Gauge = new Gauge({
    name: 'keybrake_audit_records_archived',
    help: 'Audit records in archive segments confirmed stored and read back (archivedThrough).',
    registers: [this.registry],
    collect: () => {
      const status = this.archiveStatus();
      if (status?.state) this.auditRecordsArchived.set(status.state.archivedThrough);
    },
  });

  readonly auditArchiveLagRecords: Gauge = new Gauge({
    name: 'keybrake_audit_archive_lag_records',
    help: 'Audit records past the live window not archived yet.',
    registers: [this.registry],
    collect: () => {
      const status = this.archiveStatus();
      if (status) this.auditArchiveLagRecords.set(status.lagRecords);
    },
  });

  readonly auditArchiveLagSeconds: Gauge = new Gauge({
    name: 'keybrake_audit_archive_lag_seconds',
    help: 'Seconds since the archive was last caught up with the live window (0 while it is).',
    registers: [this.registry],
    collect: () => {
      const status = this.archiveStatus();
      if (status) this.auditArchiveLagSeconds.set(status.lagSeconds);
    },
  });

  readonly auditArchiveLastError: Gauge = new Gauge({
    name: 'keybrake_audit_archive_last_error_timestamp_seconds',
    help: 'Unix time of the last failed archive round on this replica (0: none).',
    registers: [this.registry],
    collect: () => {
      const status = this.archiveStatus();
      if (status) this.auditArchiveLastError.set(status.lastError ? status.lastError.at / 1000 : 0);
    },
  });

  /** Failed archive rounds by reason (`sink_unavailable`, `readback_mismatch`, `lease_lost`, ...). */
  readonly auditArchiveErrors = new Counter({
    name: 'keybrake_audit_archive_errors_total',
    help: 'Failed archive rounds on this replica, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly auditArchiveSegments = new Counter({
    name: 'keybrake_audit_archive_segments_total',
    help: 'Archive segments this replica stored, read back and recorded.',
    registers: [this.registry],
  });

  /** The purge of expired keys and kept responses (issue 23). */
  expiryPurger: ExpiryPurger | undefined;

  /** Rows this replica's purge removed, by kind (issue 23). */
  readonly expiryPurged: Counter = new Counter({
    name: 'keybrake_expiry_purged_total',
    help: 'Rows removed by the purge of expired keys on this replica, by kind (families, keys, spend_days, idempotent_responses, alerts, vendor_objects).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly expiryKept: Gauge = new Gauge({
    name: 'keybrake_expiry_kept_families',
    help: 'Key families past their retention kept in the last purge round: a call in flight, an alert pending, or audit records not yet archived and trimmed.',
    registers: [this.registry],
    collect: () => {
      const status = this.expiryPurger?.snapshot();
      if (status) this.expiryKept.set(status.kept);
    },
  });

  readonly expiryLastRun: Gauge = new Gauge({
    name: 'keybrake_expiry_last_run_timestamp_seconds',
    help: 'Unix time of the last purge round this replica finished as the lease holder (0: none).',
    registers: [this.registry],
    collect: () => {
      const status = this.expiryPurger?.snapshot();
      if (status) this.expiryLastRun.set(status.lastRunAt / 1000);
    },
  });

  readonly expiryLastError: Gauge = new Gauge({
    name: 'keybrake_expiry_last_error_timestamp_seconds',
    help: 'Unix time of the last failed purge round on this replica (0: none).',
    registers: [this.registry],
    collect: () => {
      const status = this.expiryPurger?.snapshot();
      if (status) this.expiryLastError.set(status.lastError ? status.lastError.at / 1000 : 0);
    },
  });

  readonly expiryErrors = new Counter({
    name: 'keybrake_expiry_errors_total',
    help: 'Failed purge rounds on this replica.',
    registers: [this.registry],
  });

  /** Counts a call's spend, per vendor and per run label. */
  recordSpend(vendor: string, agentRunLabel: string | null | undefined, usd: number): void {
    this.spend.inc({ vendor }, usd);
    let label = agentRunLabel ?? '';
    if (!this.spendLabels.has(label)) {
      if (this.spendLabels.size >= MAX_SPEND_LABELS) label = 'other';
      else this.spendLabels.add(label);
    }
    this.spendByLabel.inc({ vendor, label }, usd);
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'keybrake_' });
  }
}
