import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ArrivedCall } from '../../enforcement/call-facts.js';
import { answer } from '../../enforcement/answer.js';
import { isUntrusted } from '../../enforcement/headers.js';
import { enforce } from '../../enforcement/pipeline.js';
import { type VendorModule, proxiedVendors } from '../../enforcement/vendor-seam.js';
import type { KeybrakeContext } from '../plugins/keybrake.js';

/**
 * The vendor proxy: `/{vendor}/{rest}` for every vendor, wired to the enforcement pipeline
 * (`enforcement/pipeline.ts`), whose outcome `answer` turns into the reply.
 */
export async function proxyRoutes(app: FastifyInstance): Promise<void> {
  const kb = app.keybrake;
  // Vendor bodies are read as raw bytes: they are forwarded exactly as sent, and parsed only to estimate cost.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: kb.config.maxBodyBytes }, (_request, body, done) => {
    done(null, body);
  });

  for (const vendor of proxiedVendors(kb)) {
    app.all(`/${vendor.name}/*`, async (request, reply) =>
      answer(kb, await enforce(kb, arrived(kb, vendor, request)), reply),
    );
  }
}

/** The call as fastify received it. */
function arrived(kb: KeybrakeContext, vendor: VendorModule, request: FastifyRequest): ArrivedCall {
  const afterPrefix = (request.raw.url ?? '/').slice(vendor.name.length + 1) || '/';
  const queryAt = afterPrefix.indexOf('?');
  const idempotencyKey = request.headers['idempotency-key'];
  const rawHeaders = request.raw.rawHeaders;
  return {
    vendor,
    method: request.method,
    rawPath: queryAt >= 0 ? afterPrefix.slice(0, queryAt) : afterPrefix,
    query: queryAt >= 0 ? afterPrefix.slice(queryAt) : '',
    body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
    headers: request.headers,
    rawHeaders,
    idempotencyKey: typeof idempotencyKey === 'string' && idempotencyKey !== '' ? idempotencyKey : null,
    untrusted: isUntrusted(request.headers, rawHeaders),
    at: kb.now(),
  };
}
