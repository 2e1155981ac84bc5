import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { AdminClient, KeyPage, KeyQuery, KeySort, VaultKeyView } from '../api';
import { SpendBar } from '../components/spend-bar';
import { StatusBadge } from '../components/status-badge';
import { WindowedList } from '../components/windowed-list';
import { timeLeft, usd } from '../format';
import { type FeedState, type KeyEvent, subscribe } from '../live-feed';

const PAGE_SIZE = 200;
/** Requests one load may make while the server's pages come back short. */
const MAX_REQUESTS_PER_LOAD = 20;
const ROW_HEIGHT = 44;
/** Keys whose calls changed are re-read at most this often, and at most this many at a time. */
const REFRESH_MS = 750;
const REFRESH_BATCH = 24;
/** After a key is read on an event, it is read again this long after, then after the next delay. */
const TRAILING_READS_MS = [1500, 5000];

/** The filters the operator picked; `search` is a run-label prefix, or a key id to open. */
interface KeyFilters {
  readonly search: string;
  readonly status: '' | 'active' | 'revoked' | 'expired';
  readonly vendor: string;
  readonly tainted: '' | 'true' | 'false';
  readonly sort: KeySort;
  readonly grouped: boolean;
}

type Row =
  | { readonly type: 'group'; readonly label: string; readonly keys: number; readonly spent: number }
  | { readonly type: 'key'; readonly vaultKey: VaultKeyView };

const NO_LABEL = '(no run label)';

/** Executions grouped by run label: the loaded keys, each group headed by its label and total spend. */
function rowsOf(keys: readonly VaultKeyView[], grouped: boolean): Row[] {
  if (!grouped) return keys.map((vaultKey) => ({ type: 'key', vaultKey }));
  const groups = new Map<string, VaultKeyView[]>();
  for (const key of keys) {
    const label = key.agent_run_label ?? NO_LABEL;
    const group = groups.get(label);
    if (group) group.push(key);
    else groups.set(label, [key]);
  }
  const rows: Row[] = [];
  for (const [label, members] of groups) {
    rows.push({ type: 'group', label, keys: members.length, spent: members.reduce((sum, k) => sum + k.spent_usd, 0) });
    for (const vaultKey of members) rows.push({ type: 'key', vaultKey });
  }
  return rows;
}

/** Whether a key the feed announced belongs in the list under these filters. */
function matches(key: VaultKeyView, filters: KeyFilters): boolean {
  if (filters.status !== '' && key.status !== filters.status) return false;
  if (filters.vendor !== '' && key.vendor !== filters.vendor) return false;
  if (filters.tainted !== '' && String(Boolean(key.tainted)) !== filters.tainted) return false;
  if (filters.search !== '' && !(key.agent_run_label ?? '').startsWith(filters.search)) return false;
  return true;
}

/** A `key` event's key fields, without what changed. */
function keyFields(event: KeyEvent): VaultKeyView {
  const fields: Record<string, unknown> = { ...event };
  delete fields.change;
  return fields as unknown as VaultKeyView;
}

function isKeyId(text: string): boolean {
  return /^key_[A-Za-z0-9_-]{8,}$/.test(text);
}

/** The keys view: every execution's spend against its cap, live, filtered and paged on the server. */
export function KeysView({ client, onFeedState }: { client: AdminClient; onFeedState: (state: FeedState) => void }) {
  const [filters, setFilters] = useState<KeyFilters>({
    search: '',
    status: '',
    vendor: '',
    tainted: '',
    sort: 'newest',
    grouped: true,
  });
  const [searchText, setSearchText] = useState('');
  const [keys, setKeys] = useState<readonly VaultKeyView[]>([]);
  const [nextCursor, setNextCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());
  const generation = useRef(0);
  const dirty = useRef(new Set<string>());
  /** Keys to read once more, and when. */
  const trailing = useRef(new Map<string, number>());
  /** How many trailing reads a key has had since its last event. */
  const trailingRound = useRef(new Map<string, number>());
  const keysRef = useRef<readonly VaultKeyView[]>([]);
  const loadedIds = useRef(new Set<string>());
  /** Audit seqs of the calls already added to the counts, so that a replayed event is not counted twice. */
  const counted = useRef(new Set<number>());

  const query = (cursor: string | null): KeyQuery => ({
    status: filters.status,
    vendor: filters.vendor,
    label_prefix: isKeyId(filters.search) ? '' : filters.search,
    tainted: filters.tainted,
    sort: filters.sort,
    limit: PAGE_SIZE,
    cursor,
  });

  const load = async (cursor: string | null): Promise<void> => {
    const mine = generation.current;
    setLoading(true);
    try {
      // A page may hold fewer keys than asked (even none) and still have a next cursor: the server
      // walks a bounded stretch of its index per request. Follow it until a page's worth arrived.
      const found: VaultKeyView[] = [];
      let next: string | null = cursor;
      for (let request = 0; request < MAX_REQUESTS_PER_LOAD; request += 1) {
        const page = await client.listKeys(query(next));
        if (mine !== generation.current) return;
        found.push(...page.keys);
        next = page.next_cursor;
        if (next === null || found.length >= PAGE_SIZE) break;
      }
      setKeys((previous) => {
        const base = cursor === null ? [] : previous;
        const seen = new Set(base.map((key) => key.key_id));
        return [...base, ...found.filter((key) => !seen.has(key.key_id))];
      });
      setNextCursor(next);
      setError(null);
    } catch (caught) {
      if (mine === generation.current) setError((caught as Error).message);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  };

  useEffect(() => {
    loadedIds.current = new Set(keys.map((key) => key.key_id));
    keysRef.current = keys;
  }, [keys]);

  // A new filter starts over from the first page, and a feed filtered the same way.
  useEffect(() => {
    generation.current += 1;
    counted.current = new Set();
    setKeys([]);
    setNextCursor(null);
    void load(null);
    const controller = new AbortController();
    let connected = false;
    subscribe(
      client,
      { label_prefix: isKeyId(filters.search) ? '' : filters.search },
      {
        onCall: (call) => {
          if (!loadedIds.current.has(call.key_id) || counted.current.has(call.seq)) return;
          // The counts move with each call the feed reports (the key's own view has no counts);
          // spend and reservations are read again from the key.
          counted.current.add(call.seq);
          dirty.current.add(call.key_id);
          trailingRound.current.delete(call.key_id);
          setKeys((previous) =>
            previous.map((key) =>
              key.key_id !== call.key_id
                ? key
                : {
                    ...key,
                    calls: (key.calls ?? 0) + 1,
                    cap_hits: (key.cap_hits ?? 0) + (call.reason === 'cap_exhausted' ? 1 : 0),
                    refusals: (key.refusals ?? 0) + (call.outcome === 'blocked' ? 1 : 0),
                  },
            ),
          );
        },
        onKey: (event) => {
          const fields = keyFields(event);
          setKeys((previous) => {
            const index = previous.findIndex((key) => key.key_id === event.key_id);
            if (index !== -1) {
              const next = [...previous];
              next[index] = { ...previous[index], ...fields } as VaultKeyView;
              return next;
            }
            // A new key shows at the top when the list is newest first; other orders place it on refresh.
            if (event.change === 'issued' && filters.sort === 'newest' && matches(event, filters)) {
              return [{ calls: 0, cap_hits: 0, refusals: 0, ...fields } as VaultKeyView, ...previous];
            }
            return previous;
          });
        },
        onResync: () => {
          for (const id of loadedIds.current) dirty.current.add(id);
        },
        onState: (state) => {
          onFeedState(state);
          // After a reconnect, what the loaded keys did meanwhile is read again.
          if (state === 'live' && connected) for (const id of loadedIds.current) dirty.current.add(id);
          if (state === 'live') connected = true;
        },
      },
      controller.signal,
    );
    return () => controller.abort();
  }, [client, filters]);

  // Keys the feed said were called are read again, a few at a time, from the listing filtered by
  // their run label: its entries carry the counts (calls, cap hits, refusals) besides spend and
  // reservations, and they overwrite what the events added. Each key is read once more a little
  // later (and later still), because the server's counts may trail a call (about a second on
  // Redis) and a key whose calls stopped gets no further event to trigger a read.
  useEffect(() => {
    const timer = setInterval(() => {
      setNow(Date.now());
      const due = Date.now();
      for (const [id, at] of trailing.current) {
        if (at <= due) {
          trailing.current.delete(id);
          dirty.current.add(id);
        }
      }
      const ids = [...dirty.current].slice(0, REFRESH_BATCH);
      for (const id of ids) dirty.current.delete(id);
      if (ids.length === 0) return;
      for (const id of ids) {
        const retries = trailingRound.current.get(id) ?? 0;
        if (retries < TRAILING_READS_MS.length) {
          trailing.current.set(id, due + (TRAILING_READS_MS[retries] as number));
          trailingRound.current.set(id, retries + 1);
        }
      }
      const wanted = new Set(ids);
      const labels = new Map<string | null, string[]>();
      for (const key of keysRef.current) {
        if (!wanted.has(key.key_id)) continue;
        const group = labels.get(key.agent_run_label) ?? [];
        group.push(key.key_id);
        labels.set(key.agent_run_label, group);
      }
      void Promise.all(
        [...labels].map(async ([label, members]) => {
          const found = new Map<string, VaultKeyView>();
          if (label !== null) {
            let cursor: string | null = null;
            for (let request = 0; request < 3 && found.size < members.length; request += 1) {
              const page: KeyPage | null = await client
                .listKeys({ label_prefix: label, limit: 500, cursor })
                .catch(() => null);
              if (page === null) break;
              for (const key of page.keys) if (wanted.has(key.key_id)) found.set(key.key_id, key);
              cursor = page.next_cursor;
              if (cursor === null) break;
            }
          }
          // Not found by label (no label, or too many keys under it): at least spend, from the key itself.
          for (const id of members) {
            if (!found.has(id)) {
              const key = await client.getKey(id).catch(() => null);
              if (key !== null) found.set(id, key);
            }
          }
          return [...found.values()];
        }),
      ).then((groups) => {
        const byId = new Map(groups.flat().map((key) => [key.key_id, key]));
        if (byId.size === 0) return;
        setKeys((previous) =>
          previous.map((key) => {
            const update = byId.get(key.key_id);
            return update ? { ...key, ...update } : key;
          }),
        );
      });
    }, REFRESH_MS);
    return () => clearInterval(timer);
  }, [client]);

  // Typing searches after a pause, on the server (label prefix), not in the loaded page.
  useEffect(() => {
    const timer = setTimeout(() => setFilters((current) => ({ ...current, search: searchText.trim() })), 300);
    return () => clearTimeout(timer);
  }, [searchText]);

  const rows = useMemo(() => rowsOf(keys, filters.grouped), [keys, filters.grouped]);
  const vendors = useMemo(
    () => [...new Set(['stripe', 'twilio', 'resend', ...keys.map((key) => key.vendor)])].sort(),
    [keys],
  );
  const set = <K extends keyof KeyFilters>(name: K, value: KeyFilters[K]): void =>
    setFilters((current) => ({ ...current, [name]: value }));

  return (
    <main class="keys-view">
      <form class="filters" onSubmit={(event) => event.preventDefault()} role="search">
        <input
          type="search"
          aria-label="search by run label prefix or key id"
          placeholder="run label prefix, or a key id"
          value={searchText}
          onInput={(event) => setSearchText((event.currentTarget as HTMLInputElement).value)}
        />
        <select
          aria-label="status"
          value={filters.status}
          onChange={(e) => set('status', (e.currentTarget as HTMLSelectElement).value as KeyFilters['status'])}
        >
          <option value="">any status</option>
          <option value="active">active</option>
          <option value="revoked">revoked</option>
          <option value="expired">expired</option>
        </select>
        <select
          aria-label="vendor"
          value={filters.vendor}
          onChange={(e) => set('vendor', (e.currentTarget as HTMLSelectElement).value)}
        >
          <option value="">any vendor</option>
          {vendors.map((vendor) => (
            <option value={vendor} key={vendor}>
              {vendor}
            </option>
          ))}
        </select>
        <select
          aria-label="tainted"
          value={filters.tainted}
          onChange={(e) => set('tainted', (e.currentTarget as HTMLSelectElement).value as KeyFilters['tainted'])}
        >
          <option value="">tainted or not</option>
          <option value="true">tainted</option>
          <option value="false">not tainted</option>
        </select>
        <select
          aria-label="sort"
          value={filters.sort}
          onChange={(e) => set('sort', (e.currentTarget as HTMLSelectElement).value as KeySort)}
        >
          <option value="newest">newest first</option>
          <option value="most_spent">most spent</option>
          <option value="closest_to_cap">closest to cap</option>
        </select>
        <label class="check">
          <input
            type="checkbox"
            checked={filters.grouped}
            onChange={(e) => set('grouped', (e.currentTarget as HTMLInputElement).checked)}
          />
          group by run label
        </label>
      </form>
      {isKeyId(filters.search) && (
        <p>
          <a href={`#/keys/${encodeURIComponent(filters.search)}`}>Open {filters.search}</a>
        </p>
      )}
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="key-row key-head" role="row">
        <span>key · run label</span>
        <span>vendor</span>
        <span>status</span>
        <span>spend vs cap</span>
        <span class="num">reserved</span>
        <span class="num">unknown</span>
        <span class="num">calls</span>
        <span class="num">cap hits</span>
        <span class="num">refusals</span>
        <span class="num">time left</span>
      </div>
      <WindowedList
        // A new search or filter starts at the top of its own list.
        key={`${filters.search}|${filters.status}|${filters.vendor}|${filters.tainted}|${filters.sort}`}
        items={rows}
        rowHeight={ROW_HEIGHT}
        rowKey={(row) => (row.type === 'group' ? `g:${row.label}` : row.vaultKey.key_id)}
        onNearEnd={() => {
          if (nextCursor !== null && !loading) void load(nextCursor);
        }}
        renderRow={(row) =>
          row.type === 'group' ? (
            <div class="group-row" role="row" data-label={row.label}>
              <strong>{row.label}</strong>
              <span class="muted">
                {row.keys} {row.keys === 1 ? 'key' : 'keys'} loaded · {usd(row.spent)} spent
              </span>
            </div>
          ) : (
            <KeyRow vaultKey={row.vaultKey} now={now} />
          )
        }
      />
      <p class="muted list-foot" aria-live="polite">
        {keys.length} {keys.length === 1 ? 'key' : 'keys'} loaded
        {nextCursor !== null ? ' · scroll for more' : ''}
        {loading ? ' · loading…' : ''}
      </p>
    </main>
  );
}

function KeyRow({ vaultKey, now }: { vaultKey: VaultKeyView; now: number }) {
  return (
    <div class="key-row" role="row" data-key-id={vaultKey.key_id}>
      <span class="key-name">
        <a href={`#/keys/${encodeURIComponent(vaultKey.key_id)}`}>{vaultKey.key_id}</a>
        <span class="muted">{vaultKey.agent_run_label ?? ''}</span>
      </span>
      <span>{vaultKey.vendor}</span>
      <StatusBadge vaultKey={vaultKey} />
      <SpendBar vaultKey={vaultKey} />
      <span class="num" data-field="reserved">
        {usd(vaultKey.reserved_usd)}
      </span>
      <span class="num" data-field="unknown">
        {usd(vaultKey.unknown_usd ?? 0)}
      </span>
      <span class="num" data-field="calls">
        {vaultKey.calls ?? '—'}
      </span>
      <span class="num" data-field="cap-hits">
        {vaultKey.cap_hits ?? '—'}
      </span>
      <span class="num" data-field="refusals">
        {vaultKey.refusals ?? '—'}
      </span>
      <span class="num" data-field="time-left">
        {vaultKey.status === 'active' ? timeLeft(vaultKey.expires_at, now) : vaultKey.status}
      </span>
    </div>
  );
}
