import { randomUUID } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, readdir, realpath, rename, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { filesystem as fsp } from '@aiva/protocol';
import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { type Envd, fsError, rpcPath, rpcUser } from '../context.js';
import { ensureDirs } from '../fs/ensure-dirs.js';
import { entryInfo, entryInfosWithMetadata } from '../fs/entry-info.js';
import { DirWatcher, type RawWatchEvent } from '../fs/watcher.js';
import { EventQueue, keepaliveIntervalMs } from './event-queue.js';

/** statfs magic numbers of network filesystems (NFS, CIFS, SMB, SMB2, FUSE). */
const NETWORK_FS = new Set([0x6969, 0xff534d42, 0x517b, 0xfe534d42, 0x65735546]);
/** A polling watcher keeps at most this many unread events (older ones are dropped). */
const MAX_BUFFERED_EVENTS = 10_000;

interface PollingWatcher {
  watcher: DirWatcher;
  events: fsp.FilesystemEvent[];
  error?: Error;
}

/** filesystem.Filesystem: stat, list, create, move, remove and watch paths. */
export function filesystemService(envd: Envd): ServiceImpl<typeof fsp.Filesystem> {
  const { users, metadata } = envd;
  const polling = new Map<string, PollingWatcher>();

  const withMetadata = async (path: string, lst?: BigIntStats) =>
    (await entryInfosWithMetadata([{ path, lst }], users, metadata))[0] as fsp.EntryInfo;

  /** Validates a directory to watch and returns its absolute path. */
  const watchTarget = async (path: string, user: ReturnType<typeof rpcUser>, allowNetworkMounts: boolean) => {
    const dir = rpcPath(path, user);
    const st = await stat(dir).catch((e) => {
      throw fsError(e, `cannot watch ${dir}`);
    });
    if (!st.isDirectory()) throw new ConnectError(`path ${dir} is not a directory`, Code.InvalidArgument);
    if (!allowNetworkMounts) {
      const fs = await statfs(dir).catch(() => undefined);
      if (fs && NETWORK_FS.has(Number(fs.type))) {
        throw new ConnectError(
          `path ${dir} is on a network mount (set allowNetworkMounts to watch it)`,
          Code.FailedPrecondition,
        );
      }
    }
    return dir;
  };

  const toEvent = async (
    dir: string,
    e: RawWatchEvent,
    includeEntry: boolean,
  ): Promise<fsp.FilesystemEvent> => {
    let entry: fsp.EntryInfo | undefined;
    if (includeEntry && e.type !== fsp.EventType.REMOVE && e.type !== fsp.EventType.RENAME) {
      entry = await withMetadata(join(dir, e.name)).catch(() => undefined);
    }
    return create(fsp.FilesystemEventSchema, { name: e.name, type: e.type, entry });
  };

  return {
    async stat(req, ctx) {
      const user = rpcUser(envd, ctx);
      const path = rpcPath(req.path, user);
      try {
        return { entry: await withMetadata(path, await lstat(path, { bigint: true })) };
      } catch (e) {
        throw fsError(e, `cannot stat ${path}`);
      }
    },

    async makeDir(req, ctx) {
      const user = rpcUser(envd, ctx);
      const path = rpcPath(req.path, user);
      const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return undefined;
        throw fsError(e, `cannot stat ${path}`);
      });
      if (st?.isDirectory()) throw new ConnectError(`directory already exists: ${path}`, Code.AlreadyExists);
      if (st)
        throw new ConnectError(
          `path already exists but it is not a directory: ${path}`,
          Code.InvalidArgument,
        );
      try {
        await ensureDirs(path, user.uid, user.gid);
        return { entry: await entryInfo(path, users) };
      } catch (e) {
        throw fsError(e, `cannot create directory ${path}`);
      }
    },

    async move(req, ctx) {
      const user = rpcUser(envd, ctx);
      const source = rpcPath(req.source, user);
      const destination = rpcPath(req.destination, user);
      try {
        await lstat(source);
      } catch (e) {
        throw fsError(e, `cannot move ${source}`);
      }
      try {
        await ensureDirs(dirname(destination), user.uid, user.gid);
        await rename(source, destination);
        return { entry: await withMetadata(destination) };
      } catch (e) {
        throw fsError(e, `cannot move ${source} to ${destination}`);
      }
    },

    async listDir(req, ctx) {
      const user = rpcUser(envd, ctx);
      const requested = rpcPath(req.path, user);
      const depth = req.depth === 0 ? 1 : req.depth;
      let resolved: string;
      try {
        resolved = await realpath(requested);
      } catch (e) {
        throw fsError(e, `cannot list ${requested}`);
      }
      if (!(await stat(resolved)).isDirectory()) {
        throw new ConnectError(`path is not a directory: ${requested}`, Code.InvalidArgument);
      }
      const found: { path: string; lst: BigIntStats }[] = [];
      const walk = async (real: string, shown: string, level: number): Promise<void> => {
        const names = (await readdir(real)).sort();
        for (const name of names) {
          const lst = await lstat(join(real, name), { bigint: true }).catch(() => undefined);
          if (!lst) continue; // removed while we walked
          found.push({ path: join(shown, name), lst });
          if (lst.isDirectory() && level < depth) await walk(join(real, name), join(shown, name), level + 1);
        }
      };
      try {
        await walk(resolved, requested, 1);
        return { entries: await entryInfosWithMetadata(found, users, metadata) };
      } catch (e) {
        throw fsError(e, `cannot list ${requested}`);
      }
    },

    async remove(req, ctx) {
      const user = rpcUser(envd, ctx);
      const path = rpcPath(req.path, user);
      try {
        await rm(path, { recursive: true, force: true });
      } catch (e) {
        throw fsError(e, `cannot remove ${path}`);
      }
      return {};
    },

    async *watchDir(req, ctx) {
      const user = rpcUser(envd, ctx);
      const dir = await watchTarget(req.path, user, req.allowNetworkMounts);
      const queue = new EventQueue<fsp.WatchDirResponse>();
      // Events are turned into messages in order, even when includeEntry makes it async.
      let chain = Promise.resolve();
      const watcher = new DirWatcher(
        envd.helper,
        dir,
        req.recursive,
        (e) => {
          chain = chain.then(async () => {
            const filesystem = await toEvent(dir, e, req.includeEntry);
            queue.push(
              create(fsp.WatchDirResponseSchema, { event: { case: 'filesystem', value: filesystem } }),
            );
          });
        },
        (error) => {
          chain = chain.then(() => {
            if (error) queue.fail(new ConnectError(error.message, Code.Internal));
            else queue.close();
          });
        },
      );
      try {
        await watcher.start();
      } catch (e) {
        throw new ConnectError(`cannot watch ${dir}: ${(e as Error).message}`, Code.Internal);
      }
      try {
        yield create(fsp.WatchDirResponseSchema, { event: { case: 'start', value: {} } });
        const keepalive = {
          intervalMs: keepaliveIntervalMs(ctx.requestHeader),
          item: () => create(fsp.WatchDirResponseSchema, { event: { case: 'keepalive', value: {} } }),
        };
        yield* queue.drain(ctx.signal, keepalive);
      } finally {
        watcher.stop();
      }
    },

    async createWatcher(req, ctx) {
      const user = rpcUser(envd, ctx);
      const dir = await watchTarget(req.path, user, req.allowNetworkMounts);
      const id = randomUUID();
      let chain = Promise.resolve();
      const entry: PollingWatcher = {
        events: [],
        watcher: new DirWatcher(
          envd.helper,
          dir,
          req.recursive,
          (e) => {
            chain = chain.then(async () => {
              entry.events.push(await toEvent(dir, e, req.includeEntry));
              if (entry.events.length > MAX_BUFFERED_EVENTS) entry.events.shift();
            });
          },
          (error) => {
            entry.error = error ?? new Error(`watched directory ${dir} is gone`);
          },
        ),
      };
      try {
        await entry.watcher.start();
      } catch (e) {
        throw new ConnectError(`cannot watch ${dir}: ${(e as Error).message}`, Code.Internal);
      }
      polling.set(id, entry);
      return { watcherId: id };
    },

    getWatcherEvents(req) {
      const entry = polling.get(req.watcherId);
      if (!entry) throw new ConnectError(`watcher ${req.watcherId} not found`, Code.NotFound);
      const events = entry.events.splice(0);
      if (events.length === 0 && entry.error) {
        entry.watcher.stop();
        polling.delete(req.watcherId);
        throw new ConnectError(entry.error.message, Code.FailedPrecondition);
      }
      return { events };
    },

    removeWatcher(req) {
      const entry = polling.get(req.watcherId);
      if (!entry) throw new ConnectError(`watcher ${req.watcherId} not found`, Code.NotFound);
      entry.watcher.stop();
      polling.delete(req.watcherId);
      return {};
    },
  };
}
