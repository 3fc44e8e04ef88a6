import { writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { CommandError, runCommand } from '../host/command.js';
import type { BuildReporter } from './build-reporter.js';
import type { Recipe } from './recipe.js';

/** Single-quotes `s` for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/** The script run as root inside the new root filesystem: the user, then the recipe's commands. */
export function setupScript(recipe: Recipe): string {
  const u = recipe.user;
  const lines = [
    'set -eu',
    `useradd --create-home --uid ${u.uid} --user-group --shell ${shQuote(u.shell)} ${u.name}`,
  ];
  if (u.sudo) {
    lines.push(
      `usermod --append --groups sudo ${u.name}`,
      `printf '%s\\n' ${shQuote(`${u.name} ALL=(ALL:ALL) NOPASSWD: ALL`)} > /etc/sudoers.d/90-${u.name}`,
      `chmod 0440 /etc/sudoers.d/90-${u.name}`,
    );
  }
  for (const cmd of recipe.run) lines.push(`printf '+ %s\\n' ${shQuote(cmd)}`, cmd);
  return `${lines.join('\n')}\n`;
}

/** Tracks mmdebstrap's verbose output as "k of n packages set up". */
export class AptProgress {
  total = 0;
  done = 0;
  phase = 'starting';
  /** Returns true when the line moved progress. */
  feed(line: string): boolean {
    const info = /^I: (.+?)(\.\.\.)?$/.exec(line);
    if (info?.[1]) {
      this.phase = info[1];
      return true;
    }
    const installed = /^\d+ upgraded, (\d+) newly installed/.exec(line);
    if (installed?.[1]) {
      this.total += Number(installed[1]);
      return true;
    }
    if (/^Setting up \S+/.test(line)) {
      this.done++;
      return true;
    }
    return false;
  }
}

/**
 * Builds the Debian part of a template into `target` (a new directory) with
 * mmdebstrap, inside a private mount namespace so that the /proc, /sys and /dev mounts
 * it makes in the chroot vanish with it, however it ends.
 */
export async function buildDebianRootfs(
  recipe: Recipe,
  target: string,
  work: string,
  reporter: BuildReporter,
  stepId: string,
  o: { signal?: AbortSignal; recipesDir: string },
): Promise<void> {
  const signal = o.signal;
  const script = join(work, 'setup.sh');
  await writeFile(script, setupScript(recipe), { mode: 0o755 });
  const progress = new AptProgress();
  const args = [
    '--mount',
    '--propagation',
    'private',
    '--',
    'mmdebstrap',
    '--mode=root',
    '--verbose',
    `--variant=${recipe.debian.variant}`,
    '--aptopt=Acquire::Retries "3"',
    '--dpkgopt=path-exclude=/usr/share/man/*',
    '--dpkgopt=path-exclude=/usr/share/doc/*/changelog*',
    // The recipe's files, then its setup script (user, run commands) in the chroot.
    ...Object.entries(recipe.files ?? {}).flatMap(([dest, src]) => [
      `--customize-hook=mkdir -p "$1"${shQuote(posix.dirname(dest))}`,
      // Special hooks are split at spaces: recipe paths have none (recipe.ts).
      `--customize-hook=upload ${join(o.recipesDir, src)} ${dest}`,
    ]),
    `--customize-hook=upload ${script} /tmp/aiva-setup.sh`,
    '--customize-hook=chroot "$1" /bin/sh /tmp/aiva-setup.sh',
    '--customize-hook=rm -f "$1/tmp/aiva-setup.sh"',
  ];
  if (recipe.packages.length > 0) {
    // The package list is checked against the index before anything is downloaded, so a
    // wrong name fails in seconds rather than after Debian is installed (mmdebstrap then
    // skips its own `apt-get update`).
    const apt = 'APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get -q';
    args.splice(
      args.indexOf('mmdebstrap') + 1,
      0,
      `--setup-hook=${apt} update && ${apt} --simulate install ${recipe.packages.join(' ')} >/dev/null`,
    );
    args.push(`--include=${recipe.packages.join(',')}`);
  }
  args.push(recipe.debian.suite, target, ...recipe.debian.sources);
  const recent: string[] = [];
  try {
    await runCommand('unshare', args, {
      signal,
      processGroup: true,
      displayName: 'mmdebstrap',
      onLine(line) {
        reporter.output(stepId, line);
        recent.push(line);
        if (recent.length > 400) recent.splice(0, 200);
        if (progress.feed(line)) {
          reporter.progress(stepId, progress.done, Math.max(progress.total, progress.done), progress.phase);
        }
      },
    });
  } catch (e) {
    if (!(e instanceof CommandError) || e.aborted) throw e;
    throw new Error(explainFailure(e, recent), { cause: e });
  }
}

/**
 * The reason mmdebstrap failed, told briefly: apt's and dpkg's error lines and the
 * output just before the first of them, rather than the whole log.
 */
export function explainFailure(e: CommandError, lines: string[]): string {
  const how = e.exitCode === null ? `was killed by ${e.signal}` : `exited with code ${e.exitCode}`;
  const isError = (l: string) =>
    /^(E:|dpkg: error|.*No space left on device|.*: cannot |.*not found)/.test(l);
  const first = lines.findIndex(isError);
  const context = first >= 0 ? lines.slice(Math.max(0, first - 5), first) : lines.slice(-15);
  const errors = [...new Set(lines.filter(isError))].slice(0, 10);
  return [`mmdebstrap ${how}:`, ...context, ...errors].join('\n');
}
