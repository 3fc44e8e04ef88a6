import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';
import { navigate, onLinkClick } from './router.js';
import { BuildStatus, type ListedTemplate, TEMPLATES } from './templates-page.js';

const EXAMPLE = 'FROM base\nRUN echo hi > /hi\n';
/** How often a running build's log is asked for. */
const POLL_MS = 1000;

interface LogEntry {
  timestamp: string;
  level: string;
  step?: string;
  message: string;
}
interface BuildState {
  status: string;
  logEntries: LogEntry[];
  reason?: { message?: string };
}

/**
 * A template built from a Dockerfile typed in the page, through the API the e2b SDK's
 * `Template.build` uses: `POST /v3/templates` (name, vCPUs, memory) makes the build,
 * `POST /v2/templates/{id}/builds/{buildID}` starts it with the file's base and steps; then
 * the build's page follows its log. The Dockerfile is read in the browser (its parser is
 * loaded with this form only).
 */
export function TemplateBuildForm() {
  const [name, setName] = useState('');
  const [dockerfile, setDockerfile] = useState(EXAMPLE);
  const [cpus, setCpus] = useState('1');
  const [memory, setMemory] = useState('512');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    setBusy(true);
    try {
      const { dockerfileBuild } = await import('./dockerfile-steps.js');
      const parsed = dockerfileBuild(dockerfile);
      // FROM a template this key sees builds on it; anything else is an image.
      const templates = await api<ListedTemplate[]>('GET', '/templates');
      const isTemplate = templates.some(
        (t) =>
          t.templateID === parsed.base || t.names?.includes(parsed.base) || t.aliases?.includes(parsed.base),
      );
      const made = await api<{ templateID: string; buildID: string }>('POST', '/v3/templates', {
        name: name.trim().toLowerCase(),
        cpuCount: Number(cpus),
        memoryMB: Number(memory),
      });
      await api('POST', `/v2/templates/${made.templateID}/builds/${made.buildID}`, {
        ...(isTemplate ? { fromTemplate: parsed.base } : { fromImage: parsed.base }),
        steps: parsed.steps,
        ...(parsed.startCmd ? { startCmd: parsed.startCmd, readyCmd: parsed.readyCmd } : {}),
      });
      navigate(`${TEMPLATES}/${made.templateID}/builds/${made.buildID}`);
    } catch (err) {
      setError(errorMessage(err));
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="build-title">
      <p>
        <a href={TEMPLATES} onClick={onLinkClick}>
          ← Templates
        </a>
      </p>
      <h1 id="build-title">Build a template from a Dockerfile</h1>
      <form class="card form wide" onSubmit={submit}>
        <label for="template-name">Name</label>
        <input
          id="template-name"
          required
          maxLength={128}
          aria-describedby="template-name-hint"
          value={name}
          onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
        />
        <p class="hint" id="template-name-hint">
          Lower-case letters, digits, - and _; an optional :tag. A name the team has is built anew.
        </p>
        <label for="dockerfile">Dockerfile</label>
        <textarea
          id="dockerfile"
          rows={10}
          required
          spellcheck={false}
          class="code"
          aria-describedby="dockerfile-hint"
          value={dockerfile}
          onInput={(e) => setDockerfile((e.currentTarget as HTMLTextAreaElement).value)}
        />
        <p class="hint" id="dockerfile-hint">
          FROM a template (such as <code>base</code>) or an image; RUN, ENV, ARG, WORKDIR, USER and CMD. Files
          to COPY need a build context: use <code>aiva template build</code>.
        </p>
        <div class="form-row">
          <label>
            vCPUs
            <input
              type="number"
              min={1}
              max={64}
              required
              value={cpus}
              onInput={(e) => setCpus((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <label>
            Memory (MiB)
            <input
              type="number"
              min={128}
              max={1048576}
              step={1}
              required
              value={memory}
              onInput={(e) => setMemory((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
        </div>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Starting the build…' : 'Build'}
        </button>
      </form>
    </section>
  );
}

/**
 * One build and its log (`GET /templates/{id}/builds/{buildID}/status`), asked for again
 * from where it left off (`logsOffset`) each second until the build is ready or failed.
 */
export function TemplateBuildLog(props: { templateID: string; buildID: string }) {
  const [status, setStatus] = useState<string>();
  const [reason, setReason] = useState<string>();
  const [lines, setLines] = useState<LogEntry[]>([]);
  const [error, setError] = useState<string>();
  const end = useRef<HTMLDivElement>(null);

  useEffect(() => {
    let stopped = false;
    let offset = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const path = `/templates/${encodeURIComponent(props.templateID)}/builds/${encodeURIComponent(props.buildID)}/status?logsOffset=${offset}`;
        const s = await api<BuildState>('GET', path);
        if (stopped) return;
        offset += s.logEntries.length;
        if (s.logEntries.length > 0) setLines((old) => [...old, ...s.logEntries]);
        setStatus(s.status);
        if (s.reason?.message) setReason(s.reason.message);
        // A full page: there may be more at once; otherwise wait while the build goes on.
        const more = s.logEntries.length >= 100;
        if (more || (s.status !== 'ready' && s.status !== 'error'))
          timer = setTimeout(poll, more ? 0 : POLL_MS);
      } catch (e) {
        if (!stopped) setError(errorMessage(e));
      }
    };
    void poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [props.templateID, props.buildID]);

  useEffect(() => {
    end.current?.scrollIntoView({ block: 'nearest' });
  }, [lines.length]);

  const templatePage = `${TEMPLATES}/${encodeURIComponent(props.templateID)}`;
  return (
    <section aria-labelledby="build-log-title">
      <p>
        <a href={templatePage} onClick={onLinkClick}>
          ← Template
        </a>
      </p>
      <h1 id="build-log-title">
        Build <code>{props.buildID}</code>
      </h1>
      <p aria-live="polite">
        Status: <BuildStatus status={status ?? 'loading'} />
        {status === 'building' || status === 'waiting' ? ' (the log follows the build)' : ''}
      </p>
      {reason && (
        <p role="alert" class="error">
          {reason}
        </p>
      )}
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling log must be reachable by keyboard to scroll it (WCAG 2.1.1) */}
      <div class="build-log" role="log" aria-label="Build log" tabIndex={0}>
        {lines.length === 0 && <p class="muted">No log yet.</p>}
        {lines.map((l, i) => (
          // The log only grows: an entry's place is its identity.
          <div key={i} class={`log-line log-${l.level}`}>
            <span class="log-time">{new Date(l.timestamp).toLocaleTimeString()}</span> {l.message}
          </div>
        ))}
        <div ref={end} />
      </div>
    </section>
  );
}
