import type { TeamInfo, TeamQuota } from '@aiva/server';
import { type Command, InvalidArgumentError } from 'commander';
import { callApi } from '../api-client.js';
import { formatTable } from '../table.js';

/** The quota options, each with its field and what it limits. */
const QUOTA_OPTIONS: [flag: string, field: keyof TeamQuota, what: string][] = [
  ['--max-sandboxes <n>', 'maxSandboxes', 'sandboxes alive at once (creating, running or paused)'],
  ['--max-vcpus <n>', 'maxVcpus', 'vCPUs of the running sandboxes together'],
  ['--max-memory <MiB>', 'maxMemoryMiB', 'memory (MiB) of the running sandboxes together'],
  ['--max-disk <MiB>', 'maxDiskMiB', 'disk (MiB) of the live sandboxes together'],
  ['--creates-per-minute <n>', 'createsPerMinute', 'sandboxes created in any 60 s'],
  ['--requests-per-second <n>', 'requestsPerSecond', 'API requests a second, per API key'],
  ['--max-lifetime <s>', 'maxLifetimeS', 'the longest timeout (s) a sandbox may be given'],
];

/** A quota's value: a whole number from 1, or `none` to clear it. */
function limit(v: string): number | null {
  if (v === 'none') return null;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new InvalidArgumentError('a whole number from 1, or "none" to clear it');
  return n;
}

function withQuotaOptions(cmd: Command): Command {
  for (const [flag, , what] of QUOTA_OPTIONS) cmd.option(flag, `${what} ("none" clears it)`, limit);
  return cmd;
}

/** The quota fields the options set (commander names `--max-memory` `maxMemory`, …). */
function quotaFrom(opts: Record<string, unknown>): Partial<TeamQuota> {
  const quota: Partial<TeamQuota> = {};
  for (const [flag, field] of QUOTA_OPTIONS) {
    const key = (flag.split(' ')[0] as string)
      .slice(2)
      .replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    if (opts[key] !== undefined) quota[field] = opts[key] as number | null;
  }
  return quota;
}

const shown = (v: number | null) => (v === null ? '-' : String(v));

export function registerTeamCommands(program: Command): void {
  const teams = program
    .command('teams')
    .description('teams and their quotas (through the running server; the operator team manages them)');

  teams
    .command('ls')
    .description('list teams and their quotas (every team for the operator team, your own otherwise)')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await callApi<TeamInfo[]>('GET', '/v1/teams');
      if (opts.json) {
        console.log(JSON.stringify(list, null, 2));
        return;
      }
      console.log(
        formatTable(
          [
            'id',
            'name',
            'sandboxes',
            'vcpus',
            'memory MiB',
            'disk MiB',
            'creates/min',
            'req/s',
            'lifetime s',
          ],
          list.map((t) => [
            t.operator ? `${t.id} (operator)` : t.id,
            t.name,
            ...[
              t.quota.maxSandboxes,
              t.quota.maxVcpus,
              t.quota.maxMemoryMiB,
              t.quota.maxDiskMiB,
              t.quota.createsPerMinute,
              t.quota.requestsPerSecond,
              t.quota.maxLifetimeS,
            ].map(shown),
          ]),
        ),
      );
    });

  withQuotaOptions(
    teams
      .command('create')
      .description('create a team (with quotas) and print its first API key (it is not shown again)')
      .argument('<name>'),
  ).action(async (name: string, opts: Record<string, unknown>) => {
    const quota = quotaFrom(opts);
    const { teamId, key } = await callApi<{ teamId: string; key: string }>('POST', '/v1/teams', {
      name,
      ...(Object.keys(quota).length > 0 ? { quota } : {}),
    });
    process.stderr.write(`created team ${teamId} (${name}); its key is not shown again:\n`);
    console.log(key);
  });

  withQuotaOptions(
    teams
      .command('set-quota')
      .description('set quotas of a team (by id or name); those not given keep their value')
      .argument('<team>'),
  ).action(async (team: string, opts: Record<string, unknown>) => {
    const quota = quotaFrom(opts);
    if (Object.keys(quota).length === 0) throw new Error('give at least one quota option (see --help)');
    const all = await callApi<TeamInfo[]>('GET', '/v1/teams');
    const matches = all.filter((t) => t.id === team || t.name === team);
    const byId = matches.find((t) => t.id === team);
    if (!byId && matches.length > 1)
      throw new Error(`${matches.length} teams are named "${team}": use its id`);
    const target = byId ?? matches[0];
    if (!target) throw new Error(`team ${team} not found`);
    const changed = await callApi<TeamInfo>('PATCH', `/v1/teams/${encodeURIComponent(target.id)}`, { quota });
    console.log(
      `${changed.id} (${changed.name}): ${QUOTA_OPTIONS.map(([flag, field]) => `${flag.split(' ')[0]} ${shown(changed.quota[field])}`).join(' ')}`,
    );
  });
}
