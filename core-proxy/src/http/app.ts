import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { STATUS_CODES, createServer } from 'node:http';
import { ERROR_TABLE, type ErrorCode, InvalidRequestError, errorBody } from '../errors.js';
import type { KeybrakeConfig } from '../config.js';
import { installClientTimeouts } from './client-timeouts.js';
import { processLogDestination } from './log-destination.js';
import { errorsPlugin } from './plugins/errors.js';
import { keybrakePlugin } from './plugins/keybrake.js';
import { adminRoutes } from './routes/admin.js';
import { consoleRoutes } from './routes/console.js';
import { healthRoutes } from './routes/health.js';
import { type RawHandler, proxyHandler, proxyRoutes } from './routes/proxy.js';
import type { Store } from '../store/store.js';

/** Options of {@link buildApp}. */
export interface AppOptions {
  readonly config: KeybrakeConfig;
  /** The store the app owns from now on: it is closed with the app. */
  readonly store: Store;
  /** Epoch milliseconds; tests move time with it. @default Date.now */
  readonly now?: () => number;
  /** Fastify logger options. @default { level: config.logLevel, redact, stream: the process's {@link processLogDestination} } */
  readonly logger?: FastifyServerOptions['logger'];
}

/** Headers that would carry a secret or a vault key, never written to a log line. */
export const REDACTED_LOG_PATHS = ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'];

/**
 * Builds the Keybrake app with no port bound: admin API, vendor proxy, health and metrics. The
 * server (`server.ts`) listens; tests call `app.inject` or listen on port 0.
 */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  // The proxy route's own handler, in front of fastify's once the app is ready (routes/proxy.ts).
  let proxy: RawHandler | undefined;
  // fastify's request ids (`req-1`, `req-2`, ... in base 36), shared with the proxy route's.
  let lastRequestId = 0;
  const nextRequestId = (): string => {
    lastRequestId = (lastRequestId + 1) & 0x7fffffff;
    return `req-${lastRequestId.toString(36)}`;
  };
  const app = Fastify({
    genReqId: nextRequestId,
    // The server fastify would make (its timeouts), with the proxy route's handler first.
    serverFactory: (fastifyHandler, serverOptions) => {
      const server = createServer((request, response) => {
        if (proxy === undefined || !proxy(request, response)) fastifyHandler(request, response);
      });
      server.keepAliveTimeout = serverOptions.keepAliveTimeout as number;
      server.requestTimeout = serverOptions.requestTimeout as number;
      server.setTimeout(serverOptions.connectionTimeout as number);
      return server;
    },
    // Never pino's default destination: see LogDestination (a full stdout pipe kept the proxy from exiting).
    logger: options.logger ?? {
      level: options.config.logLevel,
      redact: REDACTED_LOG_PATHS,
      stream: processLogDestination(options.config.logBufferBytes),
    },
    // Large enough for an email batch; the proxy route sets its own limit from the config.
    bodyLimit: options.config.maxBodyBytes,
    // Client-side protocol errors (oversized headers, garbage) still get the contract's JSON shape.
    clientErrorHandler: (error, socket) => {
      const code = (error as NodeJS.ErrnoException).code;
      const tooLarge = code === 'HPE_HEADER_OVERFLOW';
      const timedOut = code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const refusal: ErrorCode = tooLarge ? 'headers_too_large' : timedOut ? 'request_timeout' : 'invalid_request';
      const { status } = ERROR_TABLE[refusal];
      const body = JSON.stringify(
        refusal === 'invalid_request'
          ? { error: { code: refusal, message: 'Malformed HTTP request.' } }
          : errorBody(refusal),
      );
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
    },
    // Long enough for any vendor path; the 16 KiB header limit bounds the URL anyway.
    routerOptions: { maxParamLength: 4096 },
    return503OnClosing: true,
    // The router's own refusals (a URL it cannot decode) get the contract's shape too.
    frameworkErrors: (error, _request, reply) => {
      void (reply as FastifyReply).code(400).send(new InvalidRequestError(error.message).toJSON());
    },
  });
  // Regression: issue 16. A body trickled a byte at a time held its connection forever (fastify's
  // requestTimeout is 0). No idle socket timeout: it would also cut a client off while its vendor
  // call is in flight. Load-fair, not Node's own: see installClientTimeouts.
  installClientTimeouts(app.server, {
    headersTimeoutMs: options.config.headersTimeoutMs,
    requestTimeoutMs: options.config.requestTimeoutMs,
  });
  const routeUrls: string[] = [];
  app.addHook('onRoute', (route) => {
    routeUrls.push(route.url);
  });
  await app.register(errorsPlugin);
  await app.register(keybrakePlugin, { config: options.config, store: options.store, now: options.now });
  await app.register(healthRoutes);
  await app.register(adminRoutes);
  if (options.config.console) await app.register(consoleRoutes);
  await app.register(proxyRoutes);
  // Every route is known once the app is ready: a vendor prefix another route shares stays fastify's.
  app.addHook('onReady', async () => {
    proxy = proxyHandler({ kb: app.keybrake, log: app.log, nextRequestId, routeUrls });
  });
  return app;
}
