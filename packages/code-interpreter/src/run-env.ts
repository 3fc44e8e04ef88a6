// Per-run and sandbox environment variables reach a kernel as code, as E2B's server does:
// a kernel started before the sandbox's create (the template's start command, a snapshot,
// a warm pool) cannot have them in its process environment.

/** A string literal JSON, Python and JavaScript read alike. */
const literal = (s: string): string => JSON.stringify(s);

/** The languages whose kernels this server can set environment variables in. */
export const ENV_LANGUAGES = ['python', 'javascript', 'typescript'];

const isJs = (language: string) => language === 'javascript' || language === 'typescript';

function unsupported(language: string): Error {
  return new Error(`env_vars are supported for ${ENV_LANGUAGES.join(', ')} only, not "${language}"`);
}

/** Code that sets `vars` in the kernel's environment ('' when there is nothing to set). */
export function envSetCode(language: string, vars: Record<string, string>): string {
  const entries = Object.entries(vars);
  if (entries.length === 0) return '';
  if (isJs(language)) return entries.map(([k, v]) => `process.env[${literal(k)}] = ${literal(v)};`).join(' ');
  if (language !== 'python') throw unsupported(language);
  return `import os as __aiva_os; ${entries.map(([k, v]) => `__aiva_os.environ[${literal(k)}] = ${literal(v)}`).join('; ')}; del __aiva_os`;
}

/** Code that puts back what `vars` changed: the sandbox's value, or no variable. */
export function envRestoreCode(
  language: string,
  vars: Record<string, string>,
  sandbox: Record<string, string>,
): string {
  const keys = Object.keys(vars);
  if (keys.length === 0 || !ENV_LANGUAGES.includes(language)) return '';
  if (isJs(language))
    return keys
      .map((k) =>
        k in sandbox
          ? `process.env[${literal(k)}] = ${literal(sandbox[k] as string)};`
          : `delete process.env[${literal(k)}];`,
      )
      .join(' ');
  const steps = keys.map((k) =>
    k in sandbox
      ? `__aiva_os.environ[${literal(k)}] = ${literal(sandbox[k] as string)}`
      : `__aiva_os.environ.pop(${literal(k)}, None)`,
  );
  return `import os as __aiva_os; ${steps.join('; ')}; del __aiva_os`;
}
