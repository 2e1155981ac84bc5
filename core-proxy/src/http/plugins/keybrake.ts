import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { KeybrakeConfig } from '../../config.js';
import { AlertSender } from '../../alerts/alert-sender.js';
import { AuditCheckpointer, type TrustedKeys, trustedKeys } from '../../audit/checkpoints.js';
import { Archiver } from '../../archive/archiver.js';
import { ExpiryPurger } from '../../archive/expiry-purger.js';
import { openSink } from '../../archive/open-sink.js';
import { type ArchiveSink, ArchiveSinkError } from '../../archive/sink.js';
import { DeferredSettlements } from '../../enforcement/deferred-settlements.js';
import { Forwarder } from '../../enforcement/forwarder.js';
import { ProxyMetrics } from '../metrics.js';
import type { Store } from '../../store/store.js';
import { digestApiKeys } from '../../keys/vault-keys.js';
import { TokenVerifier } from '../../identity/token-verifier.js';

/** What the routes share: configuration, the store, the forwarder, metrics and the clock. */
export interface KeybrakeContext {
  readonly config: KeybrakeConfig;
  readonly store: Store;
  readonly forwarder: Forwarder;
  readonly metrics: ProxyMetrics;
  /** Digests of the admin keys, compared in constant time. */
  readonly apiKeyDigests: readonly Buffer[];
  /** Epoch milliseconds. */
  readonly now: () => number;
  /** Signs the audit chain head every N records or minutes. */
  readonly checkpointer: AuditCheckpointer;
  /** Archives sealed ranges of the chain and trims them from the live store (issue 23); none when off. */
  readonly archiver: Archiver | undefined;
  /** Where the archive's segments are (`KEYBRAKE_ARCHIVE`); none when off. */
  readonly archiveSink: ArchiveSink | undefined;
  /** Removes expired key families and kept responses past their retention (issue 23). */
  readonly expiryPurger: ExpiryPurger;
  /** Settlements of answered calls the store could not record yet, retried until it can. */
  readonly settlements: DeferredSettlements;
  /** Keys whose checkpoints `GET /audit/verify` trusts: this proxy's own. */
  readonly trustedKeys: TrustedKeys;
  /** Issue 25: verifies bearer JWTs of the admin API; none without `KEYBRAKE_ISSUERS_FILE`. */
  readonly tokenVerifier: TokenVerifier | undefined;
  /** `draining`: `close()` has begun (fastify refuses new requests with 503; answers say `Connection: close`). */
  readonly lifecycle: { draining: boolean };
}

declare module 'fastify' {
  interface FastifyInstance {
    keybrake: KeybrakeContext;
  }
}

/** Options of the keybrake context plugin. */
export interface KeybrakePluginOptions {
  readonly config: KeybrakeConfig;
  readonly store: Store;
  /** @default Date.now */
  readonly now?: () => number;
}

/** Decorates the app with the shared context; closes the forwarder and the store with the app. */
export const keybrakePlugin = fp(
  async (app: FastifyInstance, options: KeybrakePluginOptions) => {
    const forwarder = new Forwarder({
      timeoutMs: options.config.upstreamTimeoutMs,
      maxResponseBytes: 10 * 1024 * 1024,
    });
    const now = options.now ?? Date.now;
    const checkpointer = new AuditCheckpointer(options.store, options.config.auditSigner, {
      everyRecords: options.config.auditCheckpointRecords,
      everyMs: options.config.auditCheckpointIntervalMs,
      now,
      // The log usually leaves the machine: a copy of every checkpoint out of an attacker's reach.
      onCheckpoint: (checkpoint) => app.log.info({ checkpoint }, 'audit checkpoint'),
    });
    const metrics = new ProxyMetrics();
    const archive = options.config.archive;
    if (archive.warning) app.log.warn(archive.warning);
    const sink = await openSink(archive.target);
    try {
      await sink?.prepare();
    } catch (error) {
      // A bucket that is not what the configuration says stops the start; one out of reach only waits.
      if (!(error instanceof ArchiveSinkError) || error.reason !== 'sink_unavailable') {
        await sink?.close();
        throw error;
      }
      app.log.warn({ sink: sink?.describe(), reason: error.reason }, error.message);
    }
    const archiver =
      sink &&
      new Archiver({
        store: options.store,
        sink,
        signer: options.config.auditSigner,
        liveRecords: archive.liveRecords,
        liveMs: archive.liveMs,
        intervalMs: archive.intervalMs,
        segmentRecords: archive.segmentRecords,
        now,
        onCheckpoint: (checkpoint) => app.log.info({ checkpoint }, 'audit checkpoint'),
        onSegment: (segment) => {
          metrics.auditArchiveSegments.inc();
          app.log.info({ segment: { ...segment, sink: sink.describe() } }, 'audit segment archived');
        },
        onError: (error) => {
          metrics.auditArchiveErrors.inc({ reason: error.reason });
          app.log.warn({ sink: sink.describe(), reason: error.reason }, `audit archive: ${error.message}`);
        },
      });
    metrics.archiver = archiver;
    // Issue 23: expired keys and kept responses go on the archiver's schedule, under its lease.
    const expiryPurger = new ExpiryPurger({
      store: options.store,
      holder: archiver?.holder,
      keyRetentionMs: options.config.expiry.keyRetentionMs,
      intervalMs: archive.intervalMs,
      now,
      onPurge: (purged) => {
        metrics.expiryPurged.inc({ kind: 'families' }, purged.families);
        metrics.expiryPurged.inc({ kind: 'keys' }, purged.keys);
        metrics.expiryPurged.inc({ kind: 'spend_days' }, purged.spendDays);
        metrics.expiryPurged.inc({ kind: 'idempotent_responses' }, purged.idempotentResponses);
        metrics.expiryPurged.inc({ kind: 'alerts' }, purged.alerts);
        metrics.expiryPurged.inc({ kind: 'vendor_objects' }, purged.vendorObjects);
        app.log.info({ purged }, 'expired keys purged');
      },
      onError: (error) => {
        metrics.expiryErrors.inc();
        app.log.warn(`expiry purge: ${error.message}`);
      },
    });
    metrics.expiryPurger = expiryPurger;
    const settlements = new DeferredSettlements(options.store, app.log);
    metrics.deferredSettlementsCount = () => settlements.size;
    const lifecycle = { draining: false };
    app.decorate('keybrake', {
      config: options.config,
      store: options.store,
      forwarder,
      metrics,
      settlements,
      apiKeyDigests: digestApiKeys(options.config.apiKeys),
      now,
      checkpointer,
      archiver,
      archiveSink: sink,
      expiryPurger,
      trustedKeys: trustedKeys([options.config.auditSigner.publicKeyPem()]),
      tokenVerifier: options.config.issuers ? new TokenVerifier(options.config.issuers, { now }) : undefined,
      lifecycle,
    });
    checkpointer.start();
    // Issue 26: every process drains the outbox; the store's leases keep each alert to one sender.
    const webhook = options.config.alerts.webhook;
    // On the wall clock, not the app's: signature timestamps and retry times are real time.
    const alertSender = webhook ? new AlertSender({ store: options.store, webhook, metrics, log: app.log }) : undefined;
    alertSender?.start();
    archiver?.start();
    expiryPurger.start();
    // While draining, answer in-flight calls with `Connection: close`: a keep-alive connection
    // that turns idle after close() began would otherwise hold the shutdown open.
    app.addHook('preClose', async () => {
      lifecycle.draining = true;
    });
    app.addHook('onSend', async (_request, reply, payload) => {
      if (lifecycle.draining) void reply.header('connection', 'close');
      return payload;
    });
    // Closed after in-flight requests have drained, so no settlement is cut off.
    app.addHook('onClose', async () => {
      await forwarder.close();
      await settlements.close();
      await checkpointer.stop();
      await alertSender?.stop();
      // Before the archiver, which gives up the lease they may share.
      await expiryPurger.stop();
      await archiver?.stop();
      await sink?.close();
      await options.store.close();
    });
  },
  { name: 'keybrake-context' },
);
