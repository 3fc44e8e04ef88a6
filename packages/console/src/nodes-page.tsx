import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Session } from './api.js';
import { when } from './format.js';

interface NodeInfo {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
  aivaVersion: string;
  lastSeenAt: string | null;
  sandboxes: number;
  mode: string;
  capacity: Record<string, number> | null;
  free: Record<string, number> | null;
}

/** `memoryMiB: 1024 of 4096 free`-style lines of a node's capacity. */
function capacityOf(n: NodeInfo): string[] {
  if (!n.capacity) return [];
  return Object.entries(n.capacity).map(([k, total]) => {
    const free = n.free?.[k];
    return `${k}: ${free === undefined ? '?' : free} of ${total} free`;
  });
}

/**
 * The cluster's nodes (aiva's `/v1/nodes`, operator team only): state, capacity and
 * sandboxes; cordon (no new sandboxes), uncordon, drain (its sandboxes move or end).
 * For anyone else the page says it is the operators' and asks nothing of the server.
 */
export function NodesPage(props: { session: Session }) {
  const allowed = props.session.operator === true && props.session.nodes === true;
  const [nodes, setNodes] = useState<NodeInfo[]>();
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<string>();

  const load = () => api<NodeInfo[]>('GET', '/v1/nodes').then(setNodes, (e) => setError(errorMessage(e)));
  useEffect(() => {
    if (allowed) void load();
  }, [allowed]);

  if (!allowed)
    return (
      <section aria-labelledby="nodes-title">
        <h1 id="nodes-title">Nodes</h1>
        <p>
          {props.session.operator !== true
            ? 'Operators only: the cluster’s nodes are for keys of the operator team.'
            : 'This server runs on its own node (not a cluster): there are no nodes to manage.'}
        </p>
      </section>
    );

  const act = async (n: NodeInfo, action: 'cordon' | 'uncordon' | 'drain') => {
    setBusy(true);
    setError(undefined);
    try {
      await api('POST', `/v1/nodes/${encodeURIComponent(n.id)}/${action}`, {});
      await load();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
      setConfirm(undefined);
    }
  };

  return (
    <section aria-labelledby="nodes-title">
      <h1 id="nodes-title">Nodes</h1>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!nodes && !error && <p>Loading…</p>}
      {nodes && (
        <div class="table-wrap">
          <table>
            <caption class="visually-hidden">Nodes of the cluster</caption>
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">State</th>
                <th scope="col">Capacity</th>
                <th scope="col">Sandboxes</th>
                <th scope="col">Last seen</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {nodes.map((n) => (
                <tr key={n.id} data-node={n.name}>
                  <td>
                    {n.name} <code>{n.id}</code>
                    <div class="muted">
                      aiva {n.aivaVersion}, {n.mode}
                    </div>
                  </td>
                  <td>
                    <span class={`state state-${n.state}`}>{n.state}</span>
                  </td>
                  <td>
                    <ul class="metadata">
                      {capacityOf(n).map((l) => (
                        <li key={l}>{l}</li>
                      ))}
                    </ul>
                  </td>
                  <td>{n.sandboxes}</td>
                  <td>{when(n.lastSeenAt)}</td>
                  <td>
                    <div class="actions">
                      {n.state === 'ready' ? (
                        <button
                          type="button"
                          disabled={busy}
                          onClick={() => act(n, 'cordon')}
                          aria-label={`Cordon ${n.name}`}
                        >
                          Cordon
                        </button>
                      ) : (
                        <button
                          type="button"
                          disabled={busy}
                          onClick={() => act(n, 'uncordon')}
                          aria-label={`Uncordon ${n.name}`}
                        >
                          Uncordon
                        </button>
                      )}
                      {n.state !== 'draining' &&
                        (confirm === n.id ? (
                          <button
                            type="button"
                            class="danger"
                            disabled={busy}
                            onClick={() => act(n, 'drain')}
                            aria-label={`Confirm drain ${n.name}`}
                          >
                            Confirm drain
                          </button>
                        ) : (
                          <button
                            type="button"
                            disabled={busy}
                            onClick={() => setConfirm(n.id)}
                            aria-label={`Drain ${n.name}`}
                          >
                            Drain
                          </button>
                        ))}
                    </div>
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
