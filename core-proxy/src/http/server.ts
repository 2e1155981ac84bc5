import cluster from 'node:cluster';
import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { flushLogsAndExit } from './log-destination.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KeybrakeConfig } from '../config.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';

/**
 * How long `serve` waits for its store to answer before it listens anyway. Regression: a replica
 * on Redis listened before its connection was up, and answered the first calls 503
 * `store_unavailable` (the client queues nothing while offline, so that no call waits unbounded).
 */
const STORE_START_WAIT_MS = 10_000;

/**
 * Waits until the store answers a ping, for `STORE_START_WAIT_MS` at most. A store still
 * unreachable then is logged and the server listens anyway: `/readyz` says 503 and every call
 * fails closed with 503 `store_unavailable` until the store is back, as at any other time.
 */
async function awaitStore(app: FastifyInstance, store: Store): Promise<void> {
  const deadline = Date.now() + STORE_START_WAIT_MS;
  for (let attempt = 1; ; attempt += 1) {
    try {
      await store.ping();
      return;
    } catch (error) {
      if (Date.now() >= deadline) {
        app.log.warn(
          { err: error },
          'the store is not reachable: listening anyway; /readyz answers 503 and calls fail closed until it is',
        );
        return;
      }
      await sleep(Math.min(50 * attempt, 500));
    }
  }
}

/** Options of {@link startServer}. */
export interface ServerOptions {
  /** Install SIGTERM/SIGINT handlers that drain and exit. @default true */
  readonly handleSignals?: boolean;
  /** Awaited after the store is open and the app built, before listening (`--workers`: see workers.ts). */
  readonly beforeListen?: () => Promise<void>;
}

/**
 * Opens the store, builds the app, waits for the store to answer (`awaitStore`) and listens. On SIGTERM or SIGINT it stops accepting, lets
 * in-flight calls finish and settle, closes the store, waits (at most 2 s) for its queued log lines
 * to leave and exits 0; a second signal exits at once.
 */
export async function startServer(config: KeybrakeConfig, options: ServerOptions = {}): Promise<FastifyInstance> {
  const store = openStore(config);
  const app = await buildApp({ config, store });
  // With --workers the primary prints it, once.
  if (config.generatedApiKey && !cluster.isWorker) {
    // Dev mode only: an issuer key is not a vendor secret or a vault key, and there is no other way to learn it.
    process.stderr.write(
      `\nKEYBRAKE_API_KEYS is not set (dev mode): issuer key, kept in ${config.dataDir}/dev-issuer-key:\n  ${config.apiKeys[0]}\n\n`,
    );
  }
  await awaitStore(app, store);
  await options.beforeListen?.();
  await app.listen({ host: config.host, port: config.port, backlog: config.listenBacklog });
  if (config.redisUrl && config.generatedAuditSigningKey) {
    app.log.warn(
      { keyId: config.auditSigner.keyId },
      "KEYBRAKE_AUDIT_SIGNING_KEY is not set: this replica signs audit checkpoints with its own key from its data folder; give every replica the same key so each trusts the others' checkpoints",
    );
  }
  const configured = Object.keys(config.vendorSecrets);
  app.log.info(
    { store: config.redisUrl ? 'redis' : 'embedded', dataDir: config.dataDir, vendors: configured },
    configured.length === 0 ? 'no vendor secrets configured: keys cannot be issued yet' : 'keybrake ready',
  );

  if (options.handleSignals ?? true) {
    let closing = false;
    const shutdown = (signal: NodeJS.Signals): void => {
      if (closing) process.exit(1);
      closing = true;
      app.log.info({ signal }, 'draining in-flight calls');
      // Then the log lines still queued, for a bounded time: a stdout nobody reads cannot hold the exit.
      app.close().then(
        () => flushLogsAndExit(0),
        (error: unknown) => {
          app.log.error({ err: error }, 'shutdown failed');
          flushLogsAndExit(1);
        },
      );
    };
    process.on('SIGTERM', shutdown);
    process.on('SIGINT', shutdown);
  }
  return app;
}
