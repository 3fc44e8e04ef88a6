import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DRIVER_NAMES,
  type DriverName,
  dataDir,
  execInSandbox,
  type LocalNode,
  type SandboxInfo,
} from '@aiva/node';
import { type Command, InvalidArgumentError } from 'commander';
import { BuildProgress } from '../build-progress.js';
import { sandboxCommandLine, shellExitCode } from '../command-line.js';
import { interruptSignal } from '../interrupt.js';
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

/**
 * Runs `argv` in the sandbox as given (no shell of ours parses it), streaming its output
 * to ours as it comes; resolves to its exit code as a shell gives it (128 + signal).
 */
async function runIn(
  info: SandboxInfo,
  argv: readonly string[],
  opts: { user?: string; workdir?: string; signal?: AbortSignal } = {},
): Promise<number> {
  if (info.state !== 'running' || !info.network)
    throw new Error(`sandbox ${info.id} is ${info.state}, not running`);
  const result = await execInSandbox(info.network.address, sandboxCommandLine(argv), {
    accessToken: info.accessToken,
    user: opts.user,
    cwd: opts.workdir,
    signal: opts.signal,
    keepOutput: false,
    onStdout: (c) => process.stdout.write(c),
    onStderr: (c) => process.stderr.write(c),
  });
  return shellExitCode(result);
}

export function registerSandboxCommands(program: Command): void {
  const sandbox = program
    .command('sandbox')
    .description('sandboxes on this host, without the server (the node alone)')
    // So that `run` and `exec` can leave the options after their command to it.
    .enablePositionalOptions();

  sandbox
    .command('run')
    .description(
      'create a sandbox and print its id; with a command, run it there as given, stream its output and exit with its exit code',
    )
    .argument('[command...]', 'the program to run in the sandbox and its arguments (as with docker run)')
    .option('-t, --template <name>', 'template', 'base')
    .option(
      '-r, --runtime <name>',
      `runtime: ${DRIVER_NAMES.join(', ')} (default: the best this host has)`,
      runtimeName,
    )
    .option('--cpus <n>', 'vCPUs', positiveInt('cpus'))
    .option('--memory <MiB>', 'memory in MiB', positiveInt('memory'))
    .option('--disk <MiB>', "disk in MiB (at least the template's)", positiveInt('disk'))
    .option('-e, --env <NAME=VALUE>', 'environment variable for the sandbox (repeatable)', envPair)
    .option('--rm', 'kill the sandbox once the command has run')
    // Options after the command are the command's: `aiva sandbox run --rm ls -la`.
    .passThroughOptions()
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
        const create = async (node: LocalNode) => {
          const progress = new BuildProgress(process.stderr);
          try {
            return await node.sandboxes.create({
              template: opts.template,
              driver: opts.runtime,
              vcpus: opts.cpus,
              memoryMiB: opts.memory,
              diskMiB: opts.disk,
              envd: { envVars: opts.env },
              reporter: progress,
            });
          } finally {
            progress.close();
          }
        };
        if (command.length === 0) {
          const info = await withLocalNode(create);
          console.log(info.id);
          if (opts.rm) process.stderr.write('aiva: --rm without a command: the sandbox is kept\n');
          return;
        }
        if (!opts.rm) {
          const info = await withLocalNode(create);
          process.stderr.write(`sandbox ${info.id} (${info.driver})\n`);
          process.exitCode = await runIn(info, command);
          return;
        }
        // With --rm the node stays open while the command runs, so that nothing else can
        // take this host's node in between and keep us from killing the sandbox after.
        await withLocalNode(async (node) => {
          const info = await create(node);
          const interrupted = interruptSignal();
          process.stderr.write(`sandbox ${info.id} (${info.driver})\n`);
          try {
            process.exitCode = await runIn(info, command, { signal: interrupted });
          } catch (e) {
            if (!interrupted.aborted) throw e;
            process.exitCode = 130;
            throw new Error(`interrupted: killed sandbox ${info.id}`);
          } finally {
            await node.sandboxes.kill(info.id);
          }
        });
      },
    );

  sandbox
    .command('exec')
    .description('run a command in a sandbox (through its envd) as given, and exit with its exit code')
    .argument('<id>')
    .argument('<command...>', 'the program to run and its arguments (as with docker exec)')
    .option('-u, --user <name>', "the sandbox user (default: the template's)")
    .option('-w, --workdir <dir>', 'working directory')
    // Options after the sandbox id are the command's: `aiva sandbox exec <id> ls -la`.
    .passThroughOptions()
    .action(async (id: string, command: string[], opts: { user?: string; workdir?: string }) => {
      // What follows the id is passed on as it is, a `--` after the id included.
      const argv = command[0] === '--' ? command.slice(1) : command;
      if (argv.length === 0)
        throw new Error('no command to run: aiva sandbox exec <id> -- <command> [args…]');
      const info = await withLocalNode(async (node) => node.sandboxes.get(id));
      process.exitCode = await runIn(info, argv, opts);
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
