import { useEffect, useRef, useState } from 'preact/hooks';
import { mayChange } from './access.js';
import { ApiError, api, errorMessage, type Session } from './api.js';
import {
  ENVIRONMENTS,
  type Environment,
  EnvironmentActions,
  EnvironmentState,
  environmentApi,
  SandboxLink,
  SettingsList,
} from './environments-page.js';
import { when } from './format.js';
import { onLinkClick } from './router.js';

/** The environment and its service log are read again this often while the page is open. */
const POLL_MS = 3000;
/** How many of the service log's last lines the page shows. */
const TAIL = 200;

type Log = { text: string; offset: number };

/** A log in a scrollable, keyboard-reachable box named `label`. */
function LogBox(props: { label: string; text: string }) {
  const box = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const el = box.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [props.text]);
  return (
    <pre
      ref={box}
      class="log-tail"
      // biome-ignore lint/a11y/noNoninteractiveTabindex: the log scrolls, and a keyboard must reach it to scroll it
      tabIndex={0}
      role="log"
      aria-label={props.label}
    >
      {props.text}
    </pre>
  );
}

/**
 * One environment (`/ui/environments/<name>`): its fields and actions, its service's log
 * (the last 200 lines, read every 3 s while it runs) and, when asked, its sandbox's
 * console log. Removed (here or elsewhere), the page says so and stops asking.
 */
export function EnvironmentDetail(props: { name: string; session: Session }) {
  // undefined: not read yet; null: there is none (404, or removed).
  const [env, setEnv] = useState<Environment | null>();
  const [log, setLog] = useState<Log>();
  const [consoleLog, setConsoleLog] = useState<Log>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState<string>();
  const [note, setNote] = useState<string>();
  const path = environmentApi(props.name);
  const writable = mayChange(props.session, 'sandboxes');

  useEffect(() => {
    // Not while an action runs: a stop half done would refuse the log (409).
    if (busy || env === null) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      try {
        const now = await api<Environment>('GET', path);
        if (stopped) return;
        setEnv(now);
        if (now.state === 'running') {
          const l = await api<Log>('GET', `${path}/logs?tail=${TAIL}`);
          if (!stopped) setLog(l);
        }
        if (!stopped) setError(undefined);
      } catch (e) {
        if (stopped) return;
        if (e instanceof ApiError && e.status === 404) return setEnv(null);
        setError(errorMessage(e));
      }
      if (!stopped) timer = setTimeout(read, POLL_MS);
    };
    void read();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [path, busy, env === null]);

  const readConsole = async () => {
    try {
      setConsoleLog(await api<Log>('GET', `${path}/logs?console=true&tail=${TAIL}`));
    } catch (e) {
      setError(errorMessage(e));
    }
  };

  return (
    <section aria-labelledby="environment-title">
      <p>
        <a href={ENVIRONMENTS} onClick={onLinkClick}>
          ← Environments
        </a>
      </p>
      <h1 id="environment-title">
        Environment <code>{props.name}</code>
      </h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p aria-live="polite" class="muted">
        {busy ?? note ?? ''}
      </p>
      {env === null ? (
        <p role="status">There is no environment {props.name} (it was removed, or never made).</p>
      ) : !env ? (
        <p>Loading…</p>
      ) : (
        <>
          <div class="card">
            <dl class="facts">
              <dt>State</dt>
              <dd>
                <EnvironmentState env={env} />
              </dd>
              <dt>Template</dt>
              <dd>{env.settings.template || '—'}</dd>
              <dt>Sandbox</dt>
              <dd>
                <SandboxLink env={env} />
              </dd>
              <dt>Volume</dt>
              <dd>
                <code>{env.volumeID}</code> at <code>/data</code>
              </dd>
              <dt>Ports</dt>
              <dd>{env.settings.ports ? <code class="wrap">{env.settings.ports}</code> : '—'}</dd>
              <dt>Settings</dt>
              <dd>
                <SettingsList settings={env.settings} />
              </dd>
              <dt>Created</dt>
              <dd>
                <time dateTime={env.createdAt}>{when(env.createdAt)}</time>
              </dd>
            </dl>
            {writable && (
              <EnvironmentActions
                env={env}
                busy={busy !== undefined}
                onBusy={setBusy}
                onDone={(now) => {
                  setError(undefined);
                  setNote(now ? `${props.name} is ${now.state}.` : `Removed ${props.name}.`);
                  setEnv(now);
                }}
                onError={setError}
              />
            )}
          </div>
          <section class="detail-tools" aria-labelledby="service-log-title">
            <h2 id="service-log-title">Service log</h2>
            {env.state !== 'running' && !log ? (
              <p>Read while the environment runs.</p>
            ) : !log ? (
              <p>Loading…</p>
            ) : log.text === '' ? (
              <p class="empty">
                No service output yet (<code>aiva deploy {props.name} …</code> runs one).
              </p>
            ) : (
              <LogBox label="Service log lines" text={log.text} />
            )}
          </section>
          <section class="detail-tools" aria-labelledby="console-log-title">
            <div class="title-row">
              <h2 id="console-log-title">Console log</h2>
              <button type="button" disabled={env.state !== 'running'} onClick={readConsole}>
                {consoleLog ? 'Read the console log again' : 'Show the console log'}
              </button>
            </div>
            {consoleLog &&
              (consoleLog.text === '' ? (
                <p class="empty">No console lines.</p>
              ) : (
                <LogBox label="Console log lines" text={consoleLog.text} />
              ))}
          </section>
        </>
      )}
    </section>
  );
}
