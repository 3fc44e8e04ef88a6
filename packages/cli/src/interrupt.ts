/**
 * An AbortSignal that fires on the first Ctrl-C or SIGTERM, so that work in progress
 * can clean up; a second Ctrl-C exits at once.
 */
export function interruptSignal(onInterrupt?: () => void): AbortSignal {
  const controller = new AbortController();
  const handler = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(130);
    onInterrupt?.();
    process.stderr.write(
      `\naiva: ${sig === 'SIGINT' ? 'interrupted' : 'terminated'}, cleaning up (Ctrl-C again to quit now)\n`,
    );
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return controller.signal;
}
