// A Docker registry (Debian's docker-registry, distribution 2.x) on 127.0.0.1 for a
// test file: its own port, storage and config; optionally htpasswd basic auth.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { join } from 'node:path';
import { runCommand } from '../host/command.js';

export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  pid: number;
  /** The registry's log so far (its access log shows every blob fetched). */
  log(): Promise<string>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Answers once the registry serves /v2/ (200, or 401 when it wants credentials). */
function ping(host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`http://${host}/v2/`, (res) => {
      res.resume();
      resolve(res.statusCode === 200 || res.statusCode === 401);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

export async function startRegistry(
  dir: string,
  auth?: { username: string; password: string },
): Promise<TestRegistry> {
  await mkdir(join(dir, 'storage'), { recursive: true });
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const config = [
    'version: 0.1',
    'log:',
    '  level: info',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'storage')}`,
    'http:',
    `  addr: ${host}`,
  ];
  if (auth) {
    const passwords = join(dir, 'htpasswd');
    await runCommand('htpasswd', ['-B', '-b', '-c', passwords, auth.username, auth.password]);
    config.push('auth:', '  htpasswd:', '    realm: aiva-test', `    path: ${passwords}`);
  }
  await writeFile(join(dir, 'config.yml'), `${config.join('\n')}\n`);
  const logFile = join(dir, 'registry.log');
  await writeFile(logFile, '');
  const out = await open(logFile, 'a');
  const child: ChildProcess = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', out.fd, out.fd],
  });
  await out.close();
  const exited = once(child, 'exit');
  const pid = child.pid;
  if (!pid) throw new Error('docker-registry did not start');
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(pid, 'SIGTERM');
    await exited;
  };
  for (let i = 0; i < 100 && !(await ping(host)); i++) {
    if (child.exitCode !== null)
      throw new Error(`docker-registry exited: ${await readFile(logFile, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!(await ping(host))) {
    await stop();
    throw new Error(`docker-registry does not answer on ${host}`);
  }
  return { host, pid, log: () => readFile(logFile, 'utf8'), stop };
}

/** Pushes `oci:<layout>:<name>` to `docker://<host>/<repo>` (every platform of an index). */
export async function push(
  layout: string,
  name: string,
  target: string,
  creds?: { username: string; password: string },
): Promise<void> {
  const args = ['copy', '--all', '--dest-tls-verify=false', '--quiet'];
  if (creds) args.push('--dest-creds', `${creds.username}:${creds.password}`);
  await runCommand('skopeo', [...args, `oci:${layout}:${name}`, `docker://${target}`]);
}
