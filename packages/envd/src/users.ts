import { readFileSync, statSync } from 'node:fs';

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
  constructor(readonly username: string) {
    super(`user '${username}' does not exist`);
  }
}

interface Tables {
  key: string;
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
    const read = (f: string) => {
      try {
        return readFileSync(f, 'utf8').split('\n');
      } catch {
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
    this.tables = { key, users, userNames, groupNames };
    return this.tables;
  }

  /** The user called `name`; throws UnknownUserError. */
  lookup(name: string): GuestUser {
    const u = this.load().users.get(name);
    if (!u) throw new UnknownUserError(name);
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
