import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { EnvironmentPort } from '../db/environments-schema.js';
import { ConflictError, InvalidRequestError } from './errors.js';

/** Where a guest port of a sandbox is reached from this host now (undefined: not running). */
export type GuestAddress = (guest: number) => { host: string; port: number } | undefined;

/** `HOST:GUEST` or `BIND:HOST:GUEST` (an IPv6 bind in brackets) as a port to forward. */
export function parsePort(spec: string): EnvironmentPort {
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+|localhost):)?(\d{1,5}):(\d{1,5})$/.exec(spec.trim());
  const host = Number(m?.[2]);
  const guest = Number(m?.[3]);
  if (!m || host < 1 || host > 65535 || guest < 1 || guest > 65535)
    throw new InvalidRequestError(
      `port "${spec}" is not HOST:GUEST or BIND:HOST:GUEST (ports 1-65535, BIND an IP address)`,
    );
  const bind = m[1] ? m[1].replace(/^\[|\]$/g, '') : '127.0.0.1';
  return { bind, host, guest };
}

/**
 * The host ports of environments: one TCP listener per forwarded port in this server
 * process, each connection piped to the guest port of the environment's sandbox as it is
 * reached now. Opened all together or not at all.
 */
export class EnvironmentPorts {
  private readonly open = new Map<string, { servers: Server[]; sockets: Set<Socket>; key: string }>();

  constructor(private readonly log: Logger) {}

  /** Whether the environment's listeners are open as `ports` says. */
  isOpen(envId: string, ports: EnvironmentPort[]): boolean {
    return this.open.get(envId)?.key === JSON.stringify(ports);
  }

  /**
   * Listens on every port of `ports` for the environment (closing what it listened on
   * before); a port another process (or environment) holds is a ConflictError naming it,
   * and then none is left listening.
   */
  async listen(envId: string, ports: EnvironmentPort[], target: GuestAddress): Promise<void> {
    await this.close(envId);
    const servers: Server[] = [];
    const sockets = new Set<Socket>();
    try {
      for (const p of ports) servers.push(await this.listenOne(p, target, sockets));
    } catch (e) {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      throw e;
    }
    this.open.set(envId, { servers, sockets, key: JSON.stringify(ports) });
  }

  private listenOne(p: EnvironmentPort, target: GuestAddress, sockets: Set<Socket>): Promise<Server> {
    const server = createServer((client) => {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      const to = target(p.guest);
      if (!to) {
        client.destroy();
        return;
      }
      const upstream = connect(to.port, to.host);
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      client.pipe(upstream).pipe(client);
      const end = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end);
      upstream.on('error', end);
    });
    return new Promise((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRINUSE')
          reject(new ConflictError(`host port ${p.bind}:${p.host} is already in use`));
        else if (e.code === 'EACCES')
          reject(
            new InvalidRequestError(`host port ${p.bind}:${p.host} may not be bound by aiva: ${e.message}`),
          );
        else if (e.code === 'EADDRNOTAVAIL')
          reject(new InvalidRequestError(`${p.bind} is not an address of this host`));
        else reject(e);
      });
      server.listen({ host: p.bind, port: p.host, exclusive: true }, () => {
        server.removeAllListeners('error');
        server.on('error', (e) => this.log.warn({ err: e, port: p }, 'a forwarded port failed'));
        resolve(server);
      });
    });
  }

  /** Stops listening for the environment and ends its forwarded connections. */
  async close(envId: string): Promise<void> {
    const o = this.open.get(envId);
    if (!o) return;
    this.open.delete(envId);
    for (const s of o.sockets) s.destroy();
    await Promise.all(o.servers.map((s) => new Promise((r) => s.close(r))));
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.open.keys()].map((id) => this.close(id)));
  }
}
