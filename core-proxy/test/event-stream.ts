import { setTimeout as sleep } from 'node:timers/promises';
import { onTestFinished } from 'vitest';

/** One Server-Sent Event as a client parses it (a comment has `comment` set and nothing else). */
export interface FeedEvent {
  readonly id?: string;
  readonly event?: string;
  readonly data?: any;
  readonly comment?: string;
}

/** A `GET /events` stream read the way the console reads it: `fetch` and a stream reader. */
export interface FeedStream {
  readonly status: number;
  readonly headers: Headers;
  /** Every event and comment so far. */
  readonly events: FeedEvent[];
  /** Every byte received so far, as text: searched for leaks. */
  raw(): string;
  /** The id of the last event that had one (what a client sends back as `Last-Event-ID`). */
  lastEventId(): string | undefined;
  /** Resolves once `predicate` holds for the events so far; throws if the stream ended first. */
  until(predicate: (events: readonly FeedEvent[]) => boolean, what: string): Promise<void>;
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>;
  close(): void;
}

/** Opens the feed of the proxy at `baseUrl` with an issuer key; closed when the test ends. */
export async function openFeed(
  baseUrl: string,
  apiKey: string | undefined,
  query = '',
  headers: Record<string, string> = {},
): Promise<FeedStream> {
  const abort = new AbortController();
  const response = await fetch(`${baseUrl}/events${query === '' ? '' : `?${query}`}`, {
    headers: { ...(apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` }), ...headers },
    signal: abort.signal,
  });
  const events: FeedEvent[] = [];
  let text = '';
  let pending = '';
  let done = false;
  let lastId: string | undefined;
  const decoder = new TextDecoder();
  const ended = (async () => {
    if (!response.body) return;
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { value, done: finished } = await reader.read();
        if (finished) break;
        const chunk = decoder.decode(value, { stream: true });
        text += chunk;
        pending += chunk;
        let end: number;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const block = pending.slice(0, end);
          pending = pending.slice(end + 2);
          const event: Record<string, any> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) event.comment = line.slice(1).trim();
            else {
              const colon = line.indexOf(':');
              const field = line.slice(0, colon);
              const value = line.slice(colon + 1).replace(/^ /, '');
              if (field === 'data') event.data = JSON.parse(value);
              else if (field === 'id' || field === 'event') event[field] = value;
            }
          }
          if (event.id !== undefined) lastId = event.id;
          events.push(event);
        }
      }
    } catch {
      // aborted by close()
    } finally {
      done = true;
    }
  })();
  const close = (): void => abort.abort();
  onTestFinished(close);
  return {
    status: response.status,
    headers: response.headers,
    events,
    raw: () => text,
    lastEventId: () => lastId,
    ended,
    close,
    async until(predicate, what) {
      while (!predicate(events)) {
        if (done) throw new Error(`the stream ended before ${what}; events: ${JSON.stringify(events).slice(-2000)}`);
        await sleep(20);
      }
    },
  };
}

/** The `call` events' data, in order. */
export function callEvents(events: readonly FeedEvent[]): any[] {
  return events.filter((event) => event.event === 'call').map((event) => event.data);
}

/** The `key` events' data, in order. */
export function keyEvents(events: readonly FeedEvent[]): any[] {
  return events.filter((event) => event.event === 'key').map((event) => event.data);
}
