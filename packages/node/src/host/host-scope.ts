import { join } from 'node:path';
import { type IdRange, SANDBOX_ID_COUNT, SANDBOX_ID_SLOTS, sandboxIdRange } from './idmapped-overlay.js';

/** Where a node keeps its runtime state when it is the host's only (untagged) node. */
export const DEFAULT_STATE_DIR = '/run/aiva';
/** The cgroup under which an untagged node's sandboxes live (`aiva/<sandbox id>`). */
export const DEFAULT_CGROUP_PARENT = 'aiva';

const TAG_PATTERN = /^[a-z0-9]{1,4}$/;

export interface HostScopeOptions {
  /**
   * A short name (1–4 of [a-z0-9]) that sets this node's host-wide names apart from other
   * nodes' on the same host: network namespaces `aiva-<tag>n<slot>`, cgroups
   * `aiva/<tag>/<id>`, state under `/run/aiva/nodes/<tag>`. Empty (the default): the
   * names of a node alone on its host, as `aiva up` has always used.
   */
  tag?: string;
  /** Runtime state: the node lock, ip_forward.saved, OCI runtime state, LXCFS, user namespace pins. */
  stateDir?: string;
  /** The cgroup (relative to the hierarchy root) that holds one child cgroup per sandbox. */
  cgroupParent?: string;
  /**
   * Added to a sandbox's address slot to pick its host uid/gid range (`sandboxIdRange`):
   * nodes on one host need offsets whose ranges (offset … offset + slots of their address
   * block) do not overlap. Default 0.
   */
  idSlotOffset?: number;
}

/**
 * What a node owns of the host, by name: several nodes (each in its own network
 * namespace, with its own AIVA_HOME) can share one host when their scopes differ. A
 * node's start-up sweeps remove only what its scope names; the untagged (default) scope
 * also leaves alone what has a tagged node's shape.
 */
export class HostScope {
  readonly tag: string;
  readonly stateDir: string;
  readonly cgroupParent: string;
  readonly idSlotOffset: number;
  private readonly ownNetns: RegExp;

  constructor(options: HostScopeOptions = {}) {
    const tag = options.tag ?? '';
    if (tag !== '' && !TAG_PATTERN.test(tag))
      throw new Error(`node tag "${tag}" must be 1 to 4 lower-case letters or digits`);
    const offset = options.idSlotOffset ?? 0;
    if (!Number.isInteger(offset) || offset < 0 || offset >= SANDBOX_ID_SLOTS)
      throw new Error(`id slot offset ${offset} must be an integer from 0 to ${SANDBOX_ID_SLOTS - 1}`);
    const parent = options.cgroupParent ?? (tag ? `${DEFAULT_CGROUP_PARENT}/${tag}` : DEFAULT_CGROUP_PARENT);
    if (
      !/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(parent) ||
      parent.split('/').some((p) => /^\.+$/.test(p))
    )
      throw new Error(`cgroup parent "${parent}" must be a relative cgroup path (e.g. aiva/n1)`);
    this.tag = tag;
    this.stateDir = options.stateDir ?? (tag ? join(DEFAULT_STATE_DIR, 'nodes', tag) : DEFAULT_STATE_DIR);
    this.cgroupParent = parent;
    this.idSlotOffset = offset;
    this.ownNetns = new RegExp(`^aiva-${tag}n\\d+$`);
  }

  /** The network namespace of address slot `slot` (a file in /run/netns, seen host-wide). */
  netnsName(slot: number): string {
    return `aiva-${this.tag}n${slot}`;
  }

  /** Whether `name` is one of this scope's namespace names (`aiva-<tag>n<slot>`). */
  ownsNetns(name: string): boolean {
    return this.ownNetns.test(name);
  }

  /**
   * Whether the start-up sweep may remove namespace `name` when no sandbox owns it: the
   * scope's own names; for the untagged scope also the old `aiva-<sandbox id>` names,
   * but never a tagged node's `aiva-<tag>n<slot>`.
   */
  sweepsNetns(name: string): boolean {
    if (this.ownNetns.test(name)) return true;
    if (this.tag) return false;
    return name.startsWith('aiva-') && !isTaggedNetns(name);
  }

  /** Where the user namespaces of sandboxes are pinned (one file per network namespace, of its name). */
  get userNamespaceDir(): string {
    return join(this.stateDir, 'userns');
  }

  userNamespaceFile(netns: string): string {
    return join(this.userNamespaceDir, netns);
  }

  /** The cgroup of sandbox `id`. */
  sandboxCgroup(id: string): string {
    return `${this.cgroupParent}/${id}`;
  }

  /**
   * Whether a child cgroup of the parent, not owned by a live sandbox, is this node's
   * debris. Under the untagged parent `aiva`, children named like a tag (1–4 chars) are
   * other nodes' parents (`aiva/<tag>`), not sandboxes (whose ids are 20 chars): kept.
   */
  sweepsCgroup(name: string): boolean {
    if (this.tag || this.cgroupParent !== DEFAULT_CGROUP_PARENT) return true;
    return !TAG_PATTERN.test(name);
  }

  /** The host ids of the sandbox in address slot `slot`. */
  idRange(slot: number): IdRange {
    return sandboxIdRange(slot + this.idSlotOffset);
  }

  /** The first and last host uid this node's sandboxes may get, for `slots` address slots. */
  idSpan(slots: number): { first: number; last: number } {
    const first = this.idRange(0).hostId;
    return { first, last: first + slots * SANDBOX_ID_COUNT - 1 };
  }
}

/** A namespace named as a tagged node's (`aiva-<tag>n<slot>`). */
export const isTaggedNetns = (name: string) =>
  /^aiva-[a-z0-9]{1,4}n\d+$/.test(name) && !/^aiva-n\d+$/.test(name);

export const DEFAULT_HOST_SCOPE = new HostScope();
