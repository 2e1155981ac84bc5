import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type ErrorCode, KeybrakeError, MethodNotAllowedError, NotFoundError } from '../../errors.js';

const FASTIFY_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
};

/** The framework's other 4xx statuses that have a code of their own; any other 4xx is 400 `invalid_request`. */
const CLIENT_STATUS_CODES: Readonly<Record<number, ErrorCode>> = {
  404: 'not_found',
  405: 'method_not_allowed',
  408: 'request_timeout',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
};

/**
 * Maps any thrown error to the contract's `{"error": {"code", "message"}}` body, with the status
 * the error table gives its code (one status per code: a framework 4xx without a code of its own
 * is 400 `invalid_request`, never `invalid_request` with another status).
 */
export function toKeybrakeError(error: FastifyError | Error): KeybrakeError {
  if (error instanceof KeybrakeError) return error;
  const fastifyError = error as FastifyError;
  const mapped = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (mapped) return new KeybrakeError(mapped, fastifyError.message);
  if (error instanceof SyntaxError || fastifyError.validation) {
    return new KeybrakeError('invalid_request', 'The request body is not valid JSON for this endpoint.');
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return new KeybrakeError(CLIENT_STATUS_CODES[status] ?? 'invalid_request', fastifyError.message);
  }
  if (status === 503) return new KeybrakeError('shutting_down');
  return new KeybrakeError('internal_error');
}

/** A route's path as a pattern: `:param` matches one segment, `*` the rest. */
function routePattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((segment) =>
      segment.startsWith(':') ? '[^/]+' : segment === '*' ? '.*' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}$`);
}

/** Error, not-found and client-error handling in the contract's shape. */
export const errorsPlugin = fp(
  async (app: FastifyInstance) => {
    // Every route registered after this plugin, to tell "no such path" (404) from "no such
    // method on this path" (405 with Allow).
    const routes: { pattern: RegExp; methods: string[] }[] = [];
    app.addHook('onRoute', (route) => {
      routes.push({ pattern: routePattern(route.url), methods: [route.method].flat().map(String) });
    });
    const notFound = (request: FastifyRequest, reply: FastifyReply): void => {
      const path = request.url.split('?')[0] ?? '';
      const allowed = [
        ...new Set(routes.filter((route) => route.pattern.test(path)).flatMap((route) => route.methods)),
      ];
      if (allowed.length > 0) {
        const error = new MethodNotAllowedError(path, request.method, allowed.sort());
        void reply.code(error.statusCode).headers(error.headers).send(error.toJSON());
        return;
      }
      const error = new NotFoundError(`No route for ${request.method} ${path}.`);
      void reply.code(error.statusCode).send(error.toJSON());
    };
    app.setErrorHandler((error, request, reply) => {
      // An unrouted request whose body could not be parsed (e.g. an unknown method with a body
      // and no Content-Type) is still an unrouted request.
      if (request.is404) return notFound(request, reply);
      const mapped = toKeybrakeError(error as Error);
      if (mapped.statusCode >= 500) request.log.error({ err: error }, 'request failed');
      void reply.code(mapped.statusCode).headers(mapped.headers).send(mapped.toJSON());
    });
    app.setNotFoundHandler(notFound);
  },
  { name: 'keybrake-errors' },
);
