import type { SandboxUserNamespace } from '../types.js';

/** The parts of an OCI config (oci-config.ts's `ociConfig`) that a user namespace changes. */
interface OciConfigParts {
  linux: {
    namespaces: { type: string; path?: string }[];
    uidMappings?: { containerID: number; hostID: number; size: number }[];
    gidMappings?: { containerID: number; hostID: number; size: number }[];
  };
}

/**
 * `config` (an `ociConfig` result) for a container that joins the user namespace pinned
 * at `userns.path`, whose ids 0..count-1 are host ids `userns.hostId`…: its root is then
 * an unprivileged host user. runc 1.1 still wants the mappings in the config ("User
 * namespaces enabled, but no uid mappings found"): they are that namespace's. The network
 * namespace the config names must be owned by it (sysfs cannot be mounted otherwise:
 * mounting it needs CAP_SYS_ADMIN over the network namespace), the root filesystem
 * idmapped to the same range (mountIdmappedOverlay), and every directory above it
 * searchable by that user (runc's bind of the rootfs fails with EACCES otherwise). Its
 * `process.rlimits` must not exceed runc's own hard limits (raising them needs
 * CAP_SYS_RESOURCE in the host's user namespace).
 */
export function withUserNamespace<C extends object>(config: C, userns: SandboxUserNamespace): C {
  const c = structuredClone(config) as C & OciConfigParts;
  const mapping = [{ containerID: 0, hostID: userns.hostId, size: userns.count }];
  c.linux.namespaces = [
    ...c.linux.namespaces.filter((n) => n.type !== 'user'),
    { type: 'user', path: userns.path },
  ];
  c.linux.uidMappings = mapping;
  c.linux.gidMappings = mapping;
  return c;
}
