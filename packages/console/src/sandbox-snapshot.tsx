import { useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';
import { onLinkClick } from './router.js';

type Outcome = { kind: 'snapshot'; snapshotID: string } | { kind: 'fork'; sandboxID: string };

/**
 * Snapshot and fork of a running sandbox, through E2B's routes: `POST
 * /sandboxes/{id}/snapshots` (the new snapshot's id, which a create takes as its template)
 * and `POST /sandboxes/{id}/fork` (one new sandbox from it; the sandbox runs on). The
 * outcome or the API's message is announced.
 */
export function SandboxSnapshot(props: { id: string }) {
  const [busy, setBusy] = useState<'snapshot' | 'fork'>();
  const [outcome, setOutcome] = useState<Outcome>();
  const [error, setError] = useState<string>();

  const run = async (what: 'snapshot' | 'fork') => {
    setBusy(what);
    setError(undefined);
    setOutcome(undefined);
    try {
      if (what === 'snapshot') {
        const s = await api<{ snapshotID: string }>('POST', `/sandboxes/${props.id}/snapshots`, {});
        setOutcome({ kind: 'snapshot', snapshotID: s.snapshotID });
      } else {
        const [made] = await api<{ sandbox?: { sandboxID: string }; error?: { message: string } }[]>(
          'POST',
          `/sandboxes/${props.id}/fork`,
          { count: 1 },
        );
        if (made?.sandbox) setOutcome({ kind: 'fork', sandboxID: made.sandbox.sandboxID });
        else setError(made?.error?.message ?? 'the fork made no sandbox');
      }
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(undefined);
    }
  };

  return (
    <div class="actions">
      <button type="button" disabled={busy !== undefined} onClick={() => run('snapshot')}>
        {busy === 'snapshot' ? 'Saving snapshot…' : 'Snapshot'}
      </button>
      <button type="button" disabled={busy !== undefined} onClick={() => run('fork')}>
        {busy === 'fork' ? 'Forking…' : 'Fork'}
      </button>
      <span role="status">
        {outcome?.kind === 'snapshot' && (
          <>
            Snapshot saved: <code class="snapshot-id">{outcome.snapshotID}</code>
          </>
        )}
        {outcome?.kind === 'fork' && (
          <>
            Forked:{' '}
            <a href={`/ui/sandboxes/${outcome.sandboxID}`} onClick={onLinkClick}>
              <code>{outcome.sandboxID}</code>
            </a>
          </>
        )}
      </span>
      {error && (
        <span role="alert" class="error">
          {error}
        </span>
      )}
    </div>
  );
}
