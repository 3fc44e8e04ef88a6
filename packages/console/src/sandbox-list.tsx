import { useMemo, useState } from 'preact/hooks';
import type { ListedSandbox, Session } from './api.js';
import { onLinkClick } from './router.js';
import { SandboxActions } from './sandbox-actions.js';
import { useSandboxStream } from './sandbox-stream.js';

/**
 * The team's sandboxes (running and paused), kept live by the sandbox stream, filtered in
 * the page by state, template and metadata. The operator may show every team's, with a
 * team column and filter; another team's sandbox is shown, not acted on (the API's sandbox
 * routes are each team's own).
 */
export function SandboxList(props: { session: Session; onSessionEnded: () => void }) {
  const [everyTeam, setEveryTeam] = useState(false);
  const { items, feed } = useSandboxStream(props.onSessionEnded, everyTeam);
  const [team, setTeam] = useState('');
  const [state, setState] = useState('');
  const [template, setTemplate] = useState('');
  const [metadata, setMetadata] = useState('');

  const templates = useMemo(() => [...new Set((items ?? []).map(templateOf))].sort(), [items]);
  const teams = useMemo(
    () => [...new Set((items ?? []).map((s) => s.teamID ?? ''))].filter(Boolean).sort(),
    [items],
  );
  const own = (s: ListedSandbox) => s.teamID === undefined || s.teamID === props.session.teamId;
  const shown = useMemo(() => {
    const want = metadataFilter(metadata);
    return (items ?? []).filter(
      (s) =>
        (!state || s.state === state) &&
        (!everyTeam || !team || s.teamID === team) &&
        (!template || templateOf(s) === template) &&
        (!want ||
          (s.metadata?.[want.key] !== undefined &&
            (want.value === undefined || s.metadata[want.key] === want.value))),
    );
  }, [items, state, template, metadata, everyTeam, team]);

  return (
    <section aria-labelledby="sandboxes-title">
      <div class="title-row">
        <h1 id="sandboxes-title">Sandboxes</h1>
        <span class={`feed feed-${feed}`} role="status">
          {feed === 'live' ? 'Live' : feed === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
        </span>
        <a class="button primary" href="/ui/sandboxes/new" onClick={onLinkClick}>
          New sandbox
        </a>
      </div>
      <form class="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        {props.session.operator && (
          <label>
            Teams
            <select
              value={everyTeam ? 'all' : 'own'}
              onChange={(e) => setEveryTeam((e.currentTarget as HTMLSelectElement).value === 'all')}
            >
              <option value="own">This team</option>
              <option value="all">Every team</option>
            </select>
          </label>
        )}
        {everyTeam && (
          <label>
            Team
            <select value={team} onChange={(e) => setTeam((e.currentTarget as HTMLSelectElement).value)}>
              <option value="">All</option>
              {teams.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </label>
        )}
        <label>
          State
          <select value={state} onChange={(e) => setState((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">All</option>
            <option value="running">Running</option>
            <option value="paused">Paused</option>
          </select>
        </label>
        <label>
          Template
          <select
            value={template}
            onChange={(e) => setTemplate((e.currentTarget as HTMLSelectElement).value)}
          >
            <option value="">All</option>
            {templates.map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        <label>
          Metadata
          <input
            type="search"
            placeholder="key or key=value"
            value={metadata}
            onInput={(e) => setMetadata((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
      </form>
      {items === undefined ? (
        <p>Loading…</p>
      ) : shown.length === 0 ? (
        <p class="empty">{items.length === 0 ? 'No sandboxes yet.' : 'No sandbox matches the filters.'}</p>
      ) : (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">
              {everyTeam ? 'Sandboxes of every team' : 'Sandboxes of this team'}
            </caption>
            <thead>
              <tr>
                <th scope="col">ID</th>
                {everyTeam && <th scope="col">Team</th>}
                <th scope="col">Template</th>
                <th scope="col">State</th>
                <th scope="col">CPU / memory</th>
                <th scope="col">Started</th>
                <th scope="col">Metadata</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((s) => (
                <tr key={s.sandboxID} data-sandbox={s.sandboxID}>
                  <td>
                    {own(s) ? (
                      <a href={`/ui/sandboxes/${s.sandboxID}`} onClick={onLinkClick}>
                        <code>{s.sandboxID}</code>
                      </a>
                    ) : (
                      <code>{s.sandboxID}</code>
                    )}
                  </td>
                  {everyTeam && <td>{s.teamID}</td>}
                  <td>{templateOf(s)}</td>
                  <td>
                    <span class={`state state-${s.state}`}>{s.state}</span>
                  </td>
                  <td>
                    {s.cpuCount} vCPU / {s.memoryMB} MiB
                  </td>
                  <td>
                    <time dateTime={s.startedAt}>{new Date(s.startedAt).toLocaleString()}</time>
                  </td>
                  <td>
                    <MetadataList metadata={s.metadata} />
                  </td>
                  <td>
                    {own(s) ? <SandboxActions sandbox={s} /> : <span class="muted">another team’s</span>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** `key` (has the key) or `key=value` (the value may hold `=`); empty: no filter. */
function metadataFilter(text: string): { key: string; value?: string } | undefined {
  const eq = text.indexOf('=');
  const key = (eq < 0 ? text : text.slice(0, eq)).trim();
  if (!key) return undefined;
  return { key, value: eq < 0 ? undefined : text.slice(eq + 1).trim() };
}

export function templateOf(s: ListedSandbox): string {
  return s.alias ?? s.templateID;
}

export function MetadataList(props: { metadata?: Record<string, string> }) {
  const entries = Object.entries(props.metadata ?? {});
  if (entries.length === 0) return <span class="muted">—</span>;
  return (
    <ul class="metadata">
      {entries.map(([k, v]) => (
        <li key={k}>
          <code>
            {k}={v}
          </code>
        </li>
      ))}
    </ul>
  );
}
