// Idmapped overlays (native/aiva-mount.c): a sandbox's root filesystem whose shared,
// root-owned layers are seen as owned by the sandbox's host id range, with nothing
// copied, and whose own upper layer keeps unshifted owners on disk.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runCommand } from '../src/host/command.js';
import {
  type IdmappedOverlay,
  IdmappedOverlayError,
  idmappedOverlaySupported,
  mountIdmappedOverlay,
  pinUserNamespace,
  sandboxIdRange,
  unpinNamespace,
} from '../src/host/idmapped-overlay.js';
import { mountedUnder, unmountAll } from '../src/host/mounts.js';
import { ociConfig } from '../src/runtime/container/oci-config.js';
import { withUserNamespace } from '../src/runtime/container/userns-config.js';
import { userNamespacesSetting, withoutUserNamespaces } from '../src/runtime/select.js';
import type { RuntimeSpec } from '../src/runtime/types.js';
import { tempDir } from './helpers/temp-dir.js';

const ids = sandboxIdRange(0);
const root = await tempDir('aiva-idmap-');
// The sandbox's ids must be able to reach the mount point, as in a real sandbox directory.
await chmod(root, 0o755);
after(() => unmountAll(root));

/** Runs a shell command as the sandbox's root (host uid/gid `ids.hostId`). */
const asSandboxRoot = (cmd: string) =>
  promisify(execFile)('sh', ['-c', cmd], { uid: ids.hostId, gid: ids.hostId });

const xattrs = async (path: string) =>
  (await runCommand('getfattr', ['--absolute-names', '-d', '-m', '-', path])).stdout;

let n = 0;
/** Two small layers (top first) and a fresh upper, work and mount point. */
async function layers() {
  const dir = join(root, `s${n++}`);
  const top = join(dir, 'top');
  const bottom = join(dir, 'bottom');
  await mkdir(join(bottom, 'etc', 'old'), { recursive: true });
  await mkdir(join(top, 'etc'), { recursive: true });
  await mkdir(join(bottom, 'home', 'user'), { recursive: true });
  await writeFile(join(bottom, 'etc', 'hostname'), 'bottom\n');
  await writeFile(join(bottom, 'etc', 'old', 'a'), 'a\n');
  await writeFile(join(bottom, 'etc', 'motd'), 'hello\n');
  await writeFile(join(top, 'etc', 'hostname'), 'top\n');
  await writeFile(join(bottom, 'home', 'user', 'notes'), 'mine\n');
  await chown(join(bottom, 'home', 'user'), 1000, 1000);
  await chown(join(bottom, 'home', 'user', 'notes'), 1000, 1000);
  const o = {
    lowers: [top, bottom],
    upper: join(dir, 'upper'),
    work: join(dir, 'overlay-work'),
    target: join(dir, 'rootfs'),
    attachDir: join(dir, 'attach'),
  };
  for (const d of [o.upper, o.work, o.target, o.attachDir]) await mkdir(d);
  return o;
}

describe('idmapped overlays', async () => {
  const support = await idmappedOverlaySupported();

  test('this host supports them, layers passed as detached mounts', () => {
    assert.deepEqual(support, { supported: true, passing: 'fd' });
  });

  for (const passing of ['fd', 'path'] as const) {
    test(`lower files are seen shifted, the upper layer is stored unshifted (layers by ${passing})`, async () => {
      const o: IdmappedOverlay = { ...(await layers()), ids, idmapUpper: true, passing };
      await mountIdmappedOverlay(o);
      const r = o.target;
      try {
        assert.equal(await readFile(join(r, 'etc', 'hostname'), 'utf8'), 'top\n');
        assert.equal((await stat(join(r, 'etc', 'hostname'))).uid, ids.hostId);
        assert.equal((await stat(join(r, 'etc', 'hostname'))).gid, ids.hostId);
        assert.equal((await stat(join(r, 'home', 'user', 'notes'))).uid, ids.hostId + 1000);

        await asSandboxRoot(
          `set -e; echo new > ${r}/etc/new; mkdir ${r}/srv; echo changed > ${r}/etc/hostname;` +
            `rm ${r}/etc/motd; rm -r ${r}/etc/old; mkdir ${r}/etc/old`,
        );
        assert.equal((await stat(join(r, 'etc', 'new'))).uid, ids.hostId);
        assert.equal((await stat(join(r, 'srv'))).uid, ids.hostId);
        assert.ok(!(await readdir(join(r, 'etc'))).includes('motd'));
        assert.deepEqual(await readdir(join(r, 'etc', 'old')), []);
      } finally {
        await unmountAll(o.target);
      }
      assert.deepEqual(await mountedUnder(root), []);
      assert.deepEqual(await readdir(o.attachDir as string), [], 'attached layers are detached again');

      // On disk: owners as the sandbox sees them (0 for its root), whiteouts, opaque dirs.
      const up = o.upper as string;
      for (const [p, uid] of [
        ['etc/new', 0],
        ['etc/hostname', 0],
        ['srv', 0],
      ] as const) {
        assert.equal((await lstat(join(up, p))).uid, uid, p);
      }
      const wh = await lstat(join(up, 'etc', 'motd'));
      assert.ok(wh.isCharacterDevice() && wh.rdev === 0 && wh.uid === 0, 'a whiteout (0:0 device, owner 0)');
      assert.match(await xattrs(join(up, 'etc', 'old')), /trusted\.overlay\.opaque="y"/);
      assert.equal(await readFile(join(o.lowers[0] as string, 'etc', 'hostname'), 'utf8'), 'top\n');

      // The upper layer, mounted again for another id range (a copy from a checkpoint),
      // gives the same tree, owned by that range.
      const other = sandboxIdRange(1);
      await mountIdmappedOverlay({ ...o, ids: other });
      try {
        assert.equal(await readFile(join(r, 'etc', 'hostname'), 'utf8'), 'changed\n');
        assert.deepEqual(await readdir(join(r, 'etc', 'old')), []);
        assert.ok(!(await readdir(join(r, 'etc'))).includes('motd'));
        assert.equal((await stat(join(r, 'etc', 'new'))).uid, other.hostId);
        assert.equal((await stat(join(r, 'home', 'user', 'notes'))).uid, other.hostId + 1000);
      } finally {
        await unmountAll(o.target);
      }
    });
  }

  test('a pinned user namespace idmaps the same, and owns the network namespace pinned with it', async () => {
    const o = await layers();
    const userns = join(root, 'userns');
    const netns = join(root, 'netns');
    await pinUserNamespace(ids, userns, netns);
    try {
      await mountIdmappedOverlay({ ...o, ids, userns, idmapUpper: true });
      assert.equal((await stat(join(o.target, 'etc', 'hostname'))).uid, ids.hostId);
      await unmountAll(o.target);
      const { stdout } = await runCommand('nsenter', [`--user=${userns}`, 'cat', '/proc/self/uid_map']);
      assert.deepEqual(stdout.trim().split(/\s+/).map(Number), [0, ids.hostId, ids.count]);
      // Root of the user namespace administers the network namespace: the namespace owns it.
      await runCommand('nsenter', [`--user=${userns}`, `--net=${netns}`, 'ip', 'link', 'set', 'lo', 'up']);
    } finally {
      await unpinNamespace(netns);
      await unpinNamespace(userns);
    }
    assert.deepEqual(await mountedUnder(root), []);
  });

  test('without idmapUpper, the upper layer holds host ids', async () => {
    const o: IdmappedOverlay = { ...(await layers()), ids };
    await chown(o.upper as string, ids.hostId, ids.hostId);
    await mountIdmappedOverlay(o);
    try {
      assert.equal((await stat(join(o.target, 'etc', 'hostname'))).uid, ids.hostId);
      await asSandboxRoot(`echo x > ${o.target}/x`);
    } finally {
      await unmountAll(o.target);
    }
    assert.equal((await lstat(join(o.upper as string, 'x'))).uid, ids.hostId);
  });

  test("the host's root cannot create files through an idmapped upper", async () => {
    const o: IdmappedOverlay = { ...(await layers()), ids, idmapUpper: true };
    await mountIdmappedOverlay(o);
    try {
      await assert.rejects(writeFile(join(o.target, 'x'), ''), { code: 'EOVERFLOW' });
    } finally {
      await unmountAll(o.target);
    }
  });

  test('failures say why and leave nothing mounted', async () => {
    const o = await layers();
    await rm(o.lowers[1] as string, { recursive: true });
    await assert.rejects(mountIdmappedOverlay({ ...o, ids, idmapUpper: true }), (e: Error) => {
      assert.ok(e instanceof IdmappedOverlayError && !e.unsupported);
      assert.match(e.message, /open_tree .*bottom: No such file or directory/);
      return true;
    });
    await assert.rejects(
      mountIdmappedOverlay({ ...o, lowers: [o.lowers[0] as string], ids, options: ['bogus=1'] }),
      /Unknown parameter 'bogus'/,
    );
    await assert.rejects(
      mountIdmappedOverlay({ ...o, ids, attachDir: undefined, passing: 'path' }),
      /passing layers by path needs attachDir/,
    );
    assert.deepEqual(await mountedUnder(root), []);
    assert.deepEqual(await readdir(o.attachDir), []);
  });
});

test('a container config in a user namespace: its mappings and the namespace to join', () => {
  const config = ociConfig(
    {
      id: 'x',
      hostname: 'x',
      resources: { memoryMiB: 256, vcpus: 1 },
      network: { netns: 'n' },
    } as unknown as RuntimeSpec,
    '/r',
    { noNewPrivileges: false, maxOpenFiles: 1024, protectAgent: false },
  ) as { linux: Record<string, unknown> };
  const c = withUserNamespace(config, { path: '/u', ...ids });
  assert.deepEqual(c.linux.uidMappings, [{ containerID: 0, hostID: ids.hostId, size: ids.count }]);
  assert.deepEqual(c.linux.gidMappings, c.linux.uidMappings);
  assert.deepEqual((c.linux.namespaces as object[]).at(-1), { type: 'user', path: '/u' });
  assert.equal(config.linux.uidMappings, undefined, 'the original is unchanged');
});

test('aiva doctor says why containers get no user namespace, and the fix', () => {
  assert.deepEqual(withoutUserNamespaces('runc', { supported: true, passing: 'fd' }), { why: '' });
  const old = withoutUserNamespaces('runc', {
    supported: false,
    reason: 'fsconfig lowerdir+: Invalid argument',
  });
  assert.match(old.why, /the sandbox's root is the host's root .*lowerdir\+: Invalid argument/);
  assert.match(old.fix ?? '', /Linux 6\.8/);
  assert.match(withoutUserNamespaces('crun', { supported: true, passing: 'fd' }).why, /not tested with crun/);
  const off = withoutUserNamespaces(
    'runc',
    { supported: true, passing: 'fd' },
    { AIVA_USER_NAMESPACES: 'off' },
  );
  assert.match(off.why, /turned off \(AIVA_USER_NAMESPACES=off\)/);
  assert.throws(
    () => userNamespacesSetting({ AIVA_USER_NAMESPACES: 'maybe' }),
    /must be on or off, not "maybe"/,
  );
  assert.equal(userNamespacesSetting({}), true);
});
