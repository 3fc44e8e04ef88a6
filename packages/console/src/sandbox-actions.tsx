import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type ListedSandbox } from './api.js';

/** Seconds a resumed sandbox lives (E2B's default timeout). */
const RESUME_TIMEOUT_S = 300;

/**
 * Pause, resume and kill for one sandbox, through E2B's routes (`POST
 * /sandboxes/{id}/pause`, `POST /sandboxes/{id}/connect`, `DELETE /sandboxes/{id}`). Kill
 * asks once more ("Confirm kill") before it acts. The list updates from the stream, so
 * nothing here changes it; `onStart` is told (and a turn of the event loop given) before a
 * call, `onDone` after it succeeded, `onFailed` after it failed.
 */
export function SandboxActions(props: {
  sandbox: ListedSandbox;
  onStart?: (what: 'paused' | 'resumed' | 'killed') => void;
  onDone?: (what: 'paused' | 'resumed' | 'killed') => void;
  onFailed?: (what: 'paused' | 'resumed' | 'killed') => void;
}) {
  const { sandboxID: id, state } = props.sandbox;
  const [busy, setBusy] = useState(false);
  const [confirmKill, setConfirmKill] = useState(false);
  const [error, setError] = useState<string>();
  useEffect(() => {
    if (!confirmKill) return;
    const t = setTimeout(() => setConfirmKill(false), 5000);
    return () => clearTimeout(t);
  }, [confirmKill]);

  const act = async (what: 'paused' | 'resumed' | 'killed') => {
    setBusy(true);
    setError(undefined);
    try {
      if (props.onStart) {
        props.onStart(what);
        await new Promise((r) => setTimeout(r, 0));
      }
      if (what === 'paused') await api('POST', `/sandboxes/${id}/pause`, {});
      else if (what === 'resumed')
        await api('POST', `/sandboxes/${id}/connect`, { timeout: RESUME_TIMEOUT_S });
      else await api('DELETE', `/sandboxes/${id}`);
      props.onDone?.(what);
    } catch (e) {
      setError(errorMessage(e));
      props.onFailed?.(what);
    } finally {
      setBusy(false);
      setConfirmKill(false);
    }
  };

  return (
    <div class="actions">
      {state === 'running' ? (
        <button type="button" disabled={busy} onClick={() => act('paused')} aria-label={`Pause ${id}`}>
          Pause
        </button>
      ) : (
        <button type="button" disabled={busy} onClick={() => act('resumed')} aria-label={`Resume ${id}`}>
          Resume
        </button>
      )}
      {confirmKill ? (
        <button
          type="button"
          class="danger"
          disabled={busy}
          onClick={() => act('killed')}
          aria-label={`Confirm kill ${id}`}
        >
          Confirm kill
        </button>
      ) : (
        <button type="button" disabled={busy} onClick={() => setConfirmKill(true)} aria-label={`Kill ${id}`}>
          Kill
        </button>
      )}
      {error && (
        <span role="alert" class="error">
          {error}
        </span>
      )}
    </div>
  );
}
