import { type AdminClient, ApiError, type CallEntry, type VaultKeyView, queryString } from './api';

/** One Server-Sent Event as it came off the wire. */
export interface FeedMessage {
  readonly id: string | null;
  readonly event: string;
  readonly data: string;
}

/** A `call` event: the `calls` entry plus its key. */
export type CallEvent = CallEntry & { readonly key_id: string };

/** A `key` event: the key's fields plus what changed. */
export type KeyEvent = VaultKeyView & { readonly change: 'issued' | 'revoked' | 'tainted' | 'expired' };

/** Where the feed stands, for the page's live indicator. */
export type FeedState = 'connecting' | 'live' | 'reconnecting' | 'unavailable';

/** What a subscriber hears. */
export interface FeedHandlers {
  onCall?(event: CallEvent): void;
  onKey?(event: KeyEvent): void;
  /** After a reconnect that may have missed events (the server said `resync`, or it has no ids). */
  onResync?(): void;
  onState?(state: FeedState, detail?: string): void;
}

/**
 * Reads a `text/event-stream` body as the HTML spec parses it: lines end in CR, LF or CRLF;
 * `event`, `data` (joined with newlines) and `id` fields; a blank line dispatches; a line that
 * starts with `:` (the server's ping) is a comment.
 */
export async function readEventStream(
  body: ReadableStream<Uint8Array>,
  onMessage: (message: FeedMessage) => void,
): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let id: string | null = null;
  const line = (text: string): void => {
    if (text === '') {
      if (data.length > 0) onMessage({ id, event: event || 'message', data: data.join('\n') });
      event = '';
      data = [];
      return;
    }
    if (text.startsWith(':')) return;
    const colon = text.indexOf(':');
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) id = value;
  };
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      if (end === -1) break;
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (buffer[end] === '\r' && end === buffer.length - 1) break;
      line(buffer.slice(0, end));
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
    }
  }
}

/** Filters of `GET /events`. */
export interface FeedQuery {
  readonly key_id?: string;
  readonly label_prefix?: string;
}

/**
 * Subscribes to `GET /events` with `fetch` and a stream reader (`EventSource` cannot send the
 * bearer header), reconnecting with `Last-Event-ID` until `signal` aborts.
 */
export function subscribe(client: AdminClient, query: FeedQuery, handlers: FeedHandlers, signal: AbortSignal): void {
  let lastEventId: string | null = null;
  let attempt = 0;
  const dispatch = (message: FeedMessage): void => {
    if (message.id !== null) lastEventId = message.id;
    try {
      if (message.event === 'call') handlers.onCall?.(JSON.parse(message.data) as CallEvent);
      else if (message.event === 'key') handlers.onKey?.(JSON.parse(message.data) as KeyEvent);
      else if (message.event === 'resync') handlers.onResync?.();
    } catch {
      // A malformed event is skipped; the next resync or refresh corrects what it would have said.
    }
  };
  const run = async (): Promise<void> => {
    while (!signal.aborted) {
      handlers.onState?.(attempt === 0 ? 'connecting' : 'reconnecting');
      try {
        const headers: Record<string, string> = { accept: 'text/event-stream' };
        if (lastEventId !== null) headers['last-event-id'] = lastEventId;
        const response = await fetch(`/events${queryString({ ...query })}`, client.requestInit({ headers, signal }));
        if (!response.ok || response.body === null) {
          const error = new ApiError(response.status, 'feed_unavailable', `The live feed answered ${response.status}.`);
          await response.body?.cancel();
          throw error;
        }
        if (attempt > 0 && lastEventId === null) handlers.onResync?.();
        handlers.onState?.('live');
        attempt = 0;
        await readEventStream(response.body, dispatch);
      } catch (error) {
        if (signal.aborted) return;
        const refused = error instanceof ApiError && error.status < 500;
        handlers.onState?.(refused ? 'unavailable' : 'reconnecting', (error as Error).message);
      }
      attempt += 1;
      // Back off up to 10 s; a feed the server does not offer (404) is asked again rarely.
      const delay = Math.min(10_000, 500 * 2 ** Math.min(attempt, 5));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
    }
  };
  void run();
}
