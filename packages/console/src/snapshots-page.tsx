import { useEffect, useState } from 'preact/hooks';
import { mayChange } from './access.js';
import { api, errorMessage, type Session } from './api.js';
import { getWithHeaders } from './api-paged.js';
import { navigate } from './router.js';

interface Snapshot {
  snapshotID: string;
  names: string[];
}

/** How many snapshots a page shows. */
const PAGE = 50;

/**
 * The team's snapshots (E2B's `GET /snapshots`, newest first, paged by its X-Next-Token
 * header): a sandbox made from one (`POST /sandboxes` with the snapshot as template),
 * or the snapshot deleted (`DELETE /templates/{snapshotID}`, after a confirmation).
 */
export function SnapshotsPage(props: { session: Session }) {
  const [items, setItems] = useState<Snapshot[]>();
  const [next, setNext] = useState<string>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState<string>();
  const [confirm, setConfirm] = useState<string>();
  const [note, setNote] = useState<string>();
  const writable = mayChange(props.session, 'sandboxes');

  const load = async (token?: string) => {
    try {
      const { data: page, headers } = await getWithHeaders<Snapshot[]>(
        `/snapshots?limit=${PAGE}${token ? `&nextToken=${encodeURIComponent(token)}` : ''}`,
      );
      setItems((old) => (token ? [...(old ?? []), ...page] : page));
      setNext(headers.get('x-next-token') ?? undefined);
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  useEffect(() => {
    void load();
  }, []);

  const start = async (id: string) => {
    setBusy(id);
    setError(undefined);
    try {
      const made = await api<{ sandboxID: string }>('POST', '/sandboxes', { templateID: id });
      navigate(`/ui/sandboxes/${made.sandboxID}`);
    } catch (e) {
      setError(errorMessage(e));
      setBusy(undefined);
    }
  };
  const remove = async (id: string) => {
    setBusy(id);
    setError(undefined);
    try {
      await api('DELETE', `/templates/${encodeURIComponent(id)}`);
      setItems((old) => old?.filter((s) => s.snapshotID !== id));
      setNote(`Deleted snapshot ${id}.`);
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(undefined);
      setConfirm(undefined);
    }
  };

  return (
    <section aria-labelledby="snapshots-title">
      <h1 id="snapshots-title">Snapshots</h1>
      <p class="hint">
        Made from a sandbox (its page’s snapshot, or <code>sandbox.createSnapshot()</code>); a sandbox started
        from one begins where it was saved.
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p aria-live="polite" class="muted">
        {note ?? ''}
      </p>
      {!items && !error && <p>Loading…</p>}
      {items && items.length === 0 && <p class="empty">No snapshots.</p>}
      {items && items.length > 0 && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Snapshots of this team, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Snapshot</th>
                <th scope="col">Names</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {items.map((s) => (
                <tr key={s.snapshotID} data-snapshot={s.snapshotID}>
                  <td>
                    <code>{s.snapshotID}</code>
                  </td>
                  <td>{s.names.length ? s.names.join(', ') : <span class="muted">—</span>}</td>
                  {writable && (
                    <td>
                      <div class="actions">
                        <button
                          type="button"
                          disabled={busy !== undefined}
                          onClick={() => start(s.snapshotID)}
                          aria-label={`New sandbox from ${s.snapshotID}`}
                        >
                          New sandbox
                        </button>
                        {confirm === s.snapshotID ? (
                          <button
                            type="button"
                            class="danger"
                            disabled={busy !== undefined}
                            onClick={() => remove(s.snapshotID)}
                            aria-label={`Confirm delete ${s.snapshotID}`}
                          >
                            Confirm delete
                          </button>
                        ) : (
                          <button
                            type="button"
                            disabled={busy !== undefined}
                            onClick={() => setConfirm(s.snapshotID)}
                            aria-label={`Delete ${s.snapshotID}`}
                          >
                            Delete
                          </button>
                        )}
                      </div>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next && (
        <button type="button" onClick={() => load(next)}>
          More snapshots
        </button>
      )}
    </section>
  );
}
