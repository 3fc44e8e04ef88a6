import type { TemplateImage } from '../image/image-types.js';
import { execInSandbox, startInSandbox } from './envd-client.js';

/** A template's start command ended, or its ready check did not pass in time. */
export class TemplateStartError extends Error {
  override name = 'TemplateStartError';
}

/** How often the ready check runs while a create waits for it. */
const READY_INTERVAL_MS = 200;

/**
 * Runs the template's start command in a new sandbox (as the template's user, in its
 * workdir, with the build's environment) and waits for its ready check to exit 0. The
 * command goes on running under envd; a create from a template with none returns at once.
 * Before envd's /init (a VM snapshot being made) there is no access token: pass ''.
 */
export async function startTemplate(
  address: string,
  accessToken: string,
  template: Pick<TemplateImage, 'start' | 'defaults'>,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const start = template.start;
  if (!start) return;
  const common = {
    user: template.defaults.user,
    cwd: template.defaults.workdir,
    envs: start.env ?? {},
    accessToken,
    signal: options.signal,
  };
  const started = await startInSandbox(address, start.cmd, common);
  try {
    if (!start.ready) return;
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const check = await execInSandbox(address, start.ready, {
        ...common,
        timeoutMs: Math.max(1000, deadline - Date.now()),
      }).catch((e: Error) => ({ exitCode: -1, status: e.message }));
      if (check.exitCode === 0) return;
      const ended = await Promise.race([
        started.ended,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), READY_INTERVAL_MS)),
      ]);
      if (ended !== undefined)
        throw new TemplateStartError(
          `the start command \`${start.cmd}\` ended (${ended}) before its ready check passed; its last output:\n${started.tail()}`,
        );
      if (Date.now() > deadline)
        throw new TemplateStartError(
          `the ready check \`${start.ready}\` did not pass within ${options.timeoutMs} ms (last: ${check.status}); the start command's last output:\n${started.tail()}`,
        );
    }
  } finally {
    started.release();
  }
}
