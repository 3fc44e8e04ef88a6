import { useState } from 'preact/hooks';
import { api, errorMessage, type Session } from './api.js';

/**
 * Exchanges an API key for a session: the key goes to the server once, in the body of
 * `POST /v1/console/session`, and is kept nowhere in the browser — the session is an
 * HttpOnly cookie the server sets.
 */
export function SignIn(props: { onSignedIn: (session: Session) => void }) {
  const [key, setKey] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const session = await api<Session>('POST', '/v1/console/session', { apiKey: key.trim() });
      setKey('');
      props.onSignedIn(session);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="sign-in">
      <h1>aiva console</h1>
      <form onSubmit={submit} class="card">
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={key}
          onInput={(e) => setKey((e.currentTarget as HTMLInputElement).value)}
          aria-describedby={error ? 'sign-in-error' : 'api-key-hint'}
          aria-invalid={error ? true : undefined}
        />
        <p id="api-key-hint" class="hint">
          A key of your team (<code>e2b_…</code>); <code>aiva up</code> prints the first one.
        </p>
        {error && (
          <p id="sign-in-error" role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
