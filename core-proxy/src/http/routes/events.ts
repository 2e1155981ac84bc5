import type { FastifyInstance } from 'fastify';
import { InvalidRequestError, NotFoundError } from '../../errors.js';
import { type FeedFilter, LiveFeed, eventId, parseEventId } from '../live-feed.js';

const EVENT_PARAMS = new Set(['key_id', 'label_prefix']);

/** Reconnection delay suggested to clients (the SSE `retry` field), ms. */
const RETRY_MS = 2000;

/**
 * `GET /events` (issue 22): the live feed as Server-Sent Events (`live-feed.ts`). Registered
 * inside the admin API, behind the same issuer key; the console reads it with `fetch` and a
 * stream reader, as `EventSource` cannot send the `Authorization` header.
 */
export async function eventRoutes(app: FastifyInstance): Promise<void> {
  const kb = app.keybrake;
  const feed = new LiveFeed(kb.store, kb.now);
  // Before the server waits for open connections to end: a stream would otherwise hold shutdown.
  app.addHook('preClose', async () => feed.close());

  app.get('/events', async (request, reply) => {
    const query = request.query as Record<string, unknown>;
    for (const name of Object.keys(query)) {
      if (!EVENT_PARAMS.has(name))
        throw new InvalidRequestError(`Unknown query parameter ${JSON.stringify(name.slice(0, 50))}.`);
    }
    const filter: FeedFilter = {
      keyId: queryText(query, 'key_id', 100),
      labelPrefix: queryText(query, 'label_prefix', 200),
    };
    const lastEventId = request.headers['last-event-id'];
    let position = undefined;
    if (lastEventId !== undefined) {
      position = typeof lastEventId === 'string' ? parseEventId(lastEventId) : undefined;
      if (!position) throw new InvalidRequestError('Last-Event-ID is not an event id of this feed.');
    }
    if (filter.keyId !== undefined && !(await kb.store.getKey(filter.keyId, kb.now())))
      throw new NotFoundError('No vault key has this id.');
    position ??= await feed.head();

    reply.hijack();
    const response = reply.raw;
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    // The first bytes at once, with where the stream starts: a client knows it is connected.
    response.write(`retry: ${RETRY_MS}\nid: ${eventId(position)}\n\n`);
    feed.subscribe(response, filter, position);
  });
}

function queryText(query: Record<string, unknown>, name: string, maxLength: number): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength)
    throw new InvalidRequestError(`${name} must be given once, 1 to ${maxLength} characters.`);
  return value;
}
