import type { JSX } from 'preact';
import { mayRead } from './access.js';
import type { Session } from './api.js';
import { EnvironmentDetail } from './environment-detail.js';
import { ENVIRONMENTS, EnvironmentsPage } from './environments-page.js';
import { AuditPage, EventsPage } from './events-page.js';
import { KeysPage } from './keys-page.js';
import { NodesPage } from './nodes-page.js';
import { onLinkClick } from './router.js';
import { SnapshotsPage } from './snapshots-page.js';
import { TemplateBuildForm, TemplateBuildLog } from './template-build.js';
import { TEMPLATES, TemplateDetail, TemplateList } from './templates-page.js';
import { UsagePage } from './usage-page.js';
import './resource-pages.css';

/** A resource page of the nav: where, its name, and whether this session may see it. */
interface NavEntry {
  path: string;
  label: string;
  shown: (s: Session) => boolean;
}

/**
 * The resource pages beside the sandboxes: templates, snapshots, environments, API keys, nodes, usage,
 * events and audit. A page is in the nav only when the session's key may read it (its
 * scopes) and this server has it (nodes: a cluster, and the operator team's key).
 */
const NAV: NavEntry[] = [
  { path: TEMPLATES, label: 'Templates', shown: (s) => mayRead(s, 'templates') },
  { path: '/ui/snapshots', label: 'Snapshots', shown: (s) => mayRead(s, 'sandboxes') },
  { path: ENVIRONMENTS, label: 'Environments', shown: (s) => mayRead(s, 'sandboxes') },
  { path: '/ui/keys', label: 'API keys', shown: (s) => mayRead(s, 'admin') },
  {
    path: '/ui/nodes',
    label: 'Nodes',
    shown: (s) => s.operator === true && s.nodes === true && mayRead(s, 'admin'),
  },
  { path: '/ui/usage', label: 'Usage', shown: (s) => mayRead(s, 'admin') },
  { path: '/ui/events', label: 'Events', shown: (s) => mayRead(s, 'sandboxes') },
  { path: '/ui/audit', label: 'Audit', shown: (s) => mayRead(s, 'admin') },
];

/** The nav links of the resource pages this session sees. */
export function ResourceNav(props: { session: Session; path: string }) {
  return (
    <>
      {NAV.filter((e) => e.shown(props.session)).map((e) => (
        <a
          key={e.path}
          href={e.path}
          onClick={onLinkClick}
          aria-current={props.path === e.path || props.path.startsWith(`${e.path}/`) ? 'page' : undefined}
        >
          {e.label}
        </a>
      ))}
    </>
  );
}

/** A page this session's key may not read: said, and nothing asked of the server. */
function NotForThisKey(props: { label: string }) {
  return (
    <section aria-labelledby="not-allowed-title">
      <h1 id="not-allowed-title">{props.label}</h1>
      <p>This API key’s scopes do not open this page. Sign in with a key that has them.</p>
    </section>
  );
}

/** The resource page at `path`, or undefined when `path` is none of theirs. */
export function resourcePage(path: string, session: Session): JSX.Element | undefined {
  const entry = NAV.find((e) => path === e.path || path.startsWith(`${e.path}/`));
  if (!entry) return undefined;
  // Nodes says for itself why it is empty ("operators only").
  if (entry.path !== '/ui/nodes' && !entry.shown(session)) return <NotForThisKey label={entry.label} />;
  if (path === TEMPLATES) return <TemplateList session={session} />;
  if (path === `${TEMPLATES}/new`) return <TemplateBuildForm />;
  const build = new RegExp(`^${TEMPLATES}/([^/]+)/builds/([^/]+)$`).exec(path);
  if (build?.[1] && build[2])
    return (
      <TemplateBuildLog templateID={decodeURIComponent(build[1])} buildID={decodeURIComponent(build[2])} />
    );
  const template = new RegExp(`^${TEMPLATES}/([^/]+)$`).exec(path);
  if (template?.[1]) return <TemplateDetail id={decodeURIComponent(template[1])} />;
  if (path === '/ui/snapshots') return <SnapshotsPage session={session} />;
  if (path === ENVIRONMENTS) return <EnvironmentsPage session={session} />;
  const environment = new RegExp(`^${ENVIRONMENTS}/([^/]+)$`).exec(path);
  if (environment?.[1])
    return <EnvironmentDetail name={decodeURIComponent(environment[1])} session={session} />;
  if (path === '/ui/keys') return <KeysPage session={session} />;
  if (path === '/ui/nodes') return <NodesPage session={session} />;
  if (path === '/ui/usage') return <UsagePage operator={session.operator === true} />;
  if (path === '/ui/events') return <EventsPage session={session} />;
  if (path === '/ui/audit') return <AuditPage />;
  return undefined;
}
