import { useEffect, useLayoutEffect, useState } from 'preact/hooks';
import { ApiError, api, errorMessage, type Session } from './api.js';
import { DASHBOARD, Dashboard } from './dashboard.js';
import { ResourceNav, resourcePage } from './resource-pages.js';
import { HOME, navigate, onLinkClick, usePath } from './router.js';
import { SandboxCreate } from './sandbox-create.js';
import { SandboxDetail } from './sandbox-detail.js';
import { SandboxList } from './sandbox-list.js';
import { SignIn } from './sign-in.js';

type SessionState = { kind: 'loading' } | { kind: 'signed-out' } | { kind: 'signed-in'; session: Session };

/** The console: the sign-in form until there is a session, then the pages. */
export function App() {
  const [state, setState] = useState<SessionState>({ kind: 'loading' });
  const [error, setError] = useState<string>();

  const load = async () => {
    try {
      setState({ kind: 'signed-in', session: await api<Session>('GET', '/v1/console/session') });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) setState({ kind: 'signed-out' });
      else setError(errorMessage(e));
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const signOut = async () => {
    try {
      await api('DELETE', '/v1/console/session');
    } catch (e) {
      // Already ended (401): signed out all the same.
      if (!(e instanceof ApiError && e.status === 401)) return setError(errorMessage(e));
    }
    setState({ kind: 'signed-out' });
  };

  if (error)
    return (
      <main class="page">
        <p role="alert" class="error">
          The console could not reach the server: {error}
        </p>
      </main>
    );
  if (state.kind === 'loading') return <p class="page">Loading…</p>;
  if (state.kind === 'signed-out')
    return (
      <SignIn
        onSignedIn={(session) => {
          setState({ kind: 'signed-in', session });
          if (!location.pathname.startsWith('/ui/')) navigate(HOME, true);
        }}
      />
    );
  return (
    <SignedIn
      session={state.session}
      onSignOut={signOut}
      onSessionEnded={() => setState({ kind: 'signed-out' })}
    />
  );
}

function SignedIn(props: { session: Session; onSignOut: () => void; onSessionEnded: () => void }) {
  const at = usePath();
  // `/` (and anything outside the console's pages) is the sandbox list.
  const path = at.startsWith('/ui/') ? at : HOME;
  // Before the page is painted, so that no one sees the list at an address that is not its own.
  useLayoutEffect(() => {
    if (path !== at) navigate(HOME, true);
  }, [at]);
  const detail = /^\/ui\/sandboxes\/([a-z0-9]+)$/.exec(path);
  let page = <NotFound />;
  if (path === HOME) page = <SandboxList session={props.session} onSessionEnded={props.onSessionEnded} />;
  else if (path === DASHBOARD) page = <Dashboard />;
  else if (path === '/ui/sandboxes/new') page = <SandboxCreate />;
  else if (detail?.[1]) page = <SandboxDetail id={detail[1]} onSessionEnded={props.onSessionEnded} />;
  else page = resourcePage(path, props.session) ?? page;
  return (
    <>
      <header class="top">
        <a href={HOME} class="brand" onClick={onLinkClick}>
          aiva
        </a>
        <nav aria-label="Main">
          <a href={HOME} onClick={onLinkClick} aria-current={path.startsWith(HOME) ? 'page' : undefined}>
            Sandboxes
          </a>
          <a href={DASHBOARD} onClick={onLinkClick} aria-current={path === DASHBOARD ? 'page' : undefined}>
            Dashboard
          </a>
          <ResourceNav session={props.session} path={path} />
        </nav>
        <span class="who" title={`key ${props.session.keyId}`}>
          team {props.session.teamId}
        </span>
        <button type="button" onClick={props.onSignOut}>
          Sign out
        </button>
      </header>
      <main class="page">{page}</main>
    </>
  );
}

function NotFound() {
  return (
    <section aria-labelledby="not-found-title">
      <h1 id="not-found-title">Page not found</h1>
      <p>
        The console has no page at <code>{location.pathname}</code>.{' '}
        <a href={HOME} onClick={onLinkClick}>
          Go to the sandboxes
        </a>
        .
      </p>
    </section>
  );
}
