import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { type FastifyBaseLogger, type FastifyInstance, errorCodes } from 'fastify';
import type { ArrivedCall } from '../../enforcement/call-facts.js';
import { type ProxyReply, answer } from '../../enforcement/answer.js';
import { isUntrusted } from '../../enforcement/headers.js';
import { enforce } from '../../enforcement/pipeline.js';
import { type VendorModule, proxiedVendors } from '../../enforcement/vendor-seam.js';
import type { KeybrakeContext } from '../plugins/keybrake.js';
import { toKeybrakeError } from '../plugins/errors.js';

/**
 * The vendor proxy: `/{vendor}/{rest}` for every vendor, wired to the enforcement pipeline
 * (`enforcement/pipeline.ts`), whose outcome `answer` turns into the reply.
 *
 * Served twice over, with one behaviour. The fastify route below answers whatever the server's
 * own proxy handler ({@link proxyHandler}, on `node:http` directly, issue 21) leaves to fastify:
 * the rare requests where matching fastify exactly would mean re-implementing it (a
 * percent-encoded path, a method or media type fastify treats specially, a body announced larger
 * than the limit, a server that is closing), and `app.inject`.
 */
export async function proxyRoutes(app: FastifyInstance): Promise<void> {
  const kb = app.keybrake;
  // Vendor bodies are read as raw bytes: they are forwarded exactly as sent, and parsed only to estimate cost.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: kb.config.maxBodyBytes }, (_request, body, done) => {
    done(null, body);
  });

  for (const vendor of proxiedVendors(kb)) {
    app.all(`/${vendor.name}/*`, async (request, reply) => {
      const body = Buffer.isBuffer(request.body) ? request.body : EMPTY;
      await answer(kb, await enforce(kb, arrived(kb, vendor, request.raw, body)), reply);
      return reply;
    });
  }
}

const EMPTY = Buffer.alloc(0);

/** The call as it arrived, from the raw request and its body. */
function arrived(kb: KeybrakeContext, vendor: VendorModule, request: IncomingMessage, body: Buffer): ArrivedCall {
  const afterPrefix = (request.url ?? '/').slice(vendor.name.length + 1) || '/';
  const queryAt = afterPrefix.indexOf('?');
  const headers = request.headers;
  const idempotencyKey = headers['idempotency-key'];
  const rawHeaders = request.rawHeaders;
  return {
    vendor,
    method: request.method as string,
    rawPath: queryAt >= 0 ? afterPrefix.slice(0, queryAt) : afterPrefix,
    query: queryAt >= 0 ? afterPrefix.slice(queryAt) : '',
    body,
    headers,
    rawHeaders,
    idempotencyKey: typeof idempotencyKey === 'string' && idempotencyKey !== '' ? idempotencyKey : null,
    untrusted: isUntrusted(headers, rawHeaders),
    at: kb.now(),
  };
}

/** A `node:http` request handler that says whether it took the request (`false`: fastify's). */
export type RawHandler = (request: IncomingMessage, response: ServerResponse) => boolean;

/** What {@link proxyHandler} needs of the app around it. */
export interface ProxyHandlerOptions {
  readonly kb: KeybrakeContext;
  /** The app's logger: request lines are written as fastify writes them. */
  readonly log: FastifyBaseLogger;
  /** The app's request ids, shared with fastify's routes. */
  readonly nextRequestId: () => string;
  /** The URL of every route fastify serves: a vendor whose prefix another route shares is left to fastify. */
  readonly routeUrls: readonly string[];
}

/** Methods fastify reads no body for (`TRACE` is left to fastify), and methods it reads one for (`QUERY` too). */
const BODYLESS = new Set(['GET', 'HEAD']);
const BODY_WITH = new Set(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** An RFC 9110 token, as fastify's media-type check reads one. */
const TOKEN = /^[\w!#$%&'*+.^`|~-]+$/;

/** Whether fastify reads this `Content-Type` as a media type (`ContentType.isValid` in fastify 5). */
export function isMediaType(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  const semicolon = value.indexOf(';');
  const media = semicolon < 0 ? value : value.slice(0, semicolon);
  const slash = media.indexOf('/');
  return slash >= 0 && TOKEN.test(media.slice(0, slash).trimStart()) && TOKEN.test(media.slice(slash + 1).trimEnd());
}

/**
 * The proxy route on `node:http`, in front of fastify (issue 21: fastify's per-request work, its
 * request and reply objects, hooks, content-type parser and child logger, was a fifth of what a
 * bare route forwarding through undici costs). It takes a request for `/{vendor}/...` and answers
 * it exactly as the fastify route would: the same body limit and body reading, the same status
 * codes and JSON errors, headers, request ids and request log lines, `Connection: close` while
 * draining. Anything it does not answer exactly that way it leaves to fastify.
 */
export function proxyHandler(options: ProxyHandlerOptions): RawHandler {
  const { kb, log } = options;
  const limit = kb.config.maxBodyBytes;
  const vendors = new Map<string, VendorModule>();
  for (const vendor of proxiedVendors(kb)) {
    const prefix = `/${vendor.name}/`;
    // Another route under the prefix may be more specific than the wildcard: fastify decides.
    if (options.routeUrls.some((url) => url.startsWith(prefix) && url !== `${prefix}*`)) continue;
    vendors.set(vendor.name, vendor);
  }
  // fastify's logger when it has none (`logger: false`) has no levels and writes nothing.
  const levels = log as Partial<{ isLevelEnabled(level: string): boolean }>;
  const logsRequests = (): boolean => levels.isLevelEnabled?.('info') === true;

  const run = (vendor: VendorModule, request: IncomingMessage, reply: RawReply, body: Buffer): void => {
    enforce(kb, arrived(kb, vendor, request, body))
      .then((outcome) => answer(kb, outcome, reply))
      .catch((error: unknown) => reply.fail(error as Error));
  };

  return (request, response) => {
    const url = request.url as string;
    const method = request.method as string;
    if (url.charCodeAt(0) !== 47 /* / */ || kb.lifecycle.draining) return false;
    const end = url.indexOf('/', 1);
    if (end < 0) return false;
    const vendor = vendors.get(url.slice(1, end));
    if (vendor === undefined) return false;
    // fastify's router decodes a percent-encoded path (and refuses a malformed one) before matching.
    const percent = url.indexOf('%');
    if (percent >= 0) {
      const query = url.indexOf('?');
      if (query < 0 || percent < query) return false;
    }
    const headers = request.headers;
    let readsBody = false;
    if (!BODYLESS.has(method)) {
      if (!BODY_WITH.has(method)) return false;
      const contentType = headers['content-type'];
      if (contentType === undefined) {
        const length = headers['content-length'];
        readsBody = headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
      } else {
        if (!isMediaType(contentType)) return false;
        readsBody = true;
      }
      // Refused before a byte is read: fastify's answer.
      if (readsBody && Number(headers['content-length']) > limit) return false;
    }

    const reply = new RawReply(kb, log, options.nextRequestId, request, response);
    if (logsRequests()) reply.logRequest();
    if (!readsBody) {
      run(vendor, request, reply, EMPTY);
      return true;
    }
    readBody(request, limit, (error, body) => {
      if (error) {
        // As fastify does: the client may still be sending.
        reply.header('connection', 'close');
        reply.fail(error);
      } else run(vendor, request, reply, body);
    });
    return true;
  };
}

/**
 * Reads a request's body whole, as fastify's buffer parser does: at most `limit` bytes
 * (`FST_ERR_CTP_BODY_TOO_LARGE`), as many as `Content-Length` says, a stream error a 400.
 */
function readBody(request: IncomingMessage, limit: number, done: (error: Error | null, body: Buffer) => void): void {
  const declared = Number(request.headers['content-length']);
  const chunks: Buffer[] = [];
  let received = 0;
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > limit) {
      detach();
      done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), EMPTY);
      return;
    }
    chunks.push(chunk);
  };
  const onEnd = (error?: Error & { statusCode?: number }): void => {
    detach();
    if (error != null) {
      if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400;
      done(error, EMPTY);
      return;
    }
    if (!Number.isNaN(declared) && received !== declared) {
      done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), EMPTY);
      return;
    }
    // A copy: the body outlives the socket's read buffer.
    done(null, Buffer.concat(chunks, received));
  };
  const detach = (): void => {
    request.removeListener('data', onData);
    request.removeListener('end', onEnd);
    request.removeListener('error', onEnd);
  };
  request.on('data', onData);
  request.on('end', onEnd);
  request.on('error', onEnd);
  request.resume();
}

/** What fastify's `req` log serializer reads of a request. */
interface LoggedRequest {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly host: string;
  readonly ip: string | undefined;
  readonly socket: IncomingMessage['socket'];
}

/**
 * A proxied call's reply on `node:http`, sending what fastify's `reply.send` sends for the same
 * calls: lower-case header names (`Set-Cookie` values appended), `application/octet-stream` for
 * bytes without a media type, JSON as `application/json; charset=utf-8`, `Content-Length` from
 * the body, none of either on a 1xx or 204, and `Connection: close` while the app drains.
 */
class RawReply implements ProxyReply {
  private status = 200;
  private readonly outgoing: Record<string, string | string[]> = {};
  private requestId: string | undefined;
  private child: FastifyBaseLogger | undefined;
  private startedAt = 0;

  constructor(
    private readonly kb: KeybrakeContext,
    private readonly logger: FastifyBaseLogger,
    private readonly nextRequestId: () => string,
    private readonly request: IncomingMessage,
    private readonly response: ServerResponse,
  ) {}

  /** The call's logger, bound to its request id as fastify binds a request's: made only when a line is written. */
  get log(): FastifyBaseLogger {
    if (this.child === undefined) {
      this.requestId ??= this.nextRequestId();
      this.child = this.logger.child({ reqId: this.requestId });
    }
    return this.child;
  }

  /** fastify's `incoming request` line now, and its `request completed` line when the response is finished. */
  logRequest(): void {
    const { request } = this;
    const logged: LoggedRequest = {
      method: request.method,
      url: request.url,
      headers: request.headers,
      host: request.headers.host ?? (request.headers[':authority'] as string | undefined) ?? '',
      ip: request.socket?.remoteAddress,
      socket: request.socket,
    };
    this.log.info({ req: logged }, 'incoming request');
    this.startedAt = performance.now();
    this.response.once('finish', () => {
      this.log.info(
        { res: { statusCode: this.response.statusCode }, responseTime: performance.now() - this.startedAt },
        'request completed',
      );
    });
  }

  code(status: number): void {
    if (status < 100 || status > 599) throw new errorCodes.FST_ERR_BAD_STATUS_CODE(String(status));
    this.status = status;
  }

  header(name: string, value: string | string[]): void {
    const key = name.toLowerCase();
    const existing = this.outgoing[key];
    if (key === 'set-cookie' && existing !== undefined) {
      const values = typeof existing === 'string' ? [existing] : existing;
      if (Array.isArray(value)) values.push(...value);
      else values.push(value);
      this.outgoing[key] = values;
    } else if (key === 'set-cookie' && Array.isArray(value)) this.outgoing[key] = value.slice();
    else this.outgoing[key] = value;
  }

  headers(values: Readonly<Record<string, string | string[]>>): void {
    for (const name of Object.keys(values)) this.header(name, values[name] ?? '');
  }

  send(payload: Buffer | object): void {
    const { outgoing } = this;
    let body: Buffer | string;
    if (Buffer.isBuffer(payload)) {
      if (!isMediaType(outgoing['content-type'])) outgoing['content-type'] = 'application/octet-stream';
      body = payload;
    } else {
      // Only Keybrake's own error bodies are objects, and they carry no media type of their own.
      outgoing['content-type'] = 'application/json; charset=utf-8';
      body = JSON.stringify(payload);
    }
    if (this.kb.lifecycle.draining) outgoing.connection = 'close';
    const status = this.status;
    if ((status >= 100 && status < 200) || status === 204) {
      delete outgoing['content-type'];
      delete outgoing['content-length'];
      this.response.writeHead(status, outgoing);
      this.response.end();
      return;
    }
    const length = outgoing['content-length'];
    const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    if (!length || (this.request.method !== 'HEAD' && Number(length) !== size))
      outgoing['content-length'] = String(size);
    this.response.writeHead(status, outgoing);
    this.response.end(body);
  }

  /** An error the pipeline or the body threw, answered as the app's error handler answers it. */
  fail(error: Error): void {
    const mapped = toKeybrakeError(error);
    // As fastify's error handling does: the media type and length are the error body's.
    delete this.outgoing['content-type'];
    delete this.outgoing['content-length'];
    if (mapped.statusCode >= 500) this.log.error({ err: error }, 'request failed');
    if (this.response.headersSent) {
      this.response.destroy(error);
      return;
    }
    this.code(mapped.statusCode);
    this.headers(mapped.headers);
    this.send(mapped.toJSON());
  }
}
