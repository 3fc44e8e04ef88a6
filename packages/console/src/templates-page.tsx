import { useEffect, useState } from 'preact/hooks';
import { mayChange } from './access.js';
import { api, errorMessage, type Session } from './api.js';
import { mib, when } from './format.js';
import { onLinkClick } from './router.js';

/** A template as `GET /templates` lists it. */
export interface ListedTemplate {
  templateID: string;
  names?: string[];
  aliases?: string[];
  cpuCount: number;
  memoryMB: number;
  diskSizeMB?: number;
  public?: boolean;
  buildCount?: number;
  buildStatus?: string;
  createdAt?: string;
}

/** A build as `GET /templates/{id}` lists it. */
export interface TemplateBuild {
  buildID: string;
  status: string;
  cpuCount: number;
  memoryMB: number;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
}

export const TEMPLATES = '/ui/templates';

export function templateLabel(t: ListedTemplate): string {
  return t.names?.[0] ?? t.aliases?.[0] ?? t.templateID;
}

export function BuildStatus(props: { status?: string }) {
  const s = props.status ?? 'unknown';
  return <span class={`state state-${s}`}>{s}</span>;
}

/** The templates the key sees (`GET /templates`): the team's, the public ones and aiva's own. */
export function TemplateList(props: { session: Session }) {
  const [items, setItems] = useState<ListedTemplate[]>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    api<ListedTemplate[]>('GET', '/templates').then(setItems, (e) => setError(errorMessage(e)));
  }, []);
  return (
    <section aria-labelledby="templates-title">
      <div class="title-row">
        <h1 id="templates-title">Templates</h1>
        {mayChange(props.session, 'templates') && (
          <a class="button primary" href={`${TEMPLATES}/new`} onClick={onLinkClick}>
            Build from a Dockerfile
          </a>
        )}
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!items && !error && <p>Loading…</p>}
      {items && items.length === 0 && <p class="empty">No templates.</p>}
      {items && items.length > 0 && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Templates this key sees</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">ID</th>
                <th scope="col">Build status</th>
                <th scope="col">CPU / memory</th>
                <th scope="col">Disk</th>
                <th scope="col">Builds</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {items.map((t) => (
                <tr key={t.templateID} data-template={templateLabel(t)}>
                  <td>
                    <a href={`${TEMPLATES}/${encodeURIComponent(t.templateID)}`} onClick={onLinkClick}>
                      {templateLabel(t)}
                    </a>
                    {t.public && <span class="muted"> (public)</span>}
                  </td>
                  <td>
                    <code>{t.templateID}</code>
                  </td>
                  <td>
                    <BuildStatus status={t.buildStatus} />
                  </td>
                  <td>
                    {t.cpuCount} vCPU / {mib(t.memoryMB)}
                  </td>
                  <td>{mib(t.diskSizeMB)}</td>
                  <td>{t.buildCount ?? '—'}</td>
                  <td>
                    <time dateTime={t.createdAt}>{when(t.createdAt)}</time>
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

/** One template (`GET /templates/{id}`): its builds, each with a link to its log. */
export function TemplateDetail(props: { id: string }) {
  const [t, setT] = useState<ListedTemplate & { builds: TemplateBuild[] }>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    api<ListedTemplate & { builds: TemplateBuild[] }>(
      'GET',
      `/templates/${encodeURIComponent(props.id)}`,
    ).then(setT, (e) => setError(errorMessage(e)));
  }, [props.id]);
  const name = t ? templateLabel(t) : props.id;
  return (
    <section aria-labelledby="template-title">
      <p>
        <a href={TEMPLATES} onClick={onLinkClick}>
          ← Templates
        </a>
      </p>
      <h1 id="template-title">Template {name}</h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!t && !error && <p>Loading…</p>}
      {t && (
        <>
          <dl class="facts">
            <dt>ID</dt>
            <dd>
              <code>{t.templateID}</code>
            </dd>
            <dt>Status</dt>
            <dd>
              <BuildStatus status={t.buildStatus} />
            </dd>
            <dt>Resources</dt>
            <dd>
              {t.cpuCount} vCPU, {mib(t.memoryMB)} memory, {mib(t.diskSizeMB)} disk
            </dd>
            <dt>Created</dt>
            <dd>{when(t.createdAt)}</dd>
          </dl>
          <h2>Builds</h2>
          {t.builds.length === 0 ? (
            <p class="empty">No builds (aiva’s own templates are built in).</p>
          ) : (
            <div class="table-wrap">
              <table>
                <caption class="visually-hidden">Builds of {name}, newest first</caption>
                <thead>
                  <tr>
                    <th scope="col">Build</th>
                    <th scope="col">Status</th>
                    <th scope="col">CPU / memory</th>
                    <th scope="col">Started</th>
                    <th scope="col">Finished</th>
                  </tr>
                </thead>
                <tbody>
                  {t.builds.map((b) => (
                    <tr key={b.buildID}>
                      <td>
                        <a
                          href={`${TEMPLATES}/${encodeURIComponent(t.templateID)}/builds/${encodeURIComponent(b.buildID)}`}
                          onClick={onLinkClick}
                          aria-label={`Log of build ${b.buildID}`}
                        >
                          <code>{b.buildID}</code>
                        </a>
                      </td>
                      <td>
                        <BuildStatus status={b.status} />
                      </td>
                      <td>
                        {b.cpuCount} vCPU / {mib(b.memoryMB)}
                      </td>
                      <td>{when(b.createdAt)}</td>
                      <td>{when(b.finishedAt)}</td>
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
