// envd runs on any Linux root filesystem: real sandboxes of templates made from tiny
// root filesystems (empty; with a foreign libc; with users but nothing else), on the
// container driver and once on qemu-microvm. Everything they run comes from the guest
// layer: its busybox (init's shell and tools, and the shell of commands where there is
// no /bin/bash), its tini, its node with its own libraries and loader.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  discardSnapshotsOf,
  execInSandbox,
  type SandboxInfo,
  type SandboxManager,
  type TemplateDefinition,
} from '../src/index.js';
import type { DriverName } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { closeManager, images, testManager } from './helpers/test-node.js';

checkHostLeaks();

/** Makes a tiny root filesystem; what it is named by is also what its hash covers. */
interface TinyRootfs {
  name: string;
  fill(rootfs: string): Promise<void>;
}

const garbage = Buffer.from('this is not an ELF file\n');

const ROOTFS: Record<'empty' | 'foreignLibc' | 'users', TinyRootfs> = {
  // Nothing at all: the init makes its own mount points.
  empty: { name: 'empty', fill: async () => {} },
  // Loaders and libcs that would crash anything that touched them, and a node, tini and
  // sh that are not programs: envd must use none of them.
  foreignLibc: {
    name: 'foreign-libc',
    fill: async (rootfs) => {
      const files = [
        'lib/x86_64-linux-gnu/libc.so.6',
        'lib/x86_64-linux-gnu/libstdc++.so.6',
        'lib64/ld-linux-x86-64.so.2',
        'lib/ld-musl-x86_64.so.1',
        'etc/ld.so.cache',
        'usr/bin/node',
        'usr/bin/tini',
        'bin/sh',
      ];
      for (const f of files) {
        await mkdir(join(rootfs, f, '..'), { recursive: true });
        await writeFile(join(rootfs, f), garbage, { mode: 0o755 });
      }
    },
  },
  // An account database with root and `user`, and user's home.
  users: {
    name: 'users',
    fill: async (rootfs) => {
      await mkdir(join(rootfs, 'etc'));
      await writeFile(
        join(rootfs, 'etc/passwd'),
        'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n',
      );
      await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\nuser:x:1000:\n');
      await mkdir(join(rootfs, 'root'), { mode: 0o700 });
      await mkdir(join(rootfs, 'home/user'), { recursive: true });
      await chown(join(rootfs, 'home/user'), 1000, 1000);
    },
  },
};

/** What the tests made in the shared store: tiny layers, and templates (VM snapshots are made of them). */
const made: string[] = [];
const templates = new Set<string>();

/** The template of a tiny rootfs: its one layer made in the store, if missing. */
async function tinyTemplate(tiny: TinyRootfs): Promise<TemplateDefinition> {
  const hash = createHash('sha256')
    .update(`aiva guest-anywhere test rootfs v1 ${tiny.name} ${tiny.fill.toString()}`)
    .digest('hex');
  await images.artefacts.ensureLayer(
    hash,
    { role: 'step', template: 'tiny' },
    `tiny rootfs ${tiny.name}`,
    {},
    async (rootfs) => {
      await mkdir(rootfs, { mode: 0o755 });
      await tiny.fill(rootfs);
    },
  );
  made.push(hash);
  return {
    name: `tiny-${tiny.name}`,
    layers: [hash],
    diskSizeMiB: 256,
    defaults: { user: 'root', workdir: '/', vcpus: 1, memoryMiB: 256 },
  };
}

describe('sandboxes of templates that bring nothing', () => {
  let m: SandboxManager;
  before(async () => {
    m = await testManager({ defaultDriver: 'container' });
  });
  after(async () => {
    await closeManager(m);
    // The tiny layers, the templates made from them and their VM snapshots go; the guest
    // layer stays.
    await images.removeLayers(made);
    await discardSnapshotsOf(images.paths.snapshots, templates);
  });

  const open = async (tiny: TinyRootfs, driver: DriverName = 'container'): Promise<SandboxInfo> => {
    const s = await m.create({ template: await tinyTemplate(tiny), driver });
    templates.add(s.template.hash);
    return s;
  };
  const exec = (s: SandboxInfo, cmd: string, user = 'root') =>
    execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user });

  test('an empty rootfs: envd answers, commands run in busybox sh as root', async () => {
    const s = await open(ROOTFS.empty);
    try {
      const r = await exec(s, 'echo hello; id -u');
      assert.deepEqual([r.exitCode, r.stdout, r.stderr], [0, 'hello\n0\n', '']);
      // The fallback, not a bash the image happens to have; the init made /tmp and /etc.
      const where = await exec(
        s,
        'test -e /bin/bash || echo no-bash; echo "$0"; cat /proc/1/cmdline | tr "\\0" " "',
      );
      assert.match(where.stdout, /^no-bash\nsh\n\/usr\/local\/lib\/aiva\/tini -s -- /);
      assert.match((await exec(s, 'ls -d /tmp /etc /proc/self')).stdout, /^\/etc\n\/proc\/self\n\/tmp\n$/);
      // No account database: root is implicit, anyone else is a clear error of that call.
      await assert.rejects(
        exec(s, 'true', 'user'),
        /user 'user' does not exist \(the sandbox has no \/etc\/passwd\)/,
      );
      assert.equal((await exec(s, 'echo still here')).stdout, 'still here\n');
    } finally {
      await m.kill(s.id);
    }
  });

  test('a foreign libc and loader in the rootfs are never loaded', async () => {
    const s = await open(ROOTFS.foreignLibc);
    try {
      const r = await exec(s, 'echo hello; id -u');
      assert.deepEqual([r.exitCode, r.stdout], [0, 'hello\n0\n']);
      // envd maps the guest layer's libc, not the image's.
      // The command's parent is envd (the native helper execs the command in place).
      const maps = await exec(s, 'grep libc.so /proc/$PPID/maps');
      const libs = new Set(
        maps.stdout
          .trim()
          .split('\n')
          .map((l) => l.split(/\s+/).pop()),
      );
      assert.deepEqual([...libs], ['/usr/local/lib/aiva/runtime/lib/libc.so.6']);
    } finally {
      await m.kill(s.id);
    }
  });

  test('a rootfs with users: commands run as user with its uid and home', async () => {
    const s = await open(ROOTFS.users);
    try {
      const r = await exec(s, 'id -u; id -g; echo "$HOME"; pwd', 'user');
      assert.deepEqual([r.exitCode, r.stdout], [0, '1000\n1000\n/home/user\n/\n']);
      assert.equal((await exec(s, 'echo "$HOME"')).stdout, '/root\n');
      await assert.rejects(exec(s, 'true', 'nobody'), /user 'nobody' does not exist/);
      // Only containers used it: the template has no disk yet, and the store still lists it.
      const row = (await images.list()).find((a) => a.hash === s.template.hash);
      assert.deepEqual([row?.apparentBytes, row?.current], [0, false]);
    } finally {
      await m.kill(s.id);
    }
  });

  test('an empty rootfs boots as a microVM (initramfs → guest init → envd)', async () => {
    const s = await open(ROOTFS.empty, 'qemu-microvm');
    try {
      const r = await exec(s, 'echo hello; id -u; cat /proc/1/cmdline | tr "\\0" " "');
      assert.equal(r.exitCode, 0);
      assert.match(r.stdout, /^hello\n0\n\/usr\/local\/lib\/aiva\/tini -s -- /);
    } finally {
      await m.kill(s.id);
    }
  });
});
