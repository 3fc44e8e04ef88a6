import { useEffect, useState } from 'preact/hooks';
import { mayRead } from './access.js';
import { api, errorMessage, type Session } from './api.js';
import { when } from './format.js';
import { onLinkClick } from './router.js';

interface SandboxEvent {
  id: string;
  type: string;
  sandboxId: string;
  sandboxTemplateId: string;
  timestamp: string;
  eventData: Record<string, unknown> | null;
}
interface Webhook {
  id: string;
  name: string;
  url: string;
  enabled: boolean;
  events: string[];
  createdAt: string;
}
interface AuditEntry {
  id: string;
  time: string;
  keyId: string;
  teamId: string;
  action: string;
  method: string;
  route: string;
  targets: string[];
  status: number;
  result: 'ok' | 'error';
}

/** Rows a page of events or audit entries holds. */
const PAGE = 25;

/** Previous / next buttons of a paged table, with where the page is. */
function Pager(props: { label: string; page: number; hasNext: boolean; onPage: (p: number) => void }) {
  return (
    <nav class="pager" aria-label={`${props.label} pages`}>
      <button type="button" disabled={props.page === 0} onClick={() => props.onPage(props.page - 1)}>
        Newer
      </button>
      <span>Page {props.page + 1}</span>
      <button type="button" disabled={!props.hasNext} onClick={() => props.onPage(props.page + 1)}>
        Older
      </button>
    </nav>
  );
}

/**
 * The team's sandbox lifecycle events (E2B's `GET /events/sandboxes`, newest first, paged
 * by offset) and, for a key that may read the team's administration, its webhooks
 * (`GET /events/webhooks`).
 */
export function EventsPage(props: { session: Session }) {
  const [page, setPage] = useState(0);
  const [events, setEvents] = useState<SandboxEvent[]>();
  const [hooks, setHooks] = useState<Webhook[]>();
  const [error, setError] = useState<string>();
  const admin = mayRead(props.session, 'admin');

  useEffect(() => {
    // One more than a page: whether there is an older page.
    api<SandboxEvent[]>('GET', `/events/sandboxes?limit=${PAGE + 1}&offset=${page * PAGE}`).then(
      setEvents,
      (e) => setError(errorMessage(e)),
    );
  }, [page]);
  useEffect(() => {
    if (admin) api<Webhook[]>('GET', '/events/webhooks').then(setHooks, (e) => setError(errorMessage(e)));
  }, [admin]);

  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title">Events</h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <h2>Sandbox events</h2>
      <p class="hint">Lifecycle events of the team’s sandboxes, kept 7 days, newest first.</p>
      {!events && !error && <p>Loading…</p>}
      {events && events.length === 0 && page === 0 && <p class="empty">No events.</p>}
      {events && (events.length > 0 || page > 0) && (
        <>
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Sandbox events, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Event</th>
                  <th scope="col">Sandbox</th>
                  <th scope="col">Template</th>
                  <th scope="col">Data</th>
                </tr>
              </thead>
              <tbody>
                {events.slice(0, PAGE).map((e) => (
                  <tr key={e.id} data-event={e.type}>
                    <td>
                      <time dateTime={e.timestamp}>{when(e.timestamp)}</time>
                    </td>
                    <td>{e.type}</td>
                    <td>
                      <a href={`/ui/sandboxes/${e.sandboxId}`} onClick={onLinkClick}>
                        <code>{e.sandboxId}</code>
                      </a>
                    </td>
                    <td>
                      <code>{e.sandboxTemplateId}</code>
                    </td>
                    <td>{e.eventData ? <code class="wrap">{JSON.stringify(e.eventData)}</code> : '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager label="Sandbox events" page={page} hasNext={events.length > PAGE} onPage={setPage} />
        </>
      )}
      {admin && (
        <>
          <h2>Webhooks</h2>
          {hooks && hooks.length === 0 && (
            <p class="empty">
              No webhooks. Add one with <code>POST /events/webhooks</code> (E2B’s API).
            </p>
          )}
          {hooks && hooks.length > 0 && (
            <div class="table-wrap">
              <table>
                <caption class="visually-hidden">Webhooks of this team</caption>
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">URL</th>
                    <th scope="col">Events</th>
                    <th scope="col">Enabled</th>
                    <th scope="col">Created</th>
                  </tr>
                </thead>
                <tbody>
                  {hooks.map((h) => (
                    <tr key={h.id}>
                      <td>{h.name}</td>
                      <td>
                        <code class="wrap">{h.url}</code>
                      </td>
                      <td>{h.events.join(', ') || 'all'}</td>
                      <td>{h.enabled ? 'yes' : 'no'}</td>
                      <td>{when(h.createdAt)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </section>
  );
}

/**
 * The audit log (aiva's `GET /v1/audit`): every mutating API call of the team (every
 * team's for the operator), newest first, paged by the log's own cursor.
 */
export function AuditPage() {
  // The cursor of each page seen so far: back is the one before.
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const [page, setPage] = useState(0);
  const [data, setData] = useState<{ entries: AuditEntry[]; nextToken?: string }>();
  const [error, setError] = useState<string>();

  useEffect(() => {
    const cursor = cursors[page];
    api<{ entries: AuditEntry[]; nextToken?: string }>(
      'GET',
      `/v1/audit?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    ).then(
      (d) => {
        setData(d);
        if (d.nextToken) setCursors((old) => [...old.slice(0, page + 1), d.nextToken]);
      },
      (e) => setError(errorMessage(e)),
    );
  }, [page]);

  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <p class="hint">Every call that changed something, who made it and how it ended, newest first.</p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!data && !error && <p>Loading…</p>}
      {data && data.entries.length === 0 && <p class="empty">Nothing recorded.</p>}
      {data && data.entries.length > 0 && (
        <>
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Audit log, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Time</th>
                  <th scope="col">Action</th>
                  <th scope="col">Call</th>
                  <th scope="col">Targets</th>
                  <th scope="col">Key</th>
                  <th scope="col">Result</th>
                </tr>
              </thead>
              <tbody>
                {data.entries.map((a) => (
                  <tr key={a.id} data-action={a.action}>
                    <td>
                      <time dateTime={a.time}>{when(a.time)}</time>
                    </td>
                    <td>{a.action}</td>
                    <td>
                      <code class="wrap">
                        {a.method} {a.route}
                      </code>
                    </td>
                    <td>{a.targets.length ? <code class="wrap">{a.targets.join(' ')}</code> : '—'}</td>
                    <td>
                      <code>{a.keyId}</code>
                    </td>
                    <td>
                      <span class={`state state-${a.result}`}>
                        {a.result} ({a.status})
                      </span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager label="Audit log" page={page} hasNext={Boolean(data.nextToken)} onPage={setPage} />
        </>
      )}
    </section>
  );
}
