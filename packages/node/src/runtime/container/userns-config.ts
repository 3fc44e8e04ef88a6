import type { IdRange } from '../../host/idmapped-overlay.js';

/** The parts of an OCI config (oci-config.ts's `ociConfig`) that a user namespace changes. */
interface OciConfigParts {
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  linux: {
    namespaces: { type: string; path?: string }[];
    uidMappings?: { containerID: number; hostID: number; size: number }[];
    gidMappings?: { containerID: number; hostID: number; size: number }[];
  };
}

export interface UserNamespaceOptions {
  ids: IdRange;
  /**
   * A user namespace pinned by `pinUserNamespace` to join. runc 1.1 still wants the
   * mappings in the config ("User namespaces enabled, but no uid mappings found"): they
   * must be that namespace's. Without it, runc makes a new one.
   */
  userns?: string;
  /**
   * Whether the network namespace the container joins is owned by that user namespace
   * (made with it by `pinUserNamespace`). If not (`ip netns add`, owned by the host's),
   * sysfs cannot be mounted (EPERM: mounting sysfs needs CAP_SYS_ADMIN over the network
   * namespace), so /sys becomes an empty read-only tmpfs; a bind of the host's /sys would
   * work but show the host's network interfaces (other sandboxes' links included).
   */
  netnsOwned: boolean;
}

/**
 * `config` (an `ociConfig` result) for a container in a user namespace whose ids 0..count-1
 * are host ids `ids.hostId`…: its root is then an unprivileged host user. The root
 * filesystem must be idmapped to the same range (mountIdmappedOverlay), and every
 * directory above it searchable by that user (mode 0711 at least; runc's bind of the
 * rootfs fails with EACCES otherwise). Its `process.rlimits` must not exceed runc's own
 * hard limits (raising them needs CAP_SYS_RESOURCE in the host's namespace).
 */
export function withUserNamespace<C extends object>(config: C, o: UserNamespaceOptions): C {
  const c = structuredClone(config) as C & OciConfigParts;
  const mapping = [{ containerID: 0, hostID: o.ids.hostId, size: o.ids.count }];
  c.linux.namespaces = [
    ...c.linux.namespaces.filter((n) => n.type !== 'user'),
    o.userns ? { type: 'user', path: o.userns } : { type: 'user' },
  ];
  c.linux.uidMappings = mapping;
  c.linux.gidMappings = mapping;
  if (!o.netnsOwned) {
    c.mounts = c.mounts.map((m) =>
      m.destination === '/sys' && m.type === 'sysfs'
        ? {
            destination: '/sys',
            type: 'tmpfs',
            source: 'tmpfs',
            options: ['nosuid', 'noexec', 'nodev', 'ro', 'size=0'],
          }
        : m,
    );
  }
  return c;
}

/**
 * What a network namespace owned by the host's user namespace needs so that the
 * sandbox keeps ping and ports below 1024 (`sysctl -w` in it, from the host: the sandbox
 * cannot write them, and runc's `linux.sysctl` fails with EACCES). Raw sockets stay
 * impossible there: CAP_NET_RAW in the sandbox's user namespace does not count.
 */
export function hostOwnedNetnsSysctls(ids: IdRange): string[] {
  return [
    // ICMP echo sockets (what ping uses without CAP_NET_RAW) for all of the sandbox's groups.
    `net.ipv4.ping_group_range=${ids.hostId} ${ids.hostId + ids.count - 1}`,
    // Any of its users may bind low ports: its root could before, and they are its own.
    'net.ipv4.ip_unprivileged_port_start=0',
  ];
}
