import type { FastifyInstance } from 'fastify';
import { StoreUnavailableError } from '../../errors.js';
import { OPENAPI_DOCUMENT } from '../openapi.js';

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

  app.get('/openapi.json', async () => OPENAPI_DOCUMENT);
}
