import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { AdminClient } from './api';
import type { FeedState } from './live-feed';
import { AuditView } from './views/audit-view';
import { ExecutionView } from './views/execution-view';
import { KeysView } from './views/keys-view';
import { SignIn } from './views/sign-in';
import './styles.css';

/** Which view the URL's fragment names: `#/keys`, `#/keys/<key id>`, `#/audit`. The fragment never reaches the server. */
type Route =
  { readonly view: 'keys' } | { readonly view: 'execution'; readonly keyId: string } | { readonly view: 'audit' };

function parseRoute(hash: string): Route {
  const execution = /^#\/keys\/([^/]+)$/.exec(hash);
  if (execution) return { view: 'execution', keyId: decodeURIComponent(execution[1] as string) };
  if (hash === '#/audit') return { view: 'audit' };
  return { view: 'keys' };
}

const FEED_LABELS: Readonly<Record<FeedState, string>> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  unavailable: 'live feed unavailable',
};

function App() {
  const [client, setClient] = useState<AdminClient | null>(null);
  const [route, setRoute] = useState<Route>(parseRoute(location.hash));
  const [feed, setFeed] = useState<FeedState>('connecting');
  useEffect(() => {
    const onHash = (): void => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  if (client === null) return <SignIn onSignedIn={setClient} />;
  return (
    <>
      <nav class="top">
        <strong class="brand">Keybrake</strong>
        <a href="#/keys" aria-current={route.view !== 'audit' ? 'page' : undefined}>
          Keys
        </a>
        <a href="#/audit" aria-current={route.view === 'audit' ? 'page' : undefined}>
          Audit
        </a>
        {route.view === 'audit' ? (
          <span class="feed" />
        ) : (
          <span class={`feed feed-${feed}`} data-feed={feed} role="status">
            {FEED_LABELS[feed]}
          </span>
        )}
        <button type="button" class="link" onClick={() => setClient(null)}>
          Sign out
        </button>
      </nav>
      {route.view === 'keys' && <KeysView client={client} onFeedState={setFeed} />}
      {route.view === 'execution' && <ExecutionView client={client} keyId={route.keyId} onFeedState={setFeed} />}
      {route.view === 'audit' && <AuditView client={client} />}
    </>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
