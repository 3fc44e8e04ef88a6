import type { Logger } from 'pino';
import { DEFAULT_HOST_SCOPE, type HostScope } from '../host/host-scope.js';
import type { AddressPool, LinkAddresses } from './address-pool.js';
import { createLink, removeLink, type SandboxNamespaces } from './sandbox-network.js';

/** A namespace with its link (and its user namespace, if the node makes them), made before any sandbox asked for it. */
export interface PooledNamespace {
  link: LinkAddresses;
  namespaces: SandboxNamespaces;
}

/**
 * Namespaces made ahead of time (namespace, veth, addresses, route: everything that does
 * not depend on the sandbox), so that creating a sandbox does not wait for them. Filled
 * in the background, one at a time, back up to `size` after every take. Nothing reaches
 * in or out of a pooled namespace: the firewall drops traffic from links no sandbox owns.
 * Pooled namespaces belong to the node that made them: `close` removes them, and a node
 * that crashed leaves them for the next one's orphan sweep.
 */
export class NamespacePool {
  private readonly ready: PooledNamespace[] = [];
  private filling: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly size: number,
    private readonly addresses: AddressPool,
    private readonly log: Logger,
    /** Make each network namespace inside a user namespace of its slot's (createLink). */
    private readonly userNamespaces = false,
    /** Whose names the namespaces get. */
    private readonly scope: HostScope = DEFAULT_HOST_SCOPE,
  ) {
    if (!Number.isInteger(size) || size < 0)
      throw new Error(`namespace pool size must be 0 or more, not ${size}`);
  }

  get available(): number {
    return this.ready.length;
  }

  /** A ready namespace, if there is one (and starts making its replacement). */
  take(): PooledNamespace | undefined {
    const p = this.ready.shift();
    this.fill();
    return p;
  }

  /** Starts filling up to `size` in the background. */
  fill(): void {
    if (this.filling || this.closed || this.ready.length >= this.size) return;
    this.filling = (async () => {
      while (!this.closed && this.ready.length < this.size) {
        let link: LinkAddresses;
        try {
          link = this.addresses.allocate();
        } catch (e) {
          this.log.warn({ err: e }, 'namespace pool: no address left');
          return;
        }
        try {
          const namespaces = await createLink(link, this.userNamespaces, this.scope);
          if (this.closed) {
            await removeLink(link.slot, namespaces.netns, this.scope);
            this.addresses.release(link.slot);
            return;
          }
          this.ready.push({ link, namespaces });
        } catch (e) {
          this.addresses.release(link.slot);
          this.log.warn({ err: e }, 'namespace pool: could not make a namespace');
          return;
        }
      }
    })().finally(() => {
      this.filling = undefined;
    });
  }

  /** Resolves once the pool holds `size` namespaces (or filling stopped). */
  async filled(): Promise<void> {
    this.fill();
    while (this.filling) await this.filling;
  }

  /** Stops filling and removes every pooled namespace. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.filling) await this.filling;
    for (const p of this.ready.splice(0)) {
      await removeLink(p.link.slot, p.namespaces.netns, this.scope);
      this.addresses.release(p.link.slot);
    }
  }
}
