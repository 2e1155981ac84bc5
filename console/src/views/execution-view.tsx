import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { type AdminClient, ApiError, type CallEntry, type VaultKeyView } from '../api';
import { ConfirmDialog } from '../components/confirm-dialog';
import { SpendBar } from '../components/spend-bar';
import { SpendChart } from '../components/spend-chart';
import { StatusBadge } from '../components/status-badge';
import { clock, timeLeft, usd } from '../format';
import { type FeedState, subscribe } from '../live-feed';
import { spendAgainstCap } from '../spend';

/** Calls fetched per request, and the most the view keeps for its chart and table. */
const CALL_PAGE = 500;
const MAX_CALLS = 50_000;
const TABLE_PAGE = 50;
/** The most descendants the family tree reads. */
const MAX_FAMILY = 200;

interface FamilyNode {
  readonly vaultKey: VaultKeyView;
  readonly children: FamilyNode[];
}

type Action = 'revoke' | 'taint';

/** The execution view: one key, its family, its spend over time, its calls, and revoke/taint. */
export function ExecutionView({
  client,
  keyId,
  onFeedState,
}: {
  client: AdminClient;
  keyId: string;
  onFeedState: (state: FeedState) => void;
}) {
  const [vaultKey, setVaultKey] = useState<VaultKeyView | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [calls, setCalls] = useState<readonly CallEntry[]>([]);
  const [callsComplete, setCallsComplete] = useState(false);
  const [ancestors, setAncestors] = useState<readonly VaultKeyView[]>([]);
  const [family, setFamily] = useState<FamilyNode | null>(null);
  const [page, setPage] = useState(0);
  const [confirming, setConfirming] = useState<Action | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());
  const seen = useRef(new Set<number>());
  const lastSeq = useRef(0);

  const refreshKey = async (): Promise<void> => {
    try {
      setVaultKey(await client.getKey(keyId));
      setError(null);
    } catch (caught) {
      setError(
        caught instanceof ApiError && caught.status === 404 ? `No vault key ${keyId}.` : (caught as Error).message,
      );
    }
  };

  const addCalls = (more: readonly CallEntry[]): void => {
    const fresh = more.filter((call) => !seen.current.has(call.seq));
    if (fresh.length === 0) return;
    for (const call of fresh) {
      seen.current.add(call.seq);
      lastSeq.current = Math.max(lastSeq.current, call.seq);
    }
    setCalls((previous) => [...previous, ...fresh].sort((a, b) => a.seq - b.seq).slice(-MAX_CALLS));
  };

  // Everything so far, page by page (the chart needs the whole series), then the feed keeps it live.
  const loadCalls = async (): Promise<void> => {
    let cursor: string | null = null;
    for (let total = 0; total < MAX_CALLS;) {
      const result = await client.listCalls(keyId, { limit: CALL_PAGE, cursor });
      addCalls(result.calls);
      total += result.calls.length;
      cursor = result.next_cursor ?? null;
      if (cursor === null) break;
    }
    setCallsComplete(true);
  };

  const loadFamily = async (key: VaultKeyView): Promise<void> => {
    const chain: VaultKeyView[] = [];
    let parentId = key.parent_key_id ?? null;
    while (parentId !== null && chain.length < 16) {
      const parent = await client.getKey(parentId).catch(() => null);
      if (parent === null) break;
      chain.unshift(parent);
      parentId = parent.parent_key_id ?? null;
    }
    setAncestors(chain);
    let budget = MAX_FAMILY;
    const grow = async (node: FamilyNode): Promise<void> => {
      if (budget <= 0) return;
      const page = await client.listKeys({ parent_key_id: node.vaultKey.key_id, limit: Math.min(100, budget) });
      budget -= page.keys.length;
      for (const child of page.keys) node.children.push({ vaultKey: child, children: [] });
      for (const child of node.children) await grow(child);
    };
    const root: FamilyNode = { vaultKey: key, children: [] };
    await grow(root).catch(() => undefined);
    setFamily(root);
  };

  useEffect(() => {
    seen.current = new Set();
    lastSeq.current = 0;
    setCalls([]);
    setCallsComplete(false);
    setFamily(null);
    setAncestors([]);
    setPage(0);
    setNotice(null);
    void refreshKey();
    void loadCalls().catch((caught: Error) => setError(caught.message));
    const controller = new AbortController();
    let refreshTimer: ReturnType<typeof setTimeout> | undefined;
    const refreshSoon = (): void => {
      refreshTimer ??= setTimeout(() => {
        refreshTimer = undefined;
        void refreshKey();
      }, 300);
    };
    const catchUp = (): void => {
      void client
        .listCalls(keyId, { limit: CALL_PAGE, after_seq: lastSeq.current })
        .then((result) => addCalls(result.calls))
        .catch(() => undefined);
      refreshSoon();
    };
    subscribe(
      client,
      { key_id: keyId },
      {
        // The feed also carries the key's descendants' calls: they move its spend, not its table.
        onCall: (call) => {
          if (call.key_id === keyId) addCalls([call]);
          refreshSoon();
        },
        onKey: (event) => {
          if (event.key_id === keyId) refreshSoon();
        },
        onResync: catchUp,
        // Each time the feed (re)connects, what came before it is read once more: no call made
        // between the first page and the feed's start, or during a reconnect, is missed.
        onState: (state) => {
          onFeedState(state);
          if (state === 'live') catchUp();
        },
      },
      controller.signal,
    );
    const clockTimer = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      controller.abort();
      clearTimeout(refreshTimer);
      clearInterval(clockTimer);
    };
  }, [client, keyId]);

  // The family is read once the key is known, and again when its status or taint changes.
  useEffect(() => {
    if (vaultKey !== null) void loadFamily(vaultKey);
  }, [vaultKey?.key_id, vaultKey?.status, vaultKey?.tainted]);

  const act = async (action: Action): Promise<void> => {
    setConfirming(null);
    try {
      if (action === 'revoke') await client.revokeKey(keyId);
      else await client.taintKey(keyId);
      setNotice(
        action === 'revoke'
          ? 'Revoked: its next proxied call (and its children’s) answers 401 vault_key_revoked.'
          : 'Tainted: its calls to sensitive endpoints are refused from the next one on.',
      );
      await refreshKey();
    } catch (caught) {
      setNotice(`Could not ${action}: ${(caught as Error).message}`);
    }
  };

  const newestFirst = useMemo(() => [...calls].reverse(), [calls]);
  const pages = Math.max(1, Math.ceil(newestFirst.length / TABLE_PAGE));
  const shown = newestFirst.slice(page * TABLE_PAGE, (page + 1) * TABLE_PAGE);

  if (vaultKey === null) {
    return <main class="execution-view">{error !== null ? <p class="error">{error}</p> : <p>Loading…</p>}</main>;
  }
  const spend = spendAgainstCap(vaultKey);
  return (
    <main class="execution-view" data-key-id={vaultKey.key_id}>
      <p>
        <a href="#/keys">← all keys</a>
      </p>
      <header class="execution-head">
        <div>
          <h1>{vaultKey.agent_run_label ?? vaultKey.key_id}</h1>
          <p class="muted">
            {vaultKey.key_id} · {vaultKey.vendor} · <StatusBadge vaultKey={vaultKey} /> ·{' '}
            {vaultKey.status === 'active' ? `${timeLeft(vaultKey.expires_at, now)} left` : vaultKey.status}
          </p>
        </div>
        <div class="actions">
          <button
            type="button"
            class="danger"
            disabled={vaultKey.status !== 'active'}
            onClick={() => setConfirming('revoke')}
          >
            Revoke
          </button>
          <button type="button" disabled={vaultKey.tainted === true} onClick={() => setConfirming('taint')}>
            Taint
          </button>
        </div>
      </header>
      {notice !== null && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <section class="summary">
        <SpendBar vaultKey={vaultKey} wide />
        <dl>
          <dt>spent</dt>
          <dd data-field="spent">{usd(vaultKey.spent_usd)}</dd>
          <dt>reserved</dt>
          <dd data-field="reserved">{usd(vaultKey.reserved_usd)}</dd>
          <dt>unknown</dt>
          <dd data-field="unknown">{usd(vaultKey.unknown_usd ?? 0)}</dd>
          <dt>remaining</dt>
          <dd>{usd(vaultKey.remaining_usd)}</dd>
          <dt>lifetime cap</dt>
          <dd>{usd(vaultKey.usd_cap)}</dd>
          <dt>daily cap</dt>
          <dd>{usd(vaultKey.daily_usd_cap)}</dd>
          <dt>expires</dt>
          <dd>{clock(vaultKey.expires_at)}</dd>
        </dl>
        {vaultKey.allowed_endpoints && <p class="muted endpoints">allowed: {vaultKey.allowed_endpoints.join(', ')}</p>}
        {/* Issue 25: who the key was issued to (a workload identity, never its token). */}
        <p class="muted identity" data-field="identity">
          issued to:{' '}
          {vaultKey.identity
            ? `${vaultKey.identity.subject} (${vaultKey.identity.issuer}, policy ${vaultKey.identity.policy})`
            : 'an issuer key (operator)'}
        </p>
      </section>
      <section>
        <h2>Family</h2>
        <ul class="family">
          {ancestors.map((ancestor) => (
            <li key={ancestor.key_id} class="ancestor">
              <FamilyLabel vaultKey={ancestor} current={false} />
            </li>
          ))}
          <li>{family ? <FamilyTree node={family} current={keyId} /> : <FamilyLabel vaultKey={vaultKey} current />}</li>
        </ul>
      </section>
      <section>
        <h2>Spend over time</h2>
        <SpendChart calls={calls} cap={spend.kind === 'lifetime' ? spend.cap : null} />
      </section>
      <section>
        <h2>
          Calls{' '}
          <span class="muted" data-field="call-count">
            {calls.length}
          </span>
          {!callsComplete && <span class="muted"> (loading…)</span>}
        </h2>
        <table class="calls">
          <thead>
            <tr>
              <th>seq</th>
              <th>time</th>
              <th>method</th>
              <th>path</th>
              <th>outcome</th>
              <th>reason</th>
              <th>status</th>
              <th class="num">cost</th>
              <th>vendor request id</th>
              <th>idempotency key</th>
              <th>tainted</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((call) => (
              <tr key={call.seq} data-seq={call.seq} class={`outcome-${call.outcome}`}>
                <td>{call.seq}</td>
                <td>{clock(call.at)}</td>
                <td>{call.method}</td>
                <td class="path">{call.path}</td>
                <td>{call.outcome}</td>
                <td>{call.reason ?? ''}</td>
                <td>{call.status ?? ''}</td>
                <td class="num">{usd(call.cost_usd)}</td>
                <td class="mono">{call.vendor_request_id ?? ''}</td>
                <td class="mono">{call.idempotency_key ?? ''}</td>
                <td>{call.tainted ? 'yes' : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <nav class="pager" aria-label="calls pages">
          <button type="button" disabled={page === 0} onClick={() => setPage(0)}>
            Newest
          </button>
          <button type="button" disabled={page === 0} onClick={() => setPage(page - 1)}>
            Newer
          </button>
          <span>
            page {page + 1} of {pages}
          </span>
          <button type="button" disabled={page >= pages - 1} onClick={() => setPage(page + 1)}>
            Older
          </button>
        </nav>
      </section>
      {confirming !== null && (
        <ConfirmDialog
          title={confirming === 'revoke' ? 'Revoke this key?' : 'Taint this key?'}
          confirmLabel={confirming === 'revoke' ? 'Revoke' : 'Taint'}
          onCancel={() => setConfirming(null)}
          onConfirm={() => void act(confirming)}
        >
          {confirming === 'revoke' ? (
            <p>
              <strong>{vaultKey.key_id}</strong> and every child key stop working at their next call, on every replica.
              This cannot be undone.
            </p>
          ) : (
            <p>
              <strong>{vaultKey.key_id}</strong> is tainted for good: its calls (and its children’s) to sensitive,
              money-moving endpoints are refused with 403 tainted_request_refused.
            </p>
          )}
        </ConfirmDialog>
      )}
    </main>
  );
}

function FamilyLabel({ vaultKey, current }: { vaultKey: VaultKeyView; current: boolean }) {
  return (
    <span class={current ? 'family-node current' : 'family-node'} data-key-id={vaultKey.key_id}>
      {current ? (
        <strong>{vaultKey.key_id}</strong>
      ) : (
        <a href={`#/keys/${encodeURIComponent(vaultKey.key_id)}`}>{vaultKey.key_id}</a>
      )}{' '}
      <StatusBadge vaultKey={vaultKey} /> <span class="muted">{usd(vaultKey.spent_usd)} spent</span>
    </span>
  );
}

function FamilyTree({ node, current }: { node: FamilyNode; current: string }) {
  return (
    <>
      <FamilyLabel vaultKey={node.vaultKey} current={node.vaultKey.key_id === current} />
      {node.children.length > 0 && (
        <ul>
          {node.children.map((child) => (
            <li key={child.vaultKey.key_id}>
              <FamilyTree node={child} current={current} />
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
