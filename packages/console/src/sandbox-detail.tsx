import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, errorMessage, type ListedSandbox } from './api.js';
import { HOME, onLinkClick } from './router.js';
import { SandboxActions } from './sandbox-actions.js';
import { MetadataList, templateOf } from './sandbox-list.js';
import { SandboxLogs } from './sandbox-logs.js';
import { SandboxMetrics } from './sandbox-metrics.js';
import { SandboxSnapshot } from './sandbox-snapshot.js';
import { useSandboxStream } from './sandbox-stream.js';
import { SandboxTimeout } from './sandbox-timeout.js';

/**
 * One sandbox, live from the sandbox stream, with pause, resume, kill and its timeout,
 * snapshot and fork, its CPU, memory and disk charts and console log tail, and while it
 * runs a terminal and its files. Once listed, its
 * leaving the list is its end; one the stream never listed (an old one past the stream's
 * 1000) is read with `GET /sandboxes/{id}`, where a 404 means it has ended.
 */
export function SandboxDetail(props: { id: string; onSessionEnded: () => void }) {
  const { items } = useSandboxStream(props.onSessionEnded);
  const streamed = items?.find((s) => s.sandboxID === props.id);
  // undefined: not read; null: not found (ended).
  const [read, setRead] = useState<ListedSandbox | null>();
  const [error, setError] = useState<string>();
  const listed = items !== undefined && streamed !== undefined;
  const seen = useRef(false);
  if (listed) seen.current = true;

  useEffect(() => {
    if (items === undefined || listed) return;
    if (seen.current) return setRead(null);
    api<ListedSandbox>('GET', `/sandboxes/${props.id}`).then(
      (s) => setRead(s),
      (e) => (e instanceof ApiError && e.status === 404 ? setRead(null) : setError(errorMessage(e))),
    );
  }, [props.id, items === undefined, listed]);

  const sandbox = streamed ?? read ?? undefined;
  const ended = !streamed && read === null;
  // Pause or kill asked from this page: the terminal closes its stream first.
  const [leaving, setLeaving] = useState(false);
  const state = ended ? 'ended' : sandbox?.state;
  useEffect(() => {
    if (state !== 'running') setLeaving(false);
  }, [state]);
  return (
    <section aria-labelledby="detail-title">
      <p>
        <a href={HOME} onClick={onLinkClick}>
          ← Sandboxes
        </a>
      </p>
      <h1 id="detail-title">
        Sandbox <code>{props.id}</code>
      </h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {ended ? (
        <p role="status">This sandbox has ended.</p>
      ) : !sandbox ? (
        <p>Loading…</p>
      ) : (
        <div class="card">
          <dl class="facts">
            <dt>State</dt>
            <dd>
              <span class={`state state-${sandbox.state}`}>{sandbox.state}</span>
            </dd>
            <dt>Template</dt>
            <dd>{templateOf(sandbox)}</dd>
            <dt>CPU / memory / disk</dt>
            <dd>
              {sandbox.cpuCount} vCPU / {sandbox.memoryMB} MiB / {sandbox.diskSizeMB} MiB
            </dd>
            <dt>Started</dt>
            <dd>
              <time dateTime={sandbox.startedAt}>{new Date(sandbox.startedAt).toLocaleString()}</time>
            </dd>
            <dt>Ends</dt>
            <dd>
              <time dateTime={sandbox.endAt}>{new Date(sandbox.endAt).toLocaleString()}</time>
            </dd>
            <dt>envd</dt>
            <dd>{sandbox.envdVersion}</dd>
            <dt>Metadata</dt>
            <dd>
              <MetadataList metadata={sandbox.metadata} />
            </dd>
          </dl>
          <SandboxActions
            sandbox={sandbox}
            onStart={(what) => what !== 'resumed' && setLeaving(true)}
            onFailed={() => setLeaving(false)}
          />
          {sandbox.state === 'running' && <SandboxTimeout id={sandbox.sandboxID} />}
          {sandbox.state === 'running' && <SandboxSnapshot id={sandbox.sandboxID} />}
        </div>
      )}
      {sandbox && !ended && <SandboxMetrics id={props.id} live={sandbox.state === 'running' && !leaving} />}
      {sandbox && !ended && <SandboxLogs id={props.id} live={sandbox.state === 'running' && !leaving} />}
      <LazySandboxTools id={props.id} running={sandbox?.state === 'running' && !ended && !leaving} />
    </section>
  );
}

type Tools = typeof import('./sandbox-tools.js').SandboxTools;

/**
 * The terminal and file browser while the sandbox runs, loaded when first shown: xterm.js
 * and the Connect runtime are most of the console's script, and only this page needs them.
 * Mounted for the page's life: when the sandbox stops running the tools go (and leave its
 * shell alone); when the page goes while it runs, the terminal kills its shell.
 */
function LazySandboxTools(props: { id: string; running: boolean }) {
  const [tools, setTools] = useState<{ Tools: Tools }>();
  const [error, setError] = useState<string>();
  const running = useRef(props.running);
  running.current = props.running;
  useEffect(() => {
    if (!props.running || tools) return;
    import('./sandbox-tools.js').then(
      (m) => setTools({ Tools: m.SandboxTools }),
      (e) => setError(errorMessage(e)),
    );
  }, [props.running]);
  if (!props.running) return null;
  if (error)
    return (
      <p role="alert" class="error">
        {error}
      </p>
    );
  return tools ? (
    <tools.Tools id={props.id} stillRunning={() => running.current} />
  ) : (
    <p>Loading the terminal…</p>
  );
}
