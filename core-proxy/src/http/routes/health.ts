import type { FastifyInstance } from 'fastify';
import { StoreUnavailableError } from '../../errors.js';
import { openApiDocument } from '../openapi.js';

/** `/healthz`, `/readyz`, `/metrics` and `/openapi.json`: unauthenticated, for orchestrators and tools. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const kb = app.keybrake;

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/readyz', async (_request, reply) => {
    try {
      await kb.store.ping();
      return { ok: true };
    } catch {
      const error = new StoreUnavailableError();
      return reply.code(error.statusCode).send(error.toJSON());
    }
  });

  app.get('/metrics', async (_request, reply) => {
    return reply.header('content-type', kb.metrics.registry.contentType).send(await kb.metrics.registry.metrics());
  });

  // Built once: the declared vendors are fixed at start.
  const document = openApiDocument(kb.config.vendors);
  app.get('/openapi.json', async () => document);
}
