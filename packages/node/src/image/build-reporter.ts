/** What an image build tells the person waiting for it. Rendering is the caller's job. */
export interface BuildReporter {
  /** A step begins (`running`) or is skipped because its result is cached (`cached`). */
  step(id: string, title: string, state: 'running' | 'cached'): void;
  /** How far the running step is, in its own units (packages, files …). */
  progress(id: string, done: number, total: number, detail?: string): void;
  /** A line of a tool's output, for verbose display and for the failure message. */
  output(id: string, line: string): void;
  /** The step succeeded after `seconds`. */
  finished(id: string, seconds: number): void;
}

export const silentReporter: BuildReporter = {
  step() {},
  progress() {},
  output() {},
  finished() {},
};

/** A step of a build failed; `step` names it, the message says why. */
export class ImageBuildError extends Error {
  override name = 'ImageBuildError';
  constructor(
    readonly step: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`step "${step}" failed: ${message}`, options);
  }
}

/** Runs one step with timing and error attribution. */
export async function runStep<T>(
  reporter: BuildReporter,
  id: string,
  title: string,
  body: () => Promise<T>,
): Promise<T> {
  const started = performance.now();
  reporter.step(id, title, 'running');
  try {
    const result = await body();
    reporter.finished(id, (performance.now() - started) / 1000);
    return result;
  } catch (e) {
    if (e instanceof ImageBuildError) throw e;
    throw new ImageBuildError(title, e instanceof Error ? e.message : String(e), { cause: e });
  }
}
