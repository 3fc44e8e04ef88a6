import { process as pp } from '@aiva/protocol';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { type Envd, rpcPath, rpcUser } from '../context.js';
import {
  type ManagedProcess,
  type ProcessEventItem,
  ProcessStateError,
  StartError,
} from '../process/manager.js';
import type { EventQueue } from './event-queue.js';
import { keepaliveIntervalMs } from './event-queue.js';

function eventOf(item: ProcessEventItem): pp.ProcessEvent {
  switch (item.kind) {
    case 'data':
      return create(pp.ProcessEventSchema, {
        event: { case: 'data', value: { output: { case: item.output, value: item.data } } },
      });
    case 'end':
      return create(pp.ProcessEventSchema, { event: { case: 'end', value: item.end } });
    case 'keepalive':
      return create(pp.ProcessEventSchema, { event: { case: 'keepalive', value: {} } });
  }
}

const startEvent = (pid: number) =>
  create(pp.ProcessEventSchema, { event: { case: 'start', value: { pid } } });

function stateError(e: unknown): unknown {
  return e instanceof ProcessStateError ? new ConnectError(e.message, Code.FailedPrecondition) : e;
}

/** Streams a process's queued events with keepalives, always letting go of the queue. */
async function* follow(
  proc: ManagedProcess,
  events: EventQueue<ProcessEventItem>,
  ctx: HandlerContext,
): AsyncGenerator<pp.ProcessEvent> {
  try {
    const keepalive = {
      intervalMs: keepaliveIntervalMs(ctx.requestHeader),
      item: (): ProcessEventItem => ({ kind: 'keepalive' }),
    };
    for await (const item of events.drain(ctx.signal, keepalive)) yield eventOf(item);
  } finally {
    proc.unsubscribe(events);
  }
}

/** process.Process: start, watch, feed and signal the sandbox's processes. */
export function processService(envd: Envd): ServiceImpl<typeof pp.Process> {
  const { processes } = envd;

  const select = (selector: pp.ProcessSelector | undefined, runningOnly: boolean): ManagedProcess => {
    const s = selector?.selector;
    let proc: ManagedProcess | undefined;
    let what: string;
    if (s?.case === 'pid') {
      proc = processes.byPid(s.value);
      what = `pid ${s.value}`;
    } else if (s?.case === 'tag') {
      proc = processes.byTag(s.value);
      what = `tag '${s.value}'`;
    } else {
      throw new ConnectError('a process selector (pid or tag) is required', Code.InvalidArgument);
    }
    if (!proc || (runningOnly && proc.ended))
      throw new ConnectError(`process with ${what} not found`, Code.NotFound);
    return proc;
  };

  return {
    async *start(req, ctx) {
      const user = rpcUser(envd, ctx);
      const config = req.process;
      if (!config?.cmd) throw new ConnectError('process.cmd is required', Code.InvalidArgument);
      const cwd = rpcPath(config.cwd ?? '', user, envd.state.defaultWorkdir);
      let started: Awaited<ReturnType<typeof processes.start>>;
      try {
        started = await processes.start({
          config: { cmd: config.cmd, args: config.args, envs: config.envs, cwd: config.cwd },
          cwd,
          user,
          sandboxEnv: envd.state.envVars,
          pty: req.pty ? { cols: req.pty.size?.cols ?? 80, rows: req.pty.size?.rows ?? 24 } : undefined,
          tag: req.tag,
          stdin: req.stdin ?? true,
        });
      } catch (e) {
        if (e instanceof StartError) throw new ConnectError(e.message, Code.InvalidArgument);
        throw e;
      }
      const { proc, events } = started;
      // Connect-Timeout-Ms is the life of the command: at the deadline it is killed,
      // whether or not its client is still there (the client usually gives up first). A
      // client that merely goes away leaves it running: it can Connect again.
      const timeoutMs = ctx.timeoutMs();
      if (timeoutMs !== undefined) {
        const deadline = setTimeout(() => {
          try {
            proc.signal('SIGKILL');
          } catch {}
        }, timeoutMs);
        deadline.unref();
        proc.onEnd(() => clearTimeout(deadline));
      }
      try {
        yield create(pp.StartResponseSchema, { event: startEvent(proc.pid) });
        proc.release();
        for await (const event of follow(proc, events, ctx)) yield create(pp.StartResponseSchema, { event });
      } finally {
        proc.release();
      }
    },

    async *connect(req, ctx) {
      const proc = select(req.process, false);
      const events = proc.subscribe();
      yield create(pp.ConnectResponseSchema, { event: startEvent(proc.pid) });
      for await (const event of follow(proc, events, ctx)) yield create(pp.ConnectResponseSchema, { event });
    },

    list() {
      return {
        processes: processes.list().map((p) => ({ pid: p.pid, tag: p.tag, config: p.config })),
      };
    },

    async sendInput(req) {
      const proc = select(req.process, true);
      const input = req.input?.input;
      try {
        if (input?.case === 'stdin') await proc.writeStdin(input.value);
        else if (input?.case === 'pty') await proc.writePty(input.value);
        else throw new ConnectError('input (stdin or pty) is required', Code.InvalidArgument);
      } catch (e) {
        throw stateError(e);
      }
      return {};
    },

    async streamInput(reqs) {
      let proc: ManagedProcess | undefined;
      for await (const req of reqs) {
        const ev = req.event;
        if (ev.case === 'start') {
          proc = select(ev.value.process, true);
        } else if (ev.case === 'data') {
          if (!proc)
            throw new ConnectError('the first message must select the process', Code.FailedPrecondition);
          const input = ev.value.input?.input;
          try {
            if (input?.case === 'stdin') await proc.writeStdin(input.value);
            else if (input?.case === 'pty') await proc.writePty(input.value);
          } catch (e) {
            throw stateError(e);
          }
        }
      }
      return {};
    },

    closeStdin(req) {
      const proc = select(req.process, true);
      try {
        proc.closeStdin();
      } catch (e) {
        throw stateError(e);
      }
      return {};
    },

    sendSignal(req) {
      const proc = select(req.process, true);
      let sig: 'SIGTERM' | 'SIGKILL';
      if (req.signal === pp.Signal.SIGKILL) sig = 'SIGKILL';
      else if (req.signal === pp.Signal.SIGTERM) sig = 'SIGTERM';
      else throw new ConnectError('signal must be SIGTERM or SIGKILL', Code.InvalidArgument);
      try {
        proc.signal(sig);
      } catch (e) {
        throw stateError(e);
      }
      return {};
    },

    update(req) {
      const proc = select(req.process, true);
      const size = req.pty?.size;
      if (size) {
        if (!size.cols || !size.rows)
          throw new ConnectError('pty size needs cols and rows', Code.InvalidArgument);
        try {
          proc.resize(size.cols, size.rows);
        } catch (e) {
          throw stateError(e);
        }
      }
      return {};
    },
  };
}
