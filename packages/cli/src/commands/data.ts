import { resolve } from 'node:path';
import { Argument, type Command } from 'commander';
import { pullTree, pushTree, remoteTree } from '../data-sync/remote-tree.js';
import { localTree, remotePath } from '../data-sync/tree.js';
import { planTransfer, type TreePlan } from '../data-sync/tree-diff.js';
import { connectEnvironment } from '../environment-target.js';

type Direction = 'push' | 'pull' | 'sync';

interface DataOptions {
  json?: boolean;
  dryRun?: boolean;
  user: string;
}

/** `1.2 MB`, for people. */
function size(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let n = bytes;
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/**
 * Bytes of the archive moved so far, on one line of a terminal's stderr (nothing when it
 * is not one), after the files and bytes the plan moves.
 */
function progress(plan: TreePlan, what: string): { onBytes: (n: number) => void; done(): void } {
  if (!process.stderr.isTTY || plan.send.length === 0)
    return { onBytes: () => undefined, done: () => undefined };
  let moved = 0;
  let shown = 0;
  const files = `${plan.sent} file${plan.sent === 1 ? '' : 's'}, ${size(plan.bytes)}`;
  const show = () => {
    process.stderr.write(`\r${what} (${files}): ${size(moved)} sent\u001b[K`);
    shown = Date.now();
  };
  show();
  return {
    onBytes(n) {
      moved += n;
      if (Date.now() - shown > 200) show();
    },
    done() {
      show();
      process.stderr.write('\n');
    },
  };
}

/** The summary `--json` prints, and its one line for people. */
function summary(direction: Direction, plan: TreePlan, dryRun: boolean) {
  const moved = direction === 'pull' ? 'downloaded' : 'uploaded';
  return {
    [moved]: plan.sent,
    added: plan.added,
    deleted: plan.removed,
    unchanged: plan.unchanged,
    bytes: plan.bytes,
    ...(dryRun ? { dryRun: true } : {}),
  };
}

async function transfer(direction: Direction, target: string, from: string, to: string, opts: DataOptions) {
  const local = resolve(direction === 'pull' ? to : from);
  const remote = remotePath(direction === 'pull' ? from : to);
  // The local side first: a push of what is not there fails before reaching the sandbox.
  const localSide = direction === 'pull' ? undefined : await localTree(local);
  const { sandbox, label } = await connectEnvironment(target);
  const remoteSide = await remoteTree(sandbox, opts.user, remote);
  const plan =
    direction === 'pull'
      ? planTransfer(remoteSide, await localTree(local, true), false)
      : planTransfer(localSide ?? remoteSide, remoteSide, direction === 'sync');
  const skipped = direction === 'pull' ? remoteSide.skipped : (localSide?.skipped ?? []);
  for (const path of skipped)
    process.stderr.write(`aiva: skipped ${path}: not a file, directory or symbolic link\n`);

  if (opts.dryRun) {
    if (!opts.json) {
      for (const e of plan.send) if (e.type !== 'dir') process.stdout.write(`send   ${e.path}\n`);
      for (const path of plan.remove) process.stdout.write(`delete ${path}\n`);
    }
  } else {
    const where = direction === 'pull' ? `${label}:${remote} → ${local}` : `${local} → ${label}:${remote}`;
    const shown = progress(plan, `${direction} ${where}`);
    if (direction === 'pull') await pullTree(sandbox, opts.user, remote, local, plan, shown.onBytes);
    else await pushTree(sandbox, opts.user, local, remote, plan, shown.onBytes);
    shown.done();
  }
  const result = summary(direction, plan, opts.dryRun === true);
  if (opts.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else {
    const verb = direction === 'pull' ? 'downloaded' : 'uploaded';
    process.stdout.write(
      `${opts.dryRun ? 'would have ' : ''}${verb} ${plan.sent} (${plan.added} new, ${size(plan.bytes)}), ` +
        `deleted ${plan.removed}, unchanged ${plan.unchanged}\n`,
    );
  }
}

/**
 * `aiva data <name|sandbox-id> push|pull|sync`: moves directory trees between here and an
 * environment (or any running sandbox of the key's team), only what differs (size,
 * sha256, mode, link target), as one tar stream each way.
 */
export function registerDataCommands(program: Command): void {
  program
    .command('data')
    .description(
      'move directory trees between here and an environment (or a sandbox): only changed files move',
    )
    .argument('<name|sandbox-id>', 'an environment name (aiva init) or a running sandbox id')
    .addArgument(
      new Argument(
        '<action>',
        'push <local> <remote> | pull <remote> <local> | sync <local> <remote>',
      ).choices(['push', 'pull', 'sync']),
    )
    .argument('<from>', 'push and sync: a local directory; pull: a directory there')
    .argument('<to>', 'push and sync: a directory there; pull: a local directory (made if missing)')
    .option('--json', 'print a summary as JSON: {uploaded|downloaded, added, deleted, unchanged, bytes}')
    .option('--dry-run', 'only say what would move and what would be deleted')
    .option('-u, --user <name>', 'the sandbox user that reads and writes there', 'user')
    .addHelpText(
      'after',
      `
  push   copy a local directory tree there: new and changed files only; deletes nothing
  pull   copy a directory tree from there here: new and changed files only; deletes nothing
  sync   a push that also DELETES remote files and directories that are not here

Remote paths that are relative are under /data (the environment's data volume); a path
with a ".." segment is refused. Files are compared by size, sha256 and mode, and only
those that differ move, as one tar stream. Symbolic links are copied as links (their
target as written, never followed); sockets, fifos and devices are skipped. Files arrive
owned by --user. A stopped environment is refused: aiva start it first.`,
    )
    .action(async (target: string, direction: Direction, from: string, to: string, opts: DataOptions) => {
      await transfer(direction, target, from, to, opts);
    });
}
