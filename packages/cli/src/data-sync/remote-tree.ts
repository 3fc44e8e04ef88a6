import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CommandExitError, type Sandbox } from 'e2b';
import { shellQuote } from '../command-line.js';
import { parseRemoteList, remoteListScript, type Tree, type TreeEntry } from './tree.js';
import type { TreePlan } from './tree-diff.js';

/** No time limit: a big tree takes as long as it takes. */
const NO_LIMIT = { timeoutMs: 0, requestTimeoutMs: 0 } as const;

/** Bytes as they pass, for progress. */
export type OnBytes = (bytes: number) => void;

/** A file in the sandbox's /tmp for one step, named so no two runs meet. */
const scratch = (what: string) => `/tmp/.aiva-data-${randomUUID()}.${what}`;

/** Runs a script in the sandbox as `user`; a failure is an Error with what it said. */
async function runScript(sbx: Sandbox, user: string, script: string): Promise<void> {
  try {
    await sbx.commands.run(script, { user, ...NO_LIMIT });
  } catch (e) {
    if (e instanceof CommandExitError)
      throw new Error(e.stderr.trim() || `a command in the sandbox failed (exit ${e.exitCode})`);
    throw e;
  }
}

/** The tree at `root` in the sandbox (one command: GNU find and sha256sum there). */
export async function remoteTree(sbx: Sandbox, user: string, root: string): Promise<Tree> {
  const out = scratch('list');
  try {
    await runScript(sbx, user, remoteListScript(root, out));
    // Read as bytes and decoded whole, so no name is cut between two chunks of output.
    const bytes = await sbx.files.read(out, { user, format: 'bytes', requestTimeoutMs: 0 });
    return parseRemoteList(Buffer.from(bytes).toString('utf8'));
  } finally {
    await sbx.files.remove(out, { user }).catch(() => undefined);
  }
}

/** NUL-ended paths, as `tar --null -T` and `xargs -0` read them. */
const nulList = (paths: readonly string[]) => Buffer.from(paths.map((p) => `${p}\0`).join(''));

/** Counts what passes through. */
const counter = (onBytes: OnBytes) =>
  new Transform({
    transform(chunk: Buffer, _enc, done) {
      onBytes(chunk.length);
      done(null, chunk);
    },
  });

/** Local GNU tar with `args`; `stdin` is written to it. */
function localTar(args: string[], stdin?: Buffer) {
  const child = spawn('tar', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const ended = new Promise<void>((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot run tar here: ${e.message}`)));
    child.once('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`tar failed (exit ${code}): ${stderr.trim()}`)),
    );
  });
  if (stdin) child.stdin.end(stdin);
  return { child, ended };
}

/**
 * Makes the sandbox's `root` match the plan: the entries to send go as one tar stream
 * (made here by GNU tar from `localRoot`, written to a file in the sandbox), then one
 * command there removes what is in the way or gone and unpacks it, keeping modes.
 */
export async function pushTree(
  sbx: Sandbox,
  user: string,
  localRoot: string,
  root: string,
  plan: TreePlan,
  onBytes: OnBytes,
): Promise<void> {
  const tarFile = scratch('tar');
  const removeFile = scratch('remove');
  const scratchFiles = `${shellQuote(tarFile)} ${shellQuote(removeFile)}`;
  // The script removes its scratch files however it ends; until it runs, we do.
  const lines = [
    `trap 'rm -f -- ${scratchFiles.replaceAll("'", `'\\''`)}' EXIT`,
    'set -e',
    `mkdir -p -- ${shellQuote(root)}`,
    `cd -- ${shellQuote(root)}`,
  ];
  let ran = false;
  try {
    const gone = [...plan.clear, ...plan.remove];
    if (gone.length > 0) {
      await sbx.files.write(removeFile, new Blob([nulList(gone)]), { user, requestTimeoutMs: 0 });
      lines.push(`xargs -0 -r rm -rf -- < ${shellQuote(removeFile)}`);
    }
    if (plan.send.length > 0) {
      const tar = localTar(
        ['-c', '-f', '-', '--format=posix', '--no-recursion', '-C', localRoot, '--null', '-T', '-'],
        nulList(plan.send.map((e) => e.path)),
      );
      const body = Readable.toWeb(tar.child.stdout.pipe(counter(onBytes))) as ReadableStream<Uint8Array>;
      await Promise.all([sbx.files.write(tarFile, body, { user, requestTimeoutMs: 0 }), tar.ended]);
      lines.push(`tar -x -p --no-same-owner -f ${shellQuote(tarFile)}`);
    }
    // Run even with nothing to move: an empty tree pushed makes its directory there.
    ran = true;
    await runScript(sbx, user, lines.join('\n'));
  } finally {
    if (!ran) await runScript(sbx, user, `rm -f -- ${scratchFiles}`).catch(() => undefined);
  }
}

/**
 * Makes the local `localRoot` hold the plan's entries from the sandbox's `root`: a tar
 * of them made there (one command), streamed here into GNU tar, which keeps modes and
 * links. What is in the way is removed first; nothing else here is deleted.
 */
export async function pullTree(
  sbx: Sandbox,
  user: string,
  root: string,
  localRoot: string,
  plan: TreePlan,
  onBytes: OnBytes,
): Promise<void> {
  await mkdir(localRoot, { recursive: true });
  for (const path of plan.clear) await rm(join(localRoot, path), { recursive: true, force: true });
  if (plan.send.length === 0) return;
  const tarFile = scratch('tar');
  const listFile = scratch('list');
  try {
    await sbx.files.write(listFile, new Blob([nulList(plan.send.map((e: TreeEntry) => e.path))]), {
      user,
      requestTimeoutMs: 0,
    });
    await runScript(
      sbx,
      user,
      `cd -- ${shellQuote(root)} && tar -c -f ${shellQuote(tarFile)} --format=posix --no-recursion --null -T ${shellQuote(listFile)}`,
    );
    const stream = await sbx.files.read(tarFile, { user, format: 'stream', requestTimeoutMs: 0 });
    const tar = localTar(['-x', '-p', '--no-same-owner', '-f', '-', '-C', localRoot]);
    await Promise.all([
      pipeline(Readable.fromWeb(stream as never), counter(onBytes), tar.child.stdin),
      tar.ended,
    ]);
  } finally {
    await runScript(sbx, user, `rm -f -- ${shellQuote(tarFile)} ${shellQuote(listFile)}`).catch(
      () => undefined,
    );
  }
}
