import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import { basicAuthUser } from './auth.js';
import type { MetadataStore } from './fs/xattr.js';
import { InvalidPathError, resolveUserPath } from './paths.js';
import type { ProcessManager } from './process/manager.js';
import type { EnvdState } from './state.js';
import type { GuestUser, UserDatabase } from './users.js';

/** Everything envd's handlers share; made once in server.ts. */
export interface Envd {
  state: EnvdState;
  users: UserDatabase;
  helper: string;
  processes: ProcessManager;
  metadata: MetadataStore;
  /** /health answers 204 only once this is true (see warm-up.ts); true unless main.ts warms up first. */
  ready: boolean;
}

/** The user a call runs as: its Basic auth user, else the default user from /init. */
export function rpcUser(envd: Envd, ctx: HandlerContext): GuestUser {
  const name = basicAuthUser(ctx.requestHeader.get('authorization')) ?? envd.state.defaultUser;
  try {
    return envd.users.lookup(name);
  } catch (e) {
    throw new ConnectError(`error looking up user '${name}': ${(e as Error).message}`, Code.Unauthenticated);
  }
}

/** A request path made absolute for `user` (empty: `emptyPath`, else home), or invalid_argument. */
export function rpcPath(path: string, user: GuestUser, emptyPath?: string): string {
  try {
    return resolveUserPath(path, user, emptyPath);
  } catch (e) {
    if (e instanceof InvalidPathError) throw new ConnectError(e.message, Code.InvalidArgument);
    throw e;
  }
}

/** A filesystem error as the Connect error E2B's envd answers with. */
export function fsError(e: unknown, what: string): ConnectError {
  if (e instanceof ConnectError) return e;
  const err = e as NodeJS.ErrnoException;
  const msg = `${what}: ${err.message}`;
  switch (err.code) {
    case 'ENOENT':
      return new ConnectError(msg, Code.NotFound);
    case 'EEXIST':
      return new ConnectError(msg, Code.AlreadyExists);
    case 'ENOTDIR':
    case 'EISDIR':
    case 'EINVAL':
    case 'ENAMETOOLONG':
    case 'ELOOP':
      return new ConnectError(msg, Code.InvalidArgument);
    case 'EACCES':
    case 'EPERM':
      return new ConnectError(msg, Code.PermissionDenied);
    case 'ENOSPC':
    case 'EDQUOT':
      return new ConnectError(msg, Code.ResourceExhausted);
    default:
      return new ConnectError(msg, Code.Internal);
  }
}
