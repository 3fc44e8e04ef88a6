import { constants } from 'node:os';

/**
 * One argument quoted for a POSIX shell: in single quotes, where nothing is special, with
 * each `'` written as `'\''` (close the quotes, an escaped quote, reopen them).
 */
export function shellQuote(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** An argv as one shell command line that gives the command exactly these arguments. */
export function shellQuoteArgv(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

/**
 * The command line that runs `argv` exactly, as `docker run` would, under the shell envd
 * starts for a command (`bash -l -c`, so the user's login environment and PATH): the
 * shell `exec`s the program, so its exit code (or the signal that killed it) is the
 * command's. A program that is not there fails with a clear message and exit code 127,
 * as in a shell; one that is there but cannot run gets bash's message and 126.
 */
export function sandboxCommandLine(argv: readonly string[]): string {
  const [program] = argv;
  if (program === undefined) throw new Error('no command to run');
  const p = shellQuote(program);
  const notFound = `printf 'aiva: %s: command not found in the sandbox\\n' ${p} >&2; exit 127`;
  // `type -P` finds executable files only (not builtins, as exec would not run them); a
  // path that exists but is not executable goes on to exec, which says why (126).
  return [
    `type -P -- ${p} >/dev/null || case ${p} in */*) test -e ${p} ;; *) false ;; esac || { ${notFound}; }`,
    `exec -- ${shellQuoteArgv(argv)}`,
  ].join('\n');
}

/**
 * The exit code a shell would give for a command's end: its own exit code, or 128 plus
 * the number of the signal that killed it (SIGKILL → 137).
 */
export function shellExitCode(end: { exitCode: number; signal?: NodeJS.Signals }): number {
  if (end.signal) return 128 + (constants.signals[end.signal] ?? 0);
  // envd says -1 for a command that did not exit by itself and names no signal we know.
  return end.exitCode >= 0 ? end.exitCode : 255;
}
