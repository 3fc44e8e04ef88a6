import type { Command } from 'commander';
import { callApi } from '../api-client.js';
import { formatTable } from '../table.js';

/** An audit entry as `GET /v1/audit` answers it. */
interface AuditEntry {
  id: string;
  time: string;
  keyId: string;
  teamId: string;
  action: string;
  targets: string[];
  status: number;
  result: 'ok' | 'error';
  clientAddress?: string;
}

/** `aiva audit`: the running server's audit log, newest first (the team's; every team's for the operator). */
export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description(
      "the audit log of mutating API calls, newest first (the key's team's; every team's for the operator)",
    )
    .option('--action <action>', 'only this action (sandbox.create, sandbox.kill, key.create …)')
    .option('--target <id>', 'only calls that named or made this id')
    .option('--limit <n>', 'at most this many entries', '50')
    .option('--cursor <token>', 'the page after this one (the next-page token a listing printed)')
    .option('--json', 'print JSON')
    .action(
      async (opts: { action?: string; target?: string; limit: string; cursor?: string; json?: boolean }) => {
        const q = new URLSearchParams({ limit: opts.limit });
        if (opts.action) q.set('action', opts.action);
        if (opts.target) q.set('target', opts.target);
        if (opts.cursor) q.set('cursor', opts.cursor);
        const page = await callApi<{ entries: AuditEntry[]; nextToken?: string }>('GET', `/v1/audit?${q}`);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
          return;
        }
        process.stdout.write(
          `${formatTable(
            ['time', 'action', 'targets', 'status', 'key', 'team', 'client'],
            page.entries.map((e) => [
              e.time,
              e.action,
              e.targets.join(',') || '-',
              `${e.status} ${e.result}`,
              e.keyId,
              e.teamId,
              e.clientAddress ?? '-',
            ]),
          )}\n`,
        );
        if (page.nextToken) process.stderr.write(`more: aiva audit --cursor ${page.nextToken}\n`);
      },
    );
}
