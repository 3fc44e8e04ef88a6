import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type ListedSandbox } from './api.js';

/** Seconds a resumed sandbox lives (E2B's default timeout). */
const RESUME_TIMEOUT_S = 300;

/**
 * Pause, resume and kill for one sandbox, through E2B's routes (`POST
 * /sandboxes/{id}/pause`, `POST /sandboxes/{id}/connect`, `DELETE /sandboxes/{id}`). Kill
 * asks once more ("Confirm kill") before it acts. The list updates from the stream, so
 * nothing here changes it; `onDone` is told after a call succeeded.
 */
export function SandboxActions(props: {
  sandbox: ListedSandbox;
  onDone?: (what: 'paused' | 'resumed' | 'killed') => void;
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
      if (what === 'paused') await api('POST', `/sandboxes/${id}/pause`, {});
      else if (what === 'resumed')
        await api('POST', `/sandboxes/${id}/connect`, { timeout: RESUME_TIMEOUT_S });
      else await api('DELETE', `/sandboxes/${id}`);
      props.onDone?.(what);
    } catch (e) {
      setError(errorMessage(e));
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
