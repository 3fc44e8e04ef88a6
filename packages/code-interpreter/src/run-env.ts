// Per-run and sandbox environment variables reach a kernel as code, as E2B's server does:
// a kernel started before the sandbox's create (the template's start command, a snapshot,
// a warm pool) cannot have them in its process environment.

/** A string literal JSON, Python, JavaScript and R read alike (R knows \uXXXX, \n, \t, \" and \\ too). */
const literal = (s: string): string => JSON.stringify(s);

/** A bash word that is exactly `s`: single quotes, each ' written as '\''. */
const shellWord = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/** What an environment variable's name must look like for bash to export it. */
const SHELL_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The languages whose kernels take env vars as code. */
export const ENV_LANGUAGES = ['python', 'javascript', 'typescript', 'bash', 'r'];

/** Why `vars` cannot be set in a `language` kernel, or undefined when they can. */
export function envVarsProblem(language: string, vars: Record<string, string>): string | undefined {
  const keys = Object.keys(vars);
  if (keys.length === 0) return undefined;
  if (!ENV_LANGUAGES.includes(language))
    return `env_vars are supported for ${ENV_LANGUAGES.join(', ')}, not ${language}`;
  const bad = keys.find((k) => k === '' || k.includes('=') || k.includes('\0') || vars[k]?.includes('\0'));
  if (bad !== undefined)
    return `env_vars: "${bad}" is not a valid environment variable (or its value has NUL)`;
  if (language === 'bash') {
    const odd = keys.find((k) => !SHELL_NAME.test(k));
    if (odd !== undefined) return `env_vars: "${odd}" is not a name bash can export`;
  }
  return undefined;
}

/** The part of `vars` a `language` kernel can take (the sandbox's, which no request checked). */
export function usableEnvVars(language: string, vars: Record<string, string>): Record<string, string> {
  if (!ENV_LANGUAGES.includes(language)) return {};
  return Object.fromEntries(Object.entries(vars).filter(([k, v]) => !envVarsProblem(language, { [k]: v })));
}

/** Code that sets `vars` in the kernel's environment ('' when there is nothing to set). */
export function envSetCode(language: string, vars: Record<string, string>): string {
  const entries = Object.entries(vars);
  if (entries.length === 0) return '';
  const problem = envVarsProblem(language, vars);
  if (problem) throw new Error(problem);
  switch (language) {
    case 'bash':
      return entries.map(([k, v]) => `export ${k}=${shellWord(v)}`).join('\n');
    case 'javascript':
    case 'typescript':
      return entries.map(([k, v]) => `process.env[${literal(k)}] = ${literal(v)};`).join(' ');
    case 'r':
      return `invisible(Sys.setenv(${entries.map(([k, v]) => `${literal(k)} = ${literal(v)}`).join(', ')}))`;
    default:
      return `import os as __aiva_os; ${entries.map(([k, v]) => `__aiva_os.environ[${literal(k)}] = ${literal(v)}`).join('; ')}; del __aiva_os`;
  }
}

/** Code that puts back what `vars` changed: the sandbox's value, or no variable. */
export function envRestoreCode(
  language: string,
  vars: Record<string, string>,
  sandbox: Record<string, string>,
): string {
  const keys = Object.keys(vars);
  if (keys.length === 0 || !ENV_LANGUAGES.includes(language)) return '';
  const back = Object.fromEntries(keys.filter((k) => k in sandbox).map((k) => [k, sandbox[k] as string]));
  const gone = keys.filter((k) => !(k in sandbox));
  switch (language) {
    case 'bash': {
      const steps = gone.length > 0 ? [`unset ${gone.join(' ')}`] : [];
      if (Object.keys(back).length > 0) steps.push(envSetCode('bash', back));
      return steps.join('\n');
    }
    case 'javascript':
    case 'typescript':
      return keys
        .map((k) =>
          k in sandbox
            ? `process.env[${literal(k)}] = ${literal(sandbox[k] as string)};`
            : `delete process.env[${literal(k)}];`,
        )
        .join(' ');
    case 'r': {
      const steps = gone.length > 0 ? [`invisible(Sys.unsetenv(c(${gone.map(literal).join(', ')})))`] : [];
      if (Object.keys(back).length > 0) steps.push(envSetCode('r', back));
      return steps.join('\n');
    }
    default: {
      const steps = keys.map((k) =>
        k in sandbox
          ? `__aiva_os.environ[${literal(k)}] = ${literal(sandbox[k] as string)}`
          : `__aiva_os.environ.pop(${literal(k)}, None)`,
      );
      return `import os as __aiva_os; ${steps.join('; ')}; del __aiva_os`;
    }
  }
}
