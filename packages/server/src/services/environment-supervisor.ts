import { execInSandbox, startInSandbox } from '@aiva/node';
import type { EnvironmentServiceDef } from '../db/environments-schema.js';
import { InvalidRequestError, OperationFailedError } from './errors.js';

/** Where an environment's service writes its output, in its sandbox. */
export const SERVICE_LOG = '/var/log/aiva/service.log';
/** Where `deploy` puts an uploaded directory, and the service's working directory. */
export const APP_DIR = '/app';
/** The most of the service log one call returns. */
const MAX_LOG_BYTES = 1024 * 1024;

/**
 * The supervisor, run by bash in the sandbox as root: it runs `$AIVA_SERVICE_CMD` with
 * `sh -c` in /app (made if a deploy did not), appends its output to the service log, and starts it again as
 * `$AIVA_RESTART` says (always | on-failure | no), waiting 1 s, then twice as long after
 * each quick end, up to 30 s (back to 1 s once it ran 30 s). SIGTERM ends the service
 * (SIGTERM, then SIGKILL after 10 s) and the supervisor. Its pid and the service's are in
 * /run/aiva.
 */
const SUPERVISOR = `
set -u
mkdir -p /var/log/aiva /run/aiva ${APP_DIR}
log=${SERVICE_LOG}
echo $$ > /run/aiva/supervisor.pid
child=
stop() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$child" 2>/dev/null
  fi
  echo "[aiva] $(date -u +%FT%TZ) service stopped" >>"$log"
  rm -f /run/aiva/supervisor.pid /run/aiva/service.pid
  exit 0
}
trap stop TERM INT
delay=1
while :; do
  echo "[aiva] $(date -u +%FT%TZ) starting: $AIVA_SERVICE_CMD" >>"$log"
  started=$(date +%s)
  ( cd ${APP_DIR} && exec sh -c "$AIVA_SERVICE_CMD" ) </dev/null >>"$log" 2>&1 &
  child=$!
  echo "$child" > /run/aiva/service.pid
  wait "$child"
  code=$?
  child=
  echo "[aiva] $(date -u +%FT%TZ) service exited with code $code" >>"$log"
  case "$AIVA_RESTART" in
    no) break ;;
    on-failure) [ "$code" -eq 0 ] && break ;;
  esac
  [ $(( $(date +%s) - started )) -ge 30 ] && delay=1
  echo "[aiva] restarting in $delay s" >>"$log"
  sleep "$delay" &
  child=$!
  wait "$child"
  child=
  delay=$(( delay * 2 )); [ "$delay" -gt 30 ] && delay=30
done
rm -f /run/aiva/supervisor.pid /run/aiva/service.pid
`;

/** Ends a running supervisor (its service with it) and waits for it; `force`: SIGKILL both at once. */
const STOP_SUPERVISOR = (force: boolean) => `
p=$(cat /run/aiva/supervisor.pid 2>/dev/null) || exit 0
s=$(cat /run/aiva/service.pid 2>/dev/null || true)
# A pid file left from before a reboot may name another process now: only the supervisor has AIVA_RESTART.
if ! tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | grep -q '^AIVA_RESTART='; then
  rm -f /run/aiva/supervisor.pid /run/aiva/service.pid; exit 0
fi
if ${force ? 'true' : 'false'}; then
  kill -KILL "$p" $s 2>/dev/null; rm -f /run/aiva/supervisor.pid /run/aiva/service.pid; exit 0
fi
kill -TERM "$p" 2>/dev/null || exit 0
for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || exit 0; sleep 0.1; done
kill -KILL "$p" $s 2>/dev/null; exit 0
`;

/** How the server reaches one sandbox's envd: its address and port on this host, and its token. */
export interface SandboxEnvd {
  host: string;
  port: number;
  accessToken: string;
}

/**
 * Runs and stops an environment's service inside its sandbox, through envd's process
 * service as root (the server's own node: the address is on this host).
 */
export class EnvironmentSupervisor {
  constructor(private readonly envd: SandboxEnvd) {}

  private async run(command: string, envs: Record<string, string> = {}, timeoutMs = 60_000) {
    const r = await execInSandbox(this.envd.host, command, {
      port: this.envd.port,
      user: 'root',
      accessToken: this.envd.accessToken,
      envs,
      timeoutMs,
    });
    return r;
  }

  /** Runs `command` as root and fails with what it printed unless it exits 0. */
  private async check(what: string, command: string, envs: Record<string, string> = {}): Promise<string> {
    const r = await this.run(command, envs);
    if (r.exitCode !== 0)
      throw new OperationFailedError(`${what} failed`, new Error((r.stderr || r.stdout).trim().slice(-500)));
    return r.stdout;
  }

  /** Starts the supervisor of `service` (after ending one that runs), with the environment's variables. */
  async start(service: EnvironmentServiceDef, env: Record<string, string>): Promise<void> {
    await this.stop(true);
    const started = await startInSandbox(this.envd.host, SUPERVISOR, {
      port: this.envd.port,
      user: 'root',
      accessToken: this.envd.accessToken,
      cwd: '/',
      envs: { ...env, AIVA_SERVICE_CMD: service.cmd, AIVA_RESTART: service.restart },
    });
    // envd keeps it running: nothing here watches it.
    started.release();
  }

  /** Ends the service and its supervisor: gracefully (SIGTERM, up to 15 s), or at once with `force`. */
  async stop(force: boolean): Promise<void> {
    await this.check('stopping the service', STOP_SUPERVISOR(force));
  }

  /** Replaces /app with the tar.gz archive at `archive` (which is removed). */
  async install(archive: string): Promise<void> {
    if (!/^\/tmp\/[A-Za-z0-9._-]{1,100}$/.test(archive))
      throw new InvalidRequestError(`archive must be a file directly in /tmp, not "${archive}"`);
    const r = await this.run(
      `test -f "$A" || { echo "no file $A in the sandbox" >&2; exit 3; }
rm -rf ${APP_DIR} && mkdir -p ${APP_DIR} && tar -xzf "$A" -C ${APP_DIR} --no-same-owner; c=$?; rm -f "$A"; exit $c`,
      { A: archive },
    );
    if (r.exitCode === 3) throw new InvalidRequestError(r.stderr.trim());
    if (r.exitCode !== 0)
      throw new InvalidRequestError(`the archive could not be unpacked: ${r.stderr.trim().slice(-300)}`);
  }

  /**
   * The service log: from byte `offset` on (for following it), else its last `tail`
   * lines; with the offset to ask from next. A log that shrank is read from its start.
   */
  async log(q: { offset?: number; tail?: number }): Promise<{ text: string; offset: number }> {
    const out = await this.check(
      'reading the service log',
      `f=${SERVICE_LOG}; [ -f "$f" ] || { echo 0; exit 0; }
size=$(stat -c %s "$f"); off=$OFF
if [ "$off" -ge 0 ]; then
  [ "$off" -gt "$size" ] && off=0
  [ $((size - off)) -gt ${MAX_LOG_BYTES} ] && size=$((off + ${MAX_LOG_BYTES}))
  echo "$size"; head -c "$size" "$f" | tail -c +$((off + 1))
else
  echo "$size"; head -c "$size" "$f" | tail -n "$TAIL" | tail -c ${MAX_LOG_BYTES}
fi`,
      { OFF: String(q.offset ?? -1), TAIL: String(q.tail ?? 100) },
    );
    const nl = out.indexOf('\n');
    const offset = Number(nl < 0 ? out : out.slice(0, nl));
    return { offset: Number.isFinite(offset) ? offset : 0, text: nl < 0 ? '' : out.slice(nl + 1) };
  }
}
