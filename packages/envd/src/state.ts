/** What `POST /init` configures; everything else in envd reads it from here. */
export class EnvdState {
  /** When set, every call but /health, /files and /init needs it (X-Access-Token). */
  accessToken: string | undefined;
  /** Sandbox-wide environment variables, applied to every process after the user's own. */
  readonly envVars = new Map<string, string>();
  /** The user of calls that name none (no Basic auth, no `username`). */
  defaultUser = 'root';
  /** Where relative paths and processes without a cwd start; the user's home if unset. */
  defaultWorkdir: string | undefined;

  constructor(init: { accessToken?: string; defaultUser?: string; defaultWorkdir?: string } = {}) {
    this.accessToken = init.accessToken;
    if (init.defaultUser) this.defaultUser = init.defaultUser;
    this.defaultWorkdir = init.defaultWorkdir;
  }
}
