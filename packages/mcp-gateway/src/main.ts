// `mcp-gateway --config '<json>'`, as E2B's SDK runs it (as root, GATEWAY_ACCESS_TOKEN in
// its environment) when a sandbox is created with the `mcp` option: checks the config,
// starts the gateway in the background (`mcp-gateway serve`, in a session of its own so
// that it outlives the command), waits until every server has started or failed, prints
// their states, and exits — 0 if at least one server runs, 1 (the gateway stopped) if
// none does or the config is wrong. The token is kept in /etc/mcp-gateway/.token (root
// only), where the SDK's getMcpToken() reads it.
//
// `mcp-gateway run --config '<json>'` is the same gateway in the foreground, for a
// supervisor that restarts it (an aiva environment's service, `aiva init --mcp`): it keeps
// the token a run before it wrote (so clients keep theirs), writes the config and serves
// until it is stopped.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { ConfigError, parseGatewayConfig, type ServerSpec } from './gateway-config.js';
import { GATEWAY_PORT, serveGateway } from './gateway-server.js';
import { Upstream, type UpstreamStatus } from './upstreams.js';

const STATE_DIR = '/etc/mcp-gateway';
const TOKEN_FILE = `${STATE_DIR}/.token`;
const CONFIG_FILE = `${STATE_DIR}/config.json`;
const PID_FILE = '/run/mcp-gateway.pid';
const LOG_FILE = '/var/log/mcp-gateway.log';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops a gateway started before (a second `--config` replaces the first). */
async function stopPrevious(): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(PID_FILE, 'utf8'));
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return;
  // A detached gateway leads its process group; one run in the foreground (`run`) may not.
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pid, s);
    } catch {
      try {
        process.kill(pid, s);
      } catch {
        // Gone meanwhile.
      }
    }
  };
  signal('SIGTERM');
  for (let i = 0; i < 50 && alive(pid); i++) await sleep(100);
  if (alive(pid)) signal('SIGKILL');
}

async function health(token: string): Promise<{ ready: boolean; servers?: UpstreamStatus[] } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${GATEWAY_PORT}/health`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return (await res.json()) as { ready: boolean; servers?: UpstreamStatus[] };
  } catch {
    return undefined;
  }
}

/** The config's servers, or undefined (said on stderr) when it is wrong. */
function checkedConfig(configText: string): ServerSpec[] | undefined {
  try {
    return parseGatewayConfig(configText);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`mcp-gateway: ${e.message}\n`);
      return undefined;
    }
    throw e;
  }
}

/** Keeps the token and the config where `serve` (and the SDK's getMcpToken) read them. */
function writeState(token: string, configText: string): void {
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  writeFileSync(TOKEN_FILE, token, { mode: 0o600 });
  writeFileSync(CONFIG_FILE, configText, { mode: 0o600 });
}

async function launch(configText: string): Promise<number> {
  const specs = checkedConfig(configText);
  if (!specs) return 1;
  const token = process.env.GATEWAY_ACCESS_TOKEN || randomUUID();
  writeState(token, configText);
  await stopPrevious();
  const log = openSync(LOG_FILE, 'a', 0o600);
  // The launcher script (which sets the guest runtime up) if there is one; else this node.
  const self = process.env.AIVA_MCP_GATEWAY_LAUNCHER;
  const [command, args] = self ? [self, ['serve']] : [process.execPath, [process.argv[1] ?? '', 'serve']];
  const child = spawn(command, args, {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, GATEWAY_ACCESS_TOKEN: token },
  });
  child.unref();
  if (child.pid === undefined) throw new Error('the gateway did not start');
  writeFileSync(PID_FILE, String(child.pid));
  const deadline = Date.now() + Math.max(...specs.map((s) => s.initTimeoutMs)) + 15_000;
  while (Date.now() < deadline) {
    if (!alive(child.pid)) {
      const tail = readFileSync(LOG_FILE, 'utf8').split('\n').slice(-20).join('\n');
      process.stderr.write(`mcp-gateway: the gateway exited:\n${tail}\n`);
      return 1;
    }
    const h = await health(token);
    if (h?.ready && h.servers) {
      for (const s of h.servers)
        (s.state === 'ready' ? process.stdout : process.stderr).write(
          `${s.name}: ${s.state}${s.state === 'ready' ? ` (${s.tools} tools)` : `: ${s.error}`}\n`,
        );
      if (h.servers.some((s) => s.state === 'ready')) {
        process.stdout.write(`mcp-gateway: serving on port ${GATEWAY_PORT} at /mcp\n`);
        return 0;
      }
      process.stderr.write('mcp-gateway: no MCP server started\n');
      process.kill(-child.pid, 'SIGTERM');
      return 1;
    }
    await sleep(200);
  }
  process.stderr.write('mcp-gateway: the servers did not settle in time\n');
  process.kill(-child.pid, 'SIGTERM');
  return 1;
}

/** The gateway itself: its servers, then the HTTP side; ends them when it is told to stop. */
async function serve(): Promise<void> {
  const token = process.env.GATEWAY_ACCESS_TOKEN || readFileSync(TOKEN_FILE, 'utf8');
  const upstreams = parseGatewayConfig(readFileSync(CONFIG_FILE, 'utf8')).map((s) => new Upstream(s));
  const http = await serveGateway(upstreams, token);
  // Each server's outcome, as soon as it has one.
  await Promise.all(
    upstreams.map((u) =>
      u.start().then(() => console.log(JSON.stringify({ time: new Date().toISOString(), ...u.status() }))),
    ),
  );
  const stop = () => {
    http.close();
    void Promise.all(upstreams.map((u) => u.close())).then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/** `run --config`: the gateway in the foreground, its token kept from the run before. */
async function runInForeground(configText: string): Promise<void> {
  if (!checkedConfig(configText)) process.exit(1);
  let token = process.env.GATEWAY_ACCESS_TOKEN;
  if (!token)
    try {
      token = readFileSync(TOKEN_FILE, 'utf8');
    } catch {
      token = randomUUID();
    }
  writeState(token, configText);
  await stopPrevious();
  writeFileSync(PID_FILE, String(process.pid));
  await serve();
}

const [first, second, third] = process.argv.slice(2);
if (first === 'run' && second === '--config' && third !== undefined) {
  runInForeground(third).catch((e: Error) => {
    console.error(`mcp-gateway run: ${e.message}`);
    process.exit(1);
  });
} else if (first === 'serve') {
  serve().catch((e: Error) => {
    console.error(`mcp-gateway serve: ${e.message}`);
    process.exit(1);
  });
} else if (first === '--config' && second !== undefined) {
  launch(second).then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`mcp-gateway: ${e.message}\n`);
      process.exit(1);
    },
  );
} else {
  process.stderr.write("usage: mcp-gateway [run] --config '<json>'\n");
  process.exit(2);
}
