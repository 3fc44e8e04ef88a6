import { checkHost, VM_USER } from '@aiva/node';
import type { Command } from 'commander';
import { formatTable } from '../table.js';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check which sandbox runtimes work on this host, why not, and what to change')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const host = await checkHost();
      if (opts.json) {
        console.log(JSON.stringify(host, null, 2));
        return;
      }
      const rows = host.checks.map((c) => [
        c.driver,
        c.variant,
        c.available ? (c.degraded ? 'degraded' : 'ok') : 'no',
        c.reason + (c.fix ? `\n→ ${c.fix}` : ''),
      ]);
      const table = formatTable(
        ['runtime', 'variant', 'status', 'why'],
        rows.map((r) => r.map((x) => x.split('\n')[0] ?? '')),
      );
      const lines = table.split('\n');
      // Print each fix under its row.
      console.log(lines[0]);
      rows.forEach((r, i) => {
        console.log(lines[i + 1]);
        const fix = r[3]?.split('\n')[1];
        if (fix) console.log(`${' '.repeat(lines[0]?.indexOf('WHY') ?? 0)}${fix}`);
      });
      console.log();
      const net = host.network.map((c) => [c.name, c.ok ? 'ok' : 'no', c.detail, c.fix ?? '']);
      const netLines = formatTable(
        ['network', 'status', 'detail'],
        net.map((r) => r.slice(0, 3) as string[]),
      ).split('\n');
      console.log(netLines[0]);
      net.forEach((r, i) => {
        console.log(netLines[i + 1]);
        if (r[3]) console.log(`${' '.repeat(netLines[0]?.indexOf('DETAIL') ?? 0)}→ ${r[3]}`);
      });
      console.log();
      if (!host.defaultDriver) {
        console.log(
          'No runtime works here: aiva cannot run sandboxes until one of the fixes above is applied.',
        );
        process.exitCode = 1;
        return;
      }
      const chosen = host.checks.find((c) => c.driver === host.defaultDriver && c.available);
      console.log(
        `Default runtime: ${host.defaultDriver} (${chosen?.variant})${chosen?.degraded ? ', degraded' : ''}`,
      );
      const netMissing = host.network.filter((c) => !c.ok).map((c) => c.name);
      if (netMissing.length > 0) {
        console.log(`Sandbox networking has problems: ${netMissing.join(', ')} (see the fixes above)`);
        process.exitCode = 1;
      }
      console.log(
        host.vmUser
          ? `microVMs: QEMU drops to user ${host.vmUser} after start-up`
          : `microVMs: QEMU keeps running as root (create the ${VM_USER} system user to drop privileges)`,
      );
    });
}
