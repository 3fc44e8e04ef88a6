import { stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { type LogEntry, Template } from 'e2b';
import { apiTarget, callApi } from '../api-client.js';
import { interruptSignal } from '../interrupt.js';
import { formatTable } from '../table.js';
import { importTemplate } from './template-import.js';

interface ListedTemplate {
  templateID: string;
  names: string[];
  public: boolean;
  cpuCount: number;
  memoryMB: number;
  diskSizeMB: number;
  buildCount: number;
  buildStatus: string;
  createdAt: string;
}

const int = (name: string, min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
  return n;
};

/**
 * Shows a build's log: step lines (`[3/7] RUN …`, cached ones marked) always, the
 * steps' own output with --verbose; the last lines of output are kept for a failure.
 */
function buildLogPrinter(verbose: boolean) {
  const tail: string[] = [];
  return {
    onLog(entry: LogEntry) {
      const m = entry.message;
      if (/^\[(base|\d+\/\d+)\] /.test(m)) {
        const cached = / CACHED /.test(m);
        process.stderr.write(
          `  ${cached ? '✓' : '…'} ${m.replace(' CACHED ', ' ')}${cached ? ' (cached)' : ''}\n`,
        );
      } else if (verbose || entry.level === 'error') {
        process.stderr.write(`    ${m}\n`);
      } else {
        tail.push(m);
        if (tail.length > 20) tail.shift();
      }
    },
    tail: () => tail,
  };
}

async function findDockerfile(dir: string, file?: string): Promise<string> {
  const candidates = file ? [resolve(file)] : [join(dir, 'e2b.Dockerfile'), join(dir, 'Dockerfile')];
  for (const c of candidates)
    if (
      await stat(c).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      return c;
  throw new Error(`no Dockerfile: looked for ${candidates.join(', ')}`);
}

export function registerTemplateCommands(program: Command): void {
  const template = program
    .command('template')
    .description(
      'templates built through the running aiva server (E2B’s template API): build, import, ls, rm, logs',
    );

  template
    .command('build')
    .description('build a template from a Dockerfile, reusing the cached layers of unchanged steps')
    .argument('[dir]', 'the build context: COPY sources are relative to it', '.')
    .option(
      '-f, --file <dockerfile>',
      'the Dockerfile (default: <dir>/e2b.Dockerfile, then <dir>/Dockerfile)',
    )
    .option('-n, --name <name>', 'the template’s name, with an optional :tag (default: the directory’s name)')
    .option('--cpu <n>', 'vCPUs of its sandboxes', int('--cpu', 1, 64), 2)
    .option('--memory <MiB>', 'memory of its sandboxes', int('--memory', 128, 1_048_576), 1024)
    .option('-c, --start-cmd <cmd>', 'the command its sandboxes start with (instead of CMD/ENTRYPOINT)')
    .option('--ready-cmd <cmd>', 'a command that exits 0 once the start command is ready')
    .option('--no-cache', 'run every step again')
    .option('-v, --verbose', 'print every step’s output')
    .action(
      async (
        dirArg: string,
        opts: {
          file?: string;
          name?: string;
          cpu: number;
          memory: number;
          startCmd?: string;
          readyCmd?: string;
          cache: boolean;
          verbose?: boolean;
        },
      ) => {
        const dir = resolve(dirArg);
        const dockerfile = await findDockerfile(dir, opts.file);
        const name = (opts.name ?? basename(dir)).toLowerCase();
        const parsed = Template({ fileContextPath: dir }).fromDockerfile(dockerfile);
        const t = opts.startCmd
          ? parsed.setStartCmd(opts.startCmd, opts.readyCmd ?? 'true')
          : opts.readyCmd
            ? parsed.setReadyCmd(opts.readyCmd)
            : parsed;
        const { apiUrl, apiKey } = await apiTarget();
        const printer = buildLogPrinter(Boolean(opts.verbose));
        const signal = interruptSignal(() => {});
        const started = performance.now();
        process.stderr.write(`Building template ${name} from ${dockerfile} on ${apiUrl}\n`);
        try {
          const info = await Template.build(t, name, {
            apiUrl,
            apiKey,
            cpuCount: opts.cpu,
            memoryMB: opts.memory,
            skipCache: !opts.cache,
            onBuildLogs: (e) => printer.onLog(e),
            signal,
          });
          const seconds = ((performance.now() - started) / 1000).toFixed(1);
          process.stderr.write(`Template ${info.name} (${info.templateId}) ready in ${seconds} s\n`);
          process.stdout.write(`${info.templateId}\n`);
        } catch (e) {
          if (signal.aborted) {
            process.exitCode = 130;
            throw new Error(
              `building ${name} was interrupted (the build goes on on the server: aiva template logs ${name})`,
            );
          }
          const tail = printer.tail();
          if (!opts.verbose && tail.length > 0)
            process.stderr.write(`  last output:\n${tail.map((l) => `    ${l}`).join('\n')}\n`);
          throw new Error(`building ${name}: ${(e as Error).message}`);
        }
      },
    );

  template
    .command('import')
    .description('make a template of an image archive (docker save, OCI archive) or an OCI layout directory')
    .argument('<path>', 'the archive or layout directory')
    .requiredOption('-n, --name <name>', 'the template’s name')
    .option('--cpu <n>', 'vCPUs of its sandboxes', int('--cpu', 1, 64), 2)
    .option('--memory <MiB>', 'memory of its sandboxes', int('--memory', 128, 1_048_576), 1024)
    .action(async (path: string, opts: { name: string; cpu: number; memory: number }) => {
      const started = performance.now();
      process.stderr.write(`Importing ${path} as template ${opts.name}\n`);
      const id = await importTemplate(path, opts, (line) => process.stderr.write(`${line}\n`)).catch(
        (e: Error) => {
          throw new Error(`importing ${path}: ${e.message}`);
        },
      );
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      process.stderr.write(`Template ${opts.name} (${id}) ready in ${seconds} s\n`);
      process.stdout.write(`${id}\n`);
    });

  template
    .command('ls')
    .description('the templates this API key sees: its team’s, the public ones and aiva’s own')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const rows = await callApi<ListedTemplate[]>('GET', '/templates');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `${formatTable(
          ['name', 'id', 'status', 'cpu', 'memory', 'disk', 'builds', 'public'],
          rows.map((r) => [
            r.names[0] ?? '',
            r.templateID,
            r.buildStatus,
            String(r.cpuCount),
            `${r.memoryMB} MiB`,
            r.diskSizeMB ? `${r.diskSizeMB} MiB` : '-',
            String(r.buildCount),
            r.public ? 'yes' : 'no',
          ]),
        )}\n`,
      );
    });

  template
    .command('rm')
    .description('delete a template (refused while sandboxes run from it) and the layers only it used')
    .argument('<name>', 'its name or id')
    .action(async (name: string) => {
      await callApi('DELETE', `/templates/${encodeURIComponent(name)}`);
      process.stderr.write(`Deleted template ${name}\n`);
    });

  template
    .command('logs')
    .description('the log of a template’s build (its latest, or the build id given)')
    .argument('<name>', 'its name or id')
    .argument('[build]', 'a build id (default: the latest)')
    .action(async (name: string, build?: string) => {
      const t = await callApi<{ templateID: string; builds: { buildID: string }[] }>(
        'GET',
        `/templates/${encodeURIComponent(name)}`,
      );
      const buildId = build ?? t.builds[0]?.buildID;
      if (!buildId) throw new Error(`template ${name} has no builds`);
      let offset = 0;
      for (;;) {
        const s = await callApi<{
          status: string;
          logEntries: { timestamp: string; level: string; message: string }[];
        }>('GET', `/templates/${t.templateID}/builds/${buildId}/status?logsOffset=${offset}&limit=100`);
        for (const e of s.logEntries)
          process.stdout.write(`${e.timestamp} ${e.level.padEnd(5)} ${e.message}\n`);
        offset += s.logEntries.length;
        if (s.logEntries.length === 0) {
          process.stderr.write(`build ${buildId}: ${s.status}\n`);
          return;
        }
      }
    });
}
