import type { UsageReport } from '@aiva/server';
import { type Command, InvalidArgumentError } from 'commander';
import { apiTarget, callApi } from '../api-client.js';
import { formatTable } from '../table.js';

interface UsageOptions {
  from?: string;
  to?: string;
  groupBy: string;
  team?: string;
  csv?: boolean;
}

const date = (name: string) => (v: string) => {
  if (Number.isNaN(Date.parse(v))) throw new InvalidArgumentError(`${name} must be a date, e.g. 2026-11-01`);
  return new Date(v).toISOString();
};

const groupBy = (v: string) => {
  if (!['sandbox', 'template', 'day'].includes(v))
    throw new InvalidArgumentError('group-by is sandbox, template or day');
  return v;
};

const num = (n: number, digits = 1) => n.toFixed(digits);

/** `aiva usage`: the running server's usage report (GET /v1/usage), as a table or CSV. */
export function registerUsageCommand(program: Command): void {
  program
    .command('usage')
    .description('metered usage and its cost (the operator’s key: every team’s)')
    .option('--from <date>', 'from (default: the start of this UTC month)', date('from'))
    .option('--to <date>', 'to (default: now)', date('to'))
    .option('--group-by <what>', 'sandbox, template or day', groupBy, 'sandbox')
    .option('--team <id>', 'one team only (the operator)')
    .option('--csv', 'print CSV')
    .action(async (opts: UsageOptions) => {
      const q = new URLSearchParams({ groupBy: opts.groupBy });
      if (opts.from) q.set('from', opts.from);
      if (opts.to) q.set('to', opts.to);
      if (opts.team) q.set('teamID', opts.team);
      if (opts.csv) {
        q.set('format', 'csv');
        const { apiUrl, apiKey } = await apiTarget();
        const res = await fetch(`${apiUrl}/v1/usage?${q}`, { headers: { 'x-api-key': apiKey } });
        const text = await res.text();
        if (!res.ok)
          throw new Error((JSON.parse(text || '{}') as { message?: string }).message ?? `HTTP ${res.status}`);
        process.stdout.write(text);
        return;
      }
      const r = await callApi<UsageReport>('GET', `/v1/usage?${q}`);
      const rows = r.items.map((i) => [
        i.teamID,
        i.sandboxID ?? i.templateID ?? i.day ?? '',
        String(i.vcpus),
        num(i.vcpuSeconds),
        num(i.memoryGiBSeconds),
        num(i.diskGiBSeconds),
        num(i.cpuSeconds),
        String(i.egressBytes),
        num(i.cost, 4),
      ]);
      const t = r.total;
      rows.push([
        'total',
        '',
        '',
        num(t.vcpuSeconds),
        num(t.memoryGiBSeconds),
        num(t.diskGiBSeconds),
        num(t.cpuSeconds),
        String(t.egressBytes),
        num(t.cost, 4),
      ]);
      console.log(
        `usage ${r.from} … ${r.to} (cost in ${r.currency}; free tier ${num(t.freeTier, 4)} off ${num(t.grossCost, 4)})`,
      );
      console.log(
        formatTable(
          ['team', opts.groupBy, 'vcpus', 'vcpu-s', 'mem GiB-s', 'disk GiB-s', 'cpu-s', 'egress B', 'cost'],
          rows,
        ),
      );
    });
}
