/**
 * The live feed of `GET /events` (issue 22): proxied calls and key changes as Server-Sent Events,
 * filtered per subscriber, across every process and replica of one store.
 *
 * Sources: calls are the audit chain's records (`readAudit` after a seq), so a call made through
 * any worker or replica is seen once it is in the chain (at once on the embedded store; on Redis
 * once sealed, about a second); key changes are the store's change log (`readKeyChanges`), written
 * with each issue, revoke and taint. Each subscriber keeps its own place in both, and its event ids
 * name that place, so `Last-Event-ID` resumes exactly.
 *
 * Cost: the feed reads the store only while someone listens (one timer, started by the first
 * subscriber and stopped with the last), and never on a proxied call's path: the call writes
 * nothing it did not write before.
 *
 * Backpressure: a subscriber's socket past its high-water mark gets nothing more until it drains
 * (so the feed holds at most one read batch per subscriber, whatever the client reads); the events
 * stay in the store meanwhile. A subscriber that has fallen more than {@link MAX_LAG_RECORDS}
 * records behind the chain then gets one `resync` event and goes on from where the store stands,
 * the events in between skipped (the console re-reads its lists); one whose socket does not drain
 * for {@link MAX_BEHIND_MS} is disconnected.
 */
import type { ServerResponse } from 'node:http';
import type { AuditRecordJson } from '../audit/record.js';
import type { KeyChange, Store } from '../store/store.js';
import { keyView } from './routes/key-view.js';

/** How often the store is read while someone listens. */
export const FEED_POLL_MS = 250;
/** A `: ping` comment this often keeps proxies and clients from timing an idle stream out. */
export const FEED_PING_MS = 15_000;
/** A subscriber further behind the audit chain than this skips to the chain's end (`resync`). */
export const MAX_LAG_RECORDS = 1000;
/** A subscriber whose socket stays full this long is disconnected. */
export const MAX_BEHIND_MS = 60_000;
/** Records and changes read per subscriber per poll. */
const READ_BATCH = 500;
/** Ancestries remembered (they never change), at most. */
const CACHED_ANCESTRIES = 50_000;

/** Where a subscriber stands: the last audit seq and change-log position it was sent. */
export interface FeedPosition {
  readonly seq: number;
  readonly changes: string;
}

/** What a subscriber asked for; both optional. */
export interface FeedFilter {
  /** The key and its descendants. */
  readonly keyId?: string;
  readonly labelPrefix?: string;
}

/** The id of an event: the place in both sources after it. */
export function eventId(position: FeedPosition): string {
  return `${position.seq}_${position.changes}`;
}

/** Reads a `Last-Event-ID` back; undefined when it is not one of ours. */
export function parseEventId(id: string): FeedPosition | undefined {
  const match = /^(\d{1,16})_(\d{1,20}(?:-\d{1,20})?)$/.exec(id);
  if (!match || !Number.isSafeInteger(Number(match[1]))) return undefined;
  return { seq: Number(match[1]), changes: match[2] as string };
}

interface Subscriber {
  readonly response: ServerResponse;
  readonly filter: FeedFilter;
  position: FeedPosition;
  lastPing: number;
  /** A read for it is in flight. */
  reading: boolean;
}

/** The feed of one app: its subscribers and the timer that serves them. */
export class LiveFeed {
  private readonly subscribers = new Set<Subscriber>();
  private timer: NodeJS.Timeout | undefined;
  private readonly ancestries = new Map<string, readonly string[] | null>();
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly now: () => number,
  ) {}

  /** Where the store stands now: a new subscriber starts here. */
  async head(): Promise<FeedPosition> {
    const [audit, changes] = await Promise.all([this.store.auditHead(), this.store.readKeyChanges(null, 0)]);
    return { seq: audit.records, changes: changes.position };
  }

  /** Streams to `response` (headers already sent) from `position` until it closes or the feed does. */
  subscribe(response: ServerResponse, filter: FeedFilter, position: FeedPosition): void {
    if (this.closed) {
      response.end();
      return;
    }
    const subscriber: Subscriber = {
      response,
      filter,
      position,
      lastPing: Date.now(),
      reading: false,
    };
    this.subscribers.add(subscriber);
    response.on('close', () => {
      this.subscribers.delete(subscriber);
      if (this.subscribers.size === 0) this.stopTimer();
    });
    this.timer ??= setInterval(() => this.poll(), FEED_POLL_MS);
    void this.serve(subscriber);
  }

  /** Ends every stream (shutdown, drain): each client sees its stream end and may reconnect elsewhere. */
  close(): void {
    this.closed = true;
    this.stopTimer();
    for (const subscriber of this.subscribers) subscriber.response.end();
    this.subscribers.clear();
  }

  /** How many streams are open (for tests and metrics). */
  get size(): number {
    return this.subscribers.size;
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private poll(): void {
    for (const subscriber of this.subscribers) void this.serve(subscriber);
  }

  private async serve(subscriber: Subscriber): Promise<void> {
    if (subscriber.reading || subscriber.response.writableEnded) return;
    subscriber.reading = true;
    try {
      let lagging = false;
      for (;;) {
        if (lagging && (await this.store.readAudit(subscriber.position.seq + MAX_LAG_RECORDS, 1)).length > 0) {
          if (!(await this.resync(subscriber))) return;
        }
        const [calls, changes] = await Promise.all([
          this.store.readAudit(subscriber.position.seq, READ_BATCH),
          this.store.readKeyChanges(subscriber.position.changes, READ_BATCH),
        ]);
        lagging = calls.length === READ_BATCH;
        // Key changes first: a revocation and then the calls it refused read in that order.
        for (const change of changes.changes) {
          const sent = await this.sendChange(subscriber, change);
          if (sent === 'closed') return;
          if (sent === 'full') {
            if (!(await this.drained(subscriber))) return;
            lagging = true;
          }
        }
        for (const entry of calls) {
          const sent = await this.sendCall(subscriber, entry.seq, entry.record);
          if (sent === 'closed') return;
          if (sent === 'full') {
            if (!(await this.drained(subscriber))) return;
            lagging = true;
          }
        }
        if (!lagging && changes.changes.length < READ_BATCH) break;
      }
      if (Date.now() - subscriber.lastPing >= FEED_PING_MS) {
        subscriber.lastPing = Date.now();
        if (this.write(subscriber, ': ping\n\n') === 'full') await this.drained(subscriber);
      }
    } catch {
      // The store is unreachable: the stream stays open and the next poll tries again.
    } finally {
      subscriber.reading = false;
    }
  }

  private async sendCall(subscriber: Subscriber, seq: number, text: string): Promise<WriteOutcome> {
    subscriber.position = { ...subscriber.position, seq };
    let record: AuditRecordJson;
    try {
      record = JSON.parse(text) as AuditRecordJson;
    } catch {
      return 'sent'; // An unreadable (tampered) record: verification names it.
    }
    const { keyId, labelPrefix } = subscriber.filter;
    if (labelPrefix !== undefined && !(record.agent_run_label ?? '').startsWith(labelPrefix)) return 'sent';
    if (keyId !== undefined && (record.key_id === null || !(await this.inFamily(record.key_id, keyId)))) return 'sent';
    return this.write(
      subscriber,
      `id: ${eventId(subscriber.position)}\nevent: call\ndata: ${JSON.stringify(record)}\n\n`,
    );
  }

  private async sendChange(subscriber: Subscriber, change: KeyChange): Promise<WriteOutcome> {
    subscriber.position = { ...subscriber.position, changes: change.position };
    const { keyId, labelPrefix } = subscriber.filter;
    if (keyId !== undefined && !(await this.inFamily(change.keyId, keyId))) return 'sent';
    const now = this.now();
    const key = await this.store.getKey(change.keyId, now);
    if (!key) return 'sent';
    if (labelPrefix !== undefined && !(key.agentRunLabel ?? '').startsWith(labelPrefix)) return 'sent';
    const data = { key_id: change.keyId, change: change.change, ...keyView(key, now) };
    return this.write(subscriber, `id: ${eventId(subscriber.position)}\nevent: key\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** Whether `keyId` is `ancestorId` or one of its descendants. */
  private async inFamily(keyId: string, ancestorId: string): Promise<boolean> {
    if (keyId === ancestorId) return true;
    let chain = this.ancestries.get(keyId);
    if (chain === undefined) {
      const ids: string[] = [];
      let next: string | null = keyId;
      const now = this.now();
      while (next !== null && ids.length < 64) {
        const key = await this.store.getKey(next, now);
        if (!key) break;
        ids.push(next);
        next = key.parentKeyId;
      }
      chain = ids;
      if (this.ancestries.size >= CACHED_ANCESTRIES) this.ancestries.clear();
      this.ancestries.set(keyId, chain);
    }
    return chain !== null && chain.includes(ancestorId);
  }

  /**
   * Writes one event: `full` when the socket now holds more than its high-water mark (send nothing
   * more until it drains), `closed` when the client is gone.
   */
  private write(subscriber: Subscriber, text: string): WriteOutcome {
    const { response } = subscriber;
    if (response.writableEnded || response.destroyed) return 'closed';
    return response.write(text) ? 'sent' : 'full';
  }

  /**
   * Waits for a full socket to drain: true once it has, false when the client is gone or has not
   * read for {@link MAX_BEHIND_MS} (then it is disconnected).
   */
  private drained(subscriber: Subscriber): Promise<boolean> {
    const { response } = subscriber;
    return new Promise((resolve) => {
      const done = (drained: boolean): void => {
        clearTimeout(timer);
        response.off('drain', onDrain);
        response.off('close', onClose);
        resolve(drained);
      };
      const onDrain = (): void => done(true);
      const onClose = (): void => done(false);
      const timer = setTimeout(() => {
        response.destroy();
        done(false);
      }, MAX_BEHIND_MS);
      timer.unref();
      response.on('drain', onDrain);
      response.on('close', onClose);
    });
  }

  /** A subscriber too far behind: one `resync`, then on from where the store stands. False: it is gone. */
  private async resync(subscriber: Subscriber): Promise<boolean> {
    subscriber.position = await this.head();
    const sent = this.write(
      subscriber,
      `id: ${eventId(subscriber.position)}\nevent: resync\ndata: ${JSON.stringify({ reason: 'slow_consumer' })}\n\n`,
    );
    return sent === 'sent' || (sent === 'full' && (await this.drained(subscriber)));
  }
}

type WriteOutcome = 'sent' | 'full' | 'closed';
