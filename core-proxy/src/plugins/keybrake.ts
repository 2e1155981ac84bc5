import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { KeybrakeConfig } from '../config.js';
import { Forwarder } from '../forwarder.js';
import { ProxyMetrics } from '../metrics.js';
import type { Store } from '../store/store.js';
import { digestApiKeys } from '../vault-keys.js';

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
    app.decorate('keybrake', {
      config: options.config,
      store: options.store,
      forwarder,
      metrics: new ProxyMetrics(),
      apiKeyDigests: digestApiKeys(options.config.apiKeys),
      now: options.now ?? Date.now,
    });
    // While draining, answer in-flight calls with `Connection: close`: a keep-alive connection
    // that turns idle after close() began would otherwise hold the shutdown open.
    let draining = false;
    app.addHook('preClose', async () => {
      draining = true;
    });
    app.addHook('onSend', async (_request, reply, payload) => {
      if (draining) void reply.header('connection', 'close');
      return payload;
    });
    // Closed after in-flight requests have drained, so no settlement is cut off.
    app.addHook('onClose', async () => {
      await forwarder.close();
      await options.store.close();
    });
  },
  { name: 'keybrake-context' },
);
