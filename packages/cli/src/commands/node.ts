import type { Command } from 'commander';
import { callApi } from '../api-client.js';
import { formatTable } from '../table.js';
import { registerNodeAdminCommands } from './node-admin.js';
import { registerNodeJoinCommand } from './node-join.js';

/** A join token as the server lists it (`GET /v1/node-tokens`): no secret. */
interface NodeTokenInfo {
  id: string;
  name: string;
  prefix: string;
  state: 'active' | 'expired' | 'revoked';
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

/** `90s`, `15m`, `24h`, `7d`, `2w` → seconds; anything else is an error that says what is expected. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhdw])$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * (UNIT_SECONDS[m[2] as string] ?? 0) : 0;
  if (!Number.isSafeInteger(seconds) || seconds <= 0)
    throw new Error(
      `--expires-in ${JSON.stringify(text)}: expected a positive number and a unit s, m, h, d or w (24h)`,
    );
  return seconds;
}

/**
 * `aiva node …`: the cluster's nodes. `join` runs this host's node agent; the rest —
 * join tokens (`token create|ls|rm`) and the nodes (`ls`, `cordon`, `uncordon`, `drain`,
 * `rm`) — go through the running server's API with an operator key.
 */
export function registerNodeCommands(program: Command): Command {
  const node = program.command('node').description('the nodes of a cluster and the tokens they join with');
  registerNodeTokenCommands(node);
  registerNodeJoinCommand(node);
  registerNodeAdminCommands(node);
  return node;
}

function registerNodeTokenCommands(node: Command): void {
  const token = node
    .command('token')
    .description(
      'tokens a node joins the cluster with (`aiva node join <url> --token …`), through the running server (operator team key)',
    );

  token
    .command('create')
    .description('create a join token and print it (it is not shown again; the server keeps only its hash)')
    .option('--name <name>', 'what the token is for, to tell tokens apart')
    .option('--expires-in <duration>', 'refuse it after this long: 90s, 15m, 24h, 7d, 2w (default: never)')
    .action(async (opts: { name?: string; expiresIn?: string }) => {
      const expiresInSeconds = opts.expiresIn === undefined ? undefined : parseDuration(opts.expiresIn);
      const { token: secret, info } = await callApi<{ token: string; info: NodeTokenInfo }>(
        'POST',
        '/v1/node-tokens',
        { name: opts.name, expiresInSeconds },
      );
      const expiry = info.expiresAt ? `expires ${info.expiresAt}` : 'does not expire';
      process.stderr.write(
        `created node token ${info.id}${info.name ? ` (${info.name})` : ''}; it ${expiry} and is not shown again:\n`,
      );
      process.stdout.write(`${secret}\n`);
    });

  token
    .command('ls')
    .description('list join tokens (active and expired; their prefixes only)')
    .option('--all', 'revoked tokens too')
    .option('--json', 'print JSON')
    .action(async (opts: { all?: boolean; json?: boolean }) => {
      const rows = await callApi<NodeTokenInfo[]>('GET', `/v1/node-tokens${opts.all ? '?revoked=true' : ''}`);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `${formatTable(
          ['id', 'name', 'token', 'state', 'created', 'expires', 'last used'],
          rows.map((t) => [
            t.id,
            t.name || '-',
            t.prefix,
            t.state,
            t.createdAt,
            t.expiresAt ?? 'never',
            t.lastUsedAt ?? '-',
          ]),
        )}\n`,
      );
    });

  token
    .command('rm')
    .description('revoke join tokens by id: no node joins with them after this (nodes that joined stay)')
    .argument('<id...>')
    .action(async (ids: string[]) => {
      for (const id of ids) {
        await callApi('DELETE', `/v1/node-tokens/${encodeURIComponent(id)}`);
        process.stdout.write(`revoked ${id}\n`);
      }
    });
}
