import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DRIVER_NAMES, type DriverName, dataDir, execInSandbox, type SandboxInfo } from '@aiva/node';
import { type Command, InvalidArgumentError } from 'commander';
import { BuildProgress } from '../build-progress.js';
import { withLocalNode } from '../local-node.js';
import { formatTable } from '../table.js';

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new InvalidArgumentError(`${name} must be a positive whole number`);
  return n;
};

const runtimeName = (v: string): DriverName => {
  if (!(DRIVER_NAMES as readonly string[]).includes(v)) {
    throw new InvalidArgumentError(`runtime must be one of ${DRIVER_NAMES.join(', ')}`);
  }
  return v as DriverName;
};

const envPair = (v: string, acc: Record<string, string> = {}) => {
  const eq = v.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`--env takes NAME=VALUE, not ${v}`);
  return { ...acc, [v.slice(0, eq)]: v.slice(eq + 1) };
};

/** Runs `command` in the sandbox, streaming its output to ours; resolves to its exit code. */
async function runIn(
  info: SandboxInfo,
  command: string,
  opts: { user?: string; workdir?: string } = {},
): Promise<number> {
  if (info.state !== 'running' || !info.network)
    throw new Error(`sandbox ${info.id} is ${info.state}, not running`);
  const result = await execInSandbox(info.network.address, command, {
    accessToken: info.accessToken,
    user: opts.user,
    cwd: opts.workdir,
    onStdout: (c) => process.stdout.write(c),
    onStderr: (c) => process.stderr.write(c),
  });
  return result.exitCode;
}

export function registerSandboxCommands(program: Command): void {
  const sandbox = program
    .command('sandbox')
    .description('sandboxes on this host, without the server (the node alone)');

  sandbox
    .command('run')
    .description('create a sandbox and print its id; with a command, run it there and print its output')
    .argument('[command...]', 'a command to run in the sandbox (after --)')
    .option('-t, --template <name>', 'template', 'base')
    .option(
      '-r, --runtime <name>',
      `runtime: ${DRIVER_NAMES.join(', ')} (default: the best this host has)`,
      runtimeName,
    )
    .option('--cpus <n>', 'vCPUs', positiveInt('cpus'))
    .option('--memory <MiB>', 'memory in MiB', positiveInt('memory'))
    .option('--disk <MiB>', 'disk in MiB (microVMs)', positiveInt('disk'))
    .option('-e, --env <NAME=VALUE>', 'environment variable for the sandbox (repeatable)', envPair)
    .option('--rm', 'kill the sandbox once the command has run')
    .action(
      async (
        command: string[],
        opts: {
          template: string;
          runtime?: DriverName;
          cpus?: number;
          memory?: number;
          disk?: number;
          env?: Record<string, string>;
          rm?: boolean;
        },
      ) => {
        const progress = new BuildProgress(process.stderr);
        const info = await withLocalNode((node) =>
          node.sandboxes.create({
            template: opts.template,
            driver: opts.runtime,
            vcpus: opts.cpus,
            memoryMiB: opts.memory,
            diskMiB: opts.disk,
            envd: { envVars: opts.env },
            reporter: progress,
          }),
        );
        progress.close();
        if (command.length === 0) {
          console.log(info.id);
          return;
        }
        process.stderr.write(`sandbox ${info.id} (${info.driver})\n`);
        try {
          process.exitCode = await runIn(info, command.join(' '));
        } finally {
          if (opts.rm) await withLocalNode((node) => node.sandboxes.kill(info.id));
        }
      },
    );

  sandbox
    .command('exec')
    .description('run a command in a sandbox (through its envd) and exit with its exit code')
    .argument('<id>')
    .argument('<command...>', 'the command (after --); run by bash -l -c')
    .option('-u, --user <name>', "the sandbox user (default: the template's)")
    .option('-w, --workdir <dir>', 'working directory')
    .action(async (id: string, command: string[], opts: { user?: string; workdir?: string }) => {
      const info = await withLocalNode(async (node) => node.sandboxes.get(id));
      process.exitCode = await runIn(info, command.join(' '), opts);
    });

  sandbox
    .command('ls')
    .description('list the sandboxes of this host')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const list = await withLocalNode(async (node) => node.sandboxes.list());
      if (opts.json) {
        console.log(JSON.stringify(list, null, 2));
        return;
      }
      const rows = list.map((s) => [
        s.id,
        s.driver,
        s.state,
        s.template.name,
        String(s.resources.vcpus),
        `${s.resources.memoryMiB} MiB`,
        s.network?.address ?? '-',
        s.createdAt.replace(/\.\d+Z$/, 'Z'),
      ]);
      console.log(
        formatTable(['id', 'runtime', 'state', 'template', 'cpus', 'memory', 'address', 'created'], rows),
      );
    });

  sandbox
    .command('kill')
    .description('stop sandboxes and free everything they took')
    .argument('<id...>')
    .action(async (ids: string[]) => {
      await withLocalNode(async (node) => {
        for (const id of ids) {
          await node.sandboxes.kill(id);
          console.log(`killed ${id}`);
        }
      });
    });

  sandbox
    .command('logs')
    .description("print a sandbox's console (its init and envd)")
    .argument('<id>')
    .action(async (id: string) => {
      const text = await readFile(join(dataDir(), 'sandboxes', id, 'console.log'), 'utf8').catch(() => {
        throw new Error(`sandbox ${id} has no console log (does it exist?)`);
      });
      process.stdout.write(text);
    });
}
