import { parseArgs } from 'node:util';
import { ENVD_PORT } from '@aiva/protocol';
import { defaultHelperPath } from './native.js';
import { createEnvdServer } from './server.js';
import { EnvdState } from './state.js';
import { ENVD_VERSION } from './version.js';
import { warmUp } from './warm-up.js';

const usage = `usage: envd [--host ADDR] [--port N] [--helper PATH]
  --host    address to listen on (env ENVD_HOST, default 0.0.0.0)
  --port    port (env ENVD_PORT, default ${ENVD_PORT})
  --helper  the native helper aiva-exec (env AIVA_EXEC, default: beside envd.js)`;

function main(): void {
  let values: { host?: string; port?: string; helper?: string; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        helper: { type: 'string' },
        help: { type: 'boolean' },
        version: { type: 'boolean' },
      },
    }));
  } catch (e) {
    process.stderr.write(`envd: ${(e as Error).message}\n${usage}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  if (values.version) {
    process.stdout.write(`${ENVD_VERSION}\n`);
    return;
  }
  const host = values.host ?? process.env.ENVD_HOST ?? '0.0.0.0';
  const port = Number(values.port ?? process.env.ENVD_PORT ?? ENVD_PORT);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    process.stderr.write(`envd: invalid port ${values.port ?? process.env.ENVD_PORT}\n`);
    process.exit(2);
  }
  const helper = values.helper ?? defaultHelperPath();
  const { server, envd } = createEnvdServer({ helper, state: new EnvdState() });
  server.on('error', (e) => {
    process.stderr.write(`envd: cannot listen on ${host}:${port}: ${e.message}\n`);
    process.exit(1);
  });
  // Healthy once warmed up: the first command a tenant runs does not pay for compiling
  // envd's process path, and a VM template saved when healthy has it compiled already.
  envd.ready = false;
  server.listen(port, host, () => {
    process.stdout.write(`envd ${ENVD_VERSION} listening on ${host}:${port}\n`);
    const t0 = Date.now();
    void warmUp(port)
      .then(
        () => process.stdout.write(`envd: warmed up in ${Date.now() - t0} ms\n`),
        (e: Error) => process.stderr.write(`envd: warm-up failed (${e.message}); serving anyway\n`),
      )
      .finally(() => {
        envd.ready = true;
      });
  });
  const stop = (signal: string) => {
    process.stdout.write(`envd: ${signal}, stopping\n`);
    envd.processes.killAll();
    server.close();
    server.closeAllConnections?.();
    setTimeout(() => process.exit(0), 500).unref();
  };
  // envd is the sandbox's only way in: a bug in one request must not take it down.
  process.on('uncaughtException', (e) => process.stderr.write(`envd: uncaught: ${e.stack ?? e}\n`));
  process.on('unhandledRejection', (e) => process.stderr.write(`envd: unhandled rejection: ${String(e)}\n`));
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

main();
