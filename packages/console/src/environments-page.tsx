import { useEffect, useRef, useState } from 'preact/hooks';
import { mayChange } from './access.js';
import { api, errorMessage, type Session } from './api.js';
import { ConfirmButton } from './confirm-button.js';
import { when } from './format.js';
import { HOME, onLinkClick } from './router.js';

export const ENVIRONMENTS = '/ui/environments';

/** An environment as aiva's `GET /v1/environments` shows it. */
export interface Environment {
  name: string;
  state: 'running' | 'stopped' | 'starting';
  desiredState: 'running' | 'stopped';
  sandboxID: string | null;
  volumeID: string;
  /** `aiva config <name> ls`: template, cpus, memory, disk, ports, cmd, restart, env.*. */
  settings: Record<string, string>;
  createdAt: string;
}

/** While one is starting, the list is read again this often. */
const POLL_MS = 3000;

export const environmentPath = (name: string) => `${ENVIRONMENTS}/${encodeURIComponent(name)}`;
export const environmentApi = (name: string) => `/v1/environments/${encodeURIComponent(name)}`;

/** Its state, and the state asked for when that differs (e.g. "stopped (wants running)"). */
export function EnvironmentState(props: { env: Environment }) {
  const e = props.env;
  return (
    <>
      <span class={`state state-${e.state}`}>{e.state}</span>
      {e.desiredState !== e.state && <span class="muted"> (wants {e.desiredState})</span>}
    </>
  );
}

/** Its sandbox, a link to the sandbox's page; or a dash when it has none. */
export function SandboxLink(props: { env: Environment }) {
  const id = props.env.sandboxID;
  if (!id) return <span class="muted">—</span>;
  return (
    <a href={`${HOME}/${id}`} onClick={onLinkClick} aria-label={`Sandbox ${id} of ${props.env.name}`}>
      <code>{id}</code>
    </a>
  );
}

/** The settings other than the template and ports (shown on their own), `key=value`, set ones only. */
export function SettingsList(props: { settings: Record<string, string> }) {
  const rows = Object.entries(props.settings).filter(
    ([k, v]) => v !== '' && k !== 'template' && k !== 'ports',
  );
  if (rows.length === 0) return <span class="muted">—</span>;
  return (
    <ul class="metadata">
      {rows.map(([k, v]) => (
        <li key={k}>
          <code class="wrap">
            {k}={v}
          </code>
        </li>
      ))}
    </ul>
  );
}

/**
 * Start, Stop and Remove of one environment, through aiva's routes. Remove asks first;
 * one that runs is removed with `force` (its confirmation says so). `onDone` gets the
 * environment as it now is (null: removed); `onError` the server's refusal (e.g. a 409).
 */
export function EnvironmentActions(props: {
  env: Environment;
  onBusy: (what: string | undefined) => void;
  onDone: (env: Environment | null) => void;
  onError: (message: string) => void;
  busy: boolean;
}) {
  const e = props.env;
  const path = environmentApi(e.name);
  const box = useRef<HTMLDivElement>(null);
  const run = async (what: string, call: () => Promise<Environment | null>) => {
    props.onBusy(what);
    try {
      props.onDone(await call());
    } catch (err) {
      props.onError(errorMessage(err));
    } finally {
      props.onBusy(undefined);
      // The pressed button was disabled while it ran (the focus left it): back to this
      // environment's first action once they are enabled again, unless focus went elsewhere.
      setTimeout(() => {
        const at = document.activeElement;
        if (!at || at === document.body) box.current?.querySelector('button')?.focus();
      }, 0);
    }
  };
  const running = e.state !== 'stopped';
  return (
    <div class="actions" ref={box}>
      {running ? (
        <button
          type="button"
          disabled={props.busy}
          aria-label={`Stop ${e.name}`}
          onClick={() => run(`Stopping ${e.name}…`, () => api<Environment>('POST', `${path}/stop`, {}))}
        >
          Stop
        </button>
      ) : (
        <button
          type="button"
          disabled={props.busy}
          aria-label={`Start ${e.name}`}
          onClick={() => run(`Starting ${e.name}…`, () => api<Environment>('POST', `${path}/start`, {}))}
        >
          Start
        </button>
      )}
      <ConfirmButton
        label="Remove"
        name={`Remove ${e.name}`}
        confirmLabel={running ? `Confirm force remove ${e.name} (it runs)` : `Confirm remove ${e.name}`}
        disabled={props.busy}
        onConfirm={() =>
          run(`Removing ${e.name}…`, async () => {
            await api('DELETE', `${path}${running ? '?force=true' : ''}`);
            return null;
          })
        }
      />
    </div>
  );
}

/**
 * The team's named environments (`aiva init <name>` makes one; the CLI creates, the
 * console shows and runs them): state, template, sandbox, volume, ports and settings,
 * with Start, Stop and Remove. Read again every 3 s while one is starting.
 */
export function EnvironmentsPage(props: { session: Session }) {
  const [items, setItems] = useState<Environment[]>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState<string>();
  const [note, setNote] = useState<string>();
  const writable = mayChange(props.session, 'sandboxes');

  const load = () =>
    api<Environment[]>('GET', '/v1/environments').then(setItems, (e) => setError(errorMessage(e)));
  useEffect(() => {
    void load();
  }, []);
  const starting = items?.some((e) => e.state === 'starting') ?? false;
  useEffect(() => {
    if (!starting || busy) return;
    const timer = setTimeout(load, POLL_MS);
    return () => clearTimeout(timer);
  }, [items, busy]);

  const done = (name: string) => (env: Environment | null) => {
    setError(undefined);
    setNote(env ? `${name} is ${env.state}.` : `Removed ${name}.`);
    setItems((old) =>
      env ? old?.map((e) => (e.name === name ? env : e)) : old?.filter((e) => e.name !== name),
    );
  };
  const failed = (message: string) => {
    setError(message);
    setNote(undefined);
    // What the server refused may be because this list was old: read it again.
    void load();
  };

  return (
    <section aria-labelledby="environments-title">
      <h1 id="environments-title">Environments</h1>
      <p class="hint">
        Named sandboxes with no timeout and a volume at <code>/data</code>, kept across restarts. Made with{' '}
        <code>aiva init &lt;name&gt;</code>; <code>aiva deploy</code> runs a service in one.
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p aria-live="polite" class="muted">
        {busy ?? note ?? ''}
      </p>
      {!items && !error && <p>Loading…</p>}
      {items && items.length === 0 && (
        <p class="empty">
          No environments yet. Make one with <code>aiva init &lt;name&gt;</code>, then{' '}
          <code>aiva start &lt;name&gt;</code>.
        </p>
      )}
      {items && items.length > 0 && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Environments of this team</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">State</th>
                <th scope="col">Template</th>
                <th scope="col">Sandbox</th>
                <th scope="col">Volume</th>
                <th scope="col">Ports</th>
                <th scope="col">Settings</th>
                <th scope="col">Created</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.name} data-environment={e.name}>
                  <td>
                    <a href={environmentPath(e.name)} onClick={onLinkClick}>
                      {e.name}
                    </a>
                  </td>
                  <td>
                    <EnvironmentState env={e} />
                  </td>
                  <td>{e.settings.template || <span class="muted">—</span>}</td>
                  <td>
                    <SandboxLink env={e} />
                  </td>
                  <td>
                    <code>{e.volumeID}</code>
                  </td>
                  <td>
                    {e.settings.ports ? (
                      <code class="wrap">{e.settings.ports}</code>
                    ) : (
                      <span class="muted">—</span>
                    )}
                  </td>
                  <td>
                    <SettingsList settings={e.settings} />
                  </td>
                  <td>
                    <time dateTime={e.createdAt}>{when(e.createdAt)}</time>
                  </td>
                  {writable && (
                    <td>
                      <EnvironmentActions
                        env={e}
                        busy={busy !== undefined}
                        onBusy={setBusy}
                        onDone={done(e.name)}
                        onError={failed}
                      />
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
