import { useEffect, useState } from 'preact/hooks';
import { ApiError, api, errorMessage, type ListedSandbox } from './api.js';
import { HOME, onLinkClick } from './router.js';
import { SandboxActions } from './sandbox-actions.js';
import { MetadataList, templateOf } from './sandbox-list.js';

type Detail = ListedSandbox & { domain?: string | null };

/** One sandbox (`GET /sandboxes/{id}`), with pause, resume and kill; read again after each. */
export function SandboxDetail(props: { id: string }) {
  const [sandbox, setSandbox] = useState<Detail>();
  const [ended, setEnded] = useState(false);
  const [error, setError] = useState<string>();

  const load = async () => {
    try {
      setSandbox(await api<Detail>('GET', `/sandboxes/${props.id}`));
      setError(undefined);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) setEnded(true);
      else setError(errorMessage(e));
    }
  };
  useEffect(() => {
    void load();
  }, [props.id]);

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
            onDone={(what) => (what === 'killed' ? setEnded(true) : void load())}
          />
        </div>
      )}
    </section>
  );
}
