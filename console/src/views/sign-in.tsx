import { useState } from 'preact/hooks';
import { AdminClient, ApiError } from '../api';

/**
 * Sign-in: the operator pastes an issuer key. It is checked with one admin call and then kept
 * only in this tab's memory (not storage, not a cookie): a reload or a new tab asks again.
 */
export function SignIn({ onSignedIn }: { onSignedIn: (client: AdminClient) => void }) {
  const [issuerKey, setIssuerKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);
  const submit = async (event: Event): Promise<void> => {
    event.preventDefault();
    const key = issuerKey.trim();
    if (key === '') return setError('Paste an issuer key (one of KEYBRAKE_API_KEYS).');
    setChecking(true);
    setError(null);
    const client = new AdminClient(key);
    try {
      await client.listKeys({ limit: 1 });
      setIssuerKey('');
      onSignedIn(client);
    } catch (caught) {
      setError(
        caught instanceof ApiError && caught.status === 401
          ? 'This issuer key was refused (401 unauthorized). Use one of the keys in KEYBRAKE_API_KEYS.'
          : `The proxy could not be asked: ${(caught as Error).message}`,
      );
    } finally {
      setChecking(false);
    }
  };
  return (
    <main class="sign-in">
      <h1>Keybrake console</h1>
      <form onSubmit={(event) => void submit(event)} autocomplete="off">
        <label for="issuer-key">Issuer key</label>
        <input
          id="issuer-key"
          name="issuer-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          value={issuerKey}
          onInput={(event) => setIssuerKey((event.currentTarget as HTMLInputElement).value)}
          placeholder="one of KEYBRAKE_API_KEYS"
        />
        <button type="submit" disabled={checking}>
          {checking ? 'Checking…' : 'Sign in'}
        </button>
        {error !== null && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
      <p class="muted">
        The key stays in this tab's memory only and is sent as an <code>Authorization</code> header, never in a URL.
        Reloading the page signs you out.
      </p>
    </main>
  );
}
