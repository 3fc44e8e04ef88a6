import { existsSync, readFileSync, statSync } from 'node:fs';

/** A user of the guest, from /etc/passwd and /etc/group. */
export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
  /** Supplementary groups (the primary group first), as initgroups(3) would set them. */
  groups: number[];
}

export class UnknownUserError extends Error {
  constructor(
    readonly username: string,
    passwdFile?: string,
  ) {
    super(`user '${username}' does not exist${passwdFile ? ` (the sandbox has no ${passwdFile})` : ''}`);
  }
}

/**
 * root when the account database does not name it (an image without /etc/passwd, such
 * as a distroless or empty one): envd runs as root, so root always exists.
 */
function implicitRoot(groups: number[]): GuestUser {
  return {
    name: 'root',
    uid: 0,
    gid: 0,
    home: existsSync('/root') ? '/root' : '/',
    shell: '/bin/sh',
    groups: [0, ...groups.filter((g) => g !== 0)],
  };
}

interface Tables {
  key: string;
  /** /etc/passwd does not exist (or cannot be read). */
  noPasswd: boolean;
  users: Map<string, GuestUser>;
  userNames: Map<number, string>;
  groupNames: Map<number, string>;
}

/**
 * Reads the account database of the guest (files only: sandboxes have no NSS services).
 * The files are re-read when they change, so users added by a command are seen at once.
 */
export class UserDatabase {
  private tables: Tables | undefined;

  constructor(private readonly etc = '/etc') {}

  private load(): Tables {
    const passwdFile = `${this.etc}/passwd`;
    const groupFile = `${this.etc}/group`;
    const key = [passwdFile, groupFile]
      .map((f) => {
        try {
          const st = statSync(f);
          return `${st.mtimeMs}:${st.size}:${st.ino}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
    if (this.tables?.key === key) return this.tables;
    let noPasswd = false;
    const read = (f: string) => {
      try {
        return readFileSync(f, 'utf8').split('\n');
      } catch {
        if (f === passwdFile) noPasswd = true;
        return [];
      }
    };
    const groupNames = new Map<number, string>();
    const members = new Map<string, number[]>();
    for (const line of read(groupFile)) {
      const [name, , gidText, memberList] = line.split(':');
      const gid = Number(gidText);
      if (!name || !Number.isInteger(gid)) continue;
      if (!groupNames.has(gid)) groupNames.set(gid, name);
      for (const m of (memberList ?? '').split(',')) {
        if (m) members.set(m, [...(members.get(m) ?? []), gid]);
      }
    }
    const users = new Map<string, GuestUser>();
    const userNames = new Map<number, string>();
    for (const line of read(passwdFile)) {
      const [name, , uidText, gidText, , home, shell] = line.split(':');
      const uid = Number(uidText);
      const gid = Number(gidText);
      if (!name || !Number.isInteger(uid) || !Number.isInteger(gid)) continue;
      const groups = [gid, ...(members.get(name) ?? []).filter((g) => g !== gid)];
      users.set(name, { name, uid, gid, home: home || '/', shell: shell || '/bin/sh', groups });
      if (!userNames.has(uid)) userNames.set(uid, name);
    }
    if (!users.has('root')) {
      users.set('root', implicitRoot(members.get('root') ?? []));
      if (!userNames.has(0)) userNames.set(0, 'root');
      if (!groupNames.has(0)) groupNames.set(0, 'root');
    }
    this.tables = { key, noPasswd, users, userNames, groupNames };
    return this.tables;
  }

  /** The user called `name` (root always exists); throws UnknownUserError. */
  lookup(name: string): GuestUser {
    const tables = this.load();
    const u = tables.users.get(name);
    if (!u) throw new UnknownUserError(name, tables.noPasswd ? `${this.etc}/passwd` : undefined);
    return u;
  }

  /** The name of uid (its number as text if it has none), as `ls -l` shows it. */
  userName(uid: number): string {
    return this.load().userNames.get(uid) ?? String(uid);
  }

  groupName(gid: number): string {
    return this.load().groupNames.get(gid) ?? String(gid);
  }
}
