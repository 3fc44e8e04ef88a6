import { useEffect, useState } from 'preact/hooks';
import { mayChange } from './access.js';
import { api, errorMessage, type Session } from './api.js';
import { when } from './format.js';

interface ApiKeyInfo {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  scopes: string[];
}

const SCOPES = [
  ['read-only', 'read-only: every GET'],
  ['sandboxes', 'sandboxes and snapshots'],
  ['templates', 'templates'],
  ['admin', 'admin: keys, usage, audit, webhooks'],
] as const;
const EXPIRIES = [
  ['', 'never'],
  [String(24 * 3600), 'in a day'],
  [String(7 * 24 * 3600), 'in a week'],
  [String(30 * 24 * 3600), 'in 30 days'],
  [String(365 * 24 * 3600), 'in a year'],
] as const;

/**
 * The team's API keys (aiva's `/v1/keys`): the list, a new key (shown once, with a copy
 * button; the server keeps only its hash), and revoking one after a confirmation. The key
 * the console signed in with is marked: revoking it ends this session too.
 */
export function KeysPage(props: { session: Session }) {
  const [keys, setKeys] = useState<ApiKeyInfo[]>();
  const [error, setError] = useState<string>();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>([]);
  const [expiry, setExpiry] = useState('');
  const [made, setMade] = useState<{ key: string; name: string }>();
  const [copied, setCopied] = useState(false);
  const [confirm, setConfirm] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [note, setNote] = useState<string>();
  const writable = mayChange(props.session, 'admin');

  const load = () => api<ApiKeyInfo[]>('GET', '/v1/keys').then(setKeys, (e) => setError(errorMessage(e)));
  useEffect(() => {
    void load();
  }, []);

  const create = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setBusy(true);
    try {
      const res = await api<{ key: string; info: ApiKeyInfo }>('POST', '/v1/keys', {
        name: name.trim(),
        ...(scopes.length ? { scopes } : {}),
        ...(expiry ? { expiresInSeconds: Number(expiry) } : {}),
      });
      setMade({ key: res.key, name: res.info.name });
      setCopied(false);
      setName('');
      setScopes([]);
      setExpiry('');
      await load();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (k: ApiKeyInfo) => {
    setBusy(true);
    setError(undefined);
    try {
      await api('DELETE', `/v1/keys/${k.id}`);
      setNote(`Revoked key ${k.name} (${k.prefix}).`);
      await load();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
      setConfirm(undefined);
    }
  };
  const copy = async () => {
    if (!made) return;
    try {
      await navigator.clipboard.writeText(made.key);
      setCopied(true);
    } catch {
      // No clipboard (not a secure context): the key is selected for a manual copy.
      const field = document.getElementById('new-key') as HTMLInputElement | null;
      field?.select();
    }
  };

  return (
    <section aria-labelledby="keys-title">
      <h1 id="keys-title">API keys</h1>
      {made && (
        <section class="card notice" aria-labelledby="new-key-title">
          <h2 id="new-key-title">Key {made.name} is made</h2>
          <p>Copy it now: it is shown this once and never again.</p>
          <div class="actions">
            <label for="new-key" class="visually-hidden">
              The new API key
            </label>
            <input
              id="new-key"
              class="code key-field"
              readOnly
              value={made.key}
              onFocus={(e) => (e.currentTarget as HTMLInputElement).select()}
            />
            <button type="button" onClick={copy}>
              {copied ? 'Copied' : 'Copy'}
            </button>
            <button type="button" onClick={() => setMade(undefined)}>
              Done
            </button>
          </div>
          <p aria-live="polite" class="muted">
            {copied ? 'The key is on the clipboard.' : ''}
          </p>
        </section>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p aria-live="polite" class="muted">
        {note ?? ''}
      </p>
      {!keys && !error && <p>Loading…</p>}
      {keys && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">API keys of this team</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr key={k.id} data-key={k.name}>
                  <td>
                    {k.name}
                    {k.id === props.session.keyId && <span class="muted"> (this session’s)</span>}
                  </td>
                  <td>
                    <code>{k.prefix}</code>
                  </td>
                  <td>{k.scopes.length ? k.scopes.join(', ') : 'full access'}</td>
                  <td>{when(k.createdAt)}</td>
                  <td>{k.lastUsedAt ? when(k.lastUsedAt) : 'never'}</td>
                  <td>{k.expiresAt ? when(k.expiresAt) : 'never'}</td>
                  {writable && (
                    <td>
                      {confirm === k.id ? (
                        <div class="actions">
                          <button
                            type="button"
                            class="danger"
                            disabled={busy}
                            onClick={() => revoke(k)}
                            aria-label={`Confirm revoke ${k.name}`}
                          >
                            Confirm revoke
                          </button>
                          <button type="button" onClick={() => setConfirm(undefined)}>
                            Cancel
                          </button>
                        </div>
                      ) : (
                        <button
                          type="button"
                          disabled={busy}
                          onClick={() => setConfirm(k.id)}
                          aria-label={`Revoke ${k.name}`}
                        >
                          Revoke
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {writable && (
        <>
          <h2 id="new-key-form-title">New key</h2>
          <form class="card form" aria-labelledby="new-key-form-title" onSubmit={create}>
            <label for="key-name">Name</label>
            <input
              id="key-name"
              required
              maxLength={100}
              value={name}
              onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
            />
            <fieldset class="checks">
              <legend>Scopes (none: full access)</legend>
              {SCOPES.map(([s, label]) => (
                <label key={s}>
                  <input
                    type="checkbox"
                    checked={scopes.includes(s)}
                    onChange={(e) => {
                      const on = (e.currentTarget as HTMLInputElement).checked;
                      setScopes((old) => (on ? [...old, s] : old.filter((x) => x !== s)));
                    }}
                  />{' '}
                  {label}
                </label>
              ))}
            </fieldset>
            <label for="key-expiry">Expires</label>
            <select
              id="key-expiry"
              value={expiry}
              onChange={(e) => setExpiry((e.currentTarget as HTMLSelectElement).value)}
            >
              {EXPIRIES.map(([v, label]) => (
                <option key={v} value={v}>
                  {label}
                </option>
              ))}
            </select>
            <button type="submit" class="primary" disabled={busy}>
              Create key
            </button>
          </form>
        </>
      )}
    </section>
  );
}
