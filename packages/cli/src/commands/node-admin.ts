import type { Command } from 'commander';
import { callApi } from '../api-client.js';
import { formatTable } from '../table.js';

/** A node as the server lists it (`GET /v1/nodes`). */
interface NodeInfo {
  id: string;
  name: string;
  state: string;
  labels: Record<string, string>;
  aivaVersion: string;
  lastSeenAt: string | null;
  sandboxes: number;
  tunnel: boolean;
  mode?: 'tunnel' | 'direct';
  direct?: { address: string; error?: string } | null;
  capacity: { cores?: number; memoryBudgetMiB?: number; diskMiB?: number } | null;
  free: { memAvailableMiB?: number; diskFreeMiB?: number } | null;
}

/** `aiva node ls | cordon | uncordon | drain | rm`: the cluster's nodes, through the server (operator key). */
export function registerNodeAdminCommands(node: Command): void {
  node
    .command('ls')
    .description("the cluster's nodes: state (ready, cordoned, draining, unreachable), capacity, sandboxes")
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const rows = await callApi<NodeInfo[]>('GET', '/v1/nodes');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `${formatTable(
          [
            'id',
            'name',
            'state',
            'tunnel',
            'mode',
            'sandboxes',
            'cores',
            'memory MiB',
            'disk free MiB',
            'labels',
            'last seen',
          ],
          rows.map((n) => [
            n.id,
            n.name,
            n.state,
            n.tunnel ? 'up' : 'down',
            // Direct mode names the listener; a node that has one but is reached through its tunnel says so.
            n.mode === 'direct'
              ? `direct ${n.direct?.address ?? ''}`
              : n.direct
                ? `tunnel (direct ${n.direct.address} unused)`
                : 'tunnel',
            String(n.sandboxes),
            String(n.capacity?.cores ?? '-'),
            String(n.capacity?.memoryBudgetMiB ?? '-'),
            String(n.free?.diskFreeMiB ?? '-'),
            Object.entries(n.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(',') || '-',
            n.lastSeenAt ?? '-',
          ]),
        )}\n`,
      );
    });
  for (const [action, what] of [
    ['cordon', 'take no new sandboxes; the ones it runs carry on'],
    ['uncordon', 'take new sandboxes again'],
    ['drain', 'take no new sandboxes while the ones it runs end'],
  ] as const)
    node
      .command(`${action} <node>`)
      .description(`${what} (node id or name)`)
      .action(async (name: string) => {
        const n = await callApi<NodeInfo>('POST', `/v1/nodes/${encodeURIComponent(name)}/${action}`);
        process.stdout.write(`${n.name} (${n.id}) is ${n.state}\n`);
      });
  node
    .command('rm <node>')
    .description('remove a node that runs no sandboxes: its credential stops working (node id or name)')
    .action(async (name: string) => {
      await callApi('DELETE', `/v1/nodes/${encodeURIComponent(name)}`);
      process.stdout.write(`removed ${name}\n`);
    });
}
