#!/usr/bin/env node
// A hand-run proof of container sandboxes in user namespaces (not part of `npm test`):
// runs the base template's layers, idmapped, under runc with a user namespace, twice —
// in a network namespace owned by the sandbox's user namespace, and in one of the host's
// (as `ip netns add` makes today) — and prints what works in each. Needs `npm run build`
// and a built base template; takes the template's layers read-only.
//
//   flock /tmp/aiva-tests.lock node scripts/userns-e2e.mjs [runc|crun]
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  mountIdmappedOverlay,
  pinUserNamespace,
  sandboxIdRange,
  unpinNamespace,
} from '../packages/node/dist/src/host/idmapped-overlay.js';
import { unmountAll } from '../packages/node/dist/src/host/mounts.js';
import { ociConfig } from '../packages/node/dist/src/runtime/container/oci-config.js';
import {
  hostOwnedNetnsSysctls,
  withUserNamespace,
} from '../packages/node/dist/src/runtime/container/userns-config.js';

const oci = process.argv[2] ?? 'runc';
const home = process.env.AIVA_HOME || '/var/lib/aiva';
const ids = sandboxIdRange(3);

const sh = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
};

async function baseLayers() {
  const dir = join(home, 'images', 'images');
  const images = [];
  for (const h of await readdir(dir)) {
    const img = JSON.parse(await readFile(join(dir, h, 'image.json'), 'utf8').catch(() => '{}'));
    if (img.name === 'base' && img.kind === 'template') images.push(img);
  }
  images.sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt)));
  if (!images[0]) throw new Error(`no base template under ${dir}`);
  return images[0].layers.map((h) => join(home, 'images', 'layers', h, 'rootfs'));
}

// What the sandbox tries, one line each.
const PROBE = String.raw`
t() { if sh -c "$2" >/dev/null 2>&1; then echo "ok    $1"; else echo "FAIL  $1: $(sh -c "$2" 2>&1 | tail -1)"; fi; }
echo "id: $(id)"; echo "uid_map: $(cat /proc/self/uid_map)"; echo "/ owner: $(stat -c %u:%g /)"
t 'root writes /root' 'touch /root/x'
t 'user sudo (setuid root binary)' 'su user -s /bin/sh -c "sudo -n true"'
t 'sysfs is the sandbox network view' 'ls /sys/class/net | grep -qx lo && ! ls /sys/class/net | grep -q aiva'
t 'root raw ICMP socket' 'python3 -c "import socket; socket.socket(2, 3, 1)"'
t 'user ICMP echo socket (ping without caps)' 'su user -s /bin/sh -c "python3 -c \"import socket; socket.socket(2, 2, 1)\""'
t 'root binds port 80' 'python3 -c "import socket; socket.socket().bind((\"\", 80))"'
t 'user binds port 80' 'su user -s /bin/sh -c "python3 -c \"import socket; socket.socket().bind((\\\"\\\", 81))\""'
t '/dev/null, /dev/urandom' 'echo x > /dev/null && head -c1 /dev/urandom | wc -c | grep -q 1'
t 'chown to a mapped id' 'touch /tmp/c && chown 1000:1000 /tmp/c'
t 'file capabilities can be set' 'touch /root/cap && setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= /root/cap'
echo "oom_score_adj: $(cat /proc/self/oom_score_adj)"
t 'no nested user namespaces (seccomp)' '! unshare -U true'
t 'no mounts' '! mount -t tmpfs x /mnt'
`;

async function run(mode) {
  const dir = await mkdtemp('/tmp/aiva-userns-e2e-');
  await chmod(dir, 0o711); // the sandbox's root must be able to reach its rootfs
  const netnsName = `uxp-${mode}-${process.pid}`;
  const netns = `/run/netns/${netnsName}`;
  const userns = join(dir, 'userns');
  const p = { upper: join(dir, 'upper'), work: join(dir, 'overlay-work'), rootfs: join(dir, 'rootfs') };
  const id = `uxp-${mode}-${process.pid}`;
  const state = join(dir, 'oci-state');
  let mounted = false;
  try {
    for (const d of [p.work, p.rootfs, join(dir, 'bundle'), join(p.upper, 'root')])
      await mkdir(d, { recursive: true });
    await chmod(join(p.upper, 'root'), 0o700);
    // The host cannot create files through an idmapped upper as its root: write them first.
    await writeFile(join(p.upper, 'root', 'probe.sh'), PROBE);
    if (mode === 'owned') await pinUserNamespace(ids, userns, netns);
    else {
      sh('ip', ['netns', 'add', netnsName]);
      for (const s of hostOwnedNetnsSysctls(ids)) sh('ip', ['netns', 'exec', netnsName, 'sysctl', '-qw', s]);
    }
    sh('ip', ['-n', netnsName, 'link', 'set', 'lo', 'up']);
    await mountIdmappedOverlay({
      lowers: await baseLayers(),
      ...p,
      target: p.rootfs,
      ids,
      idmapUpper: true,
      userns: mode === 'owned' ? userns : undefined,
    });
    mounted = true;
    const spec = {
      id,
      hostname: 'sbx',
      resources: { memoryMiB: 512, vcpus: 1 },
      network: { netns: netnsName },
    };
    const hard = Number(
      /^Max open files\s+\S+\s+(\d+)/m.exec(await readFile('/proc/self/limits', 'utf8'))?.[1],
    );
    const base = ociConfig(spec, p.rootfs, { noNewPrivileges: false, maxOpenFiles: hard || 1024 });
    const config = withUserNamespace(base, {
      ids,
      userns: mode === 'owned' ? userns : undefined,
      netnsOwned: mode === 'owned',
    });
    config.linux.cgroupsPath = `/${id}`;
    config.process.args = ['/bin/sh', '/root/probe.sh'];
    await writeFile(join(dir, 'bundle', 'config.json'), JSON.stringify(config));
    const r = sh(oci, ['--root', state, 'run', '--bundle', join(dir, 'bundle'), id], { input: '' });
    console.log(r.out);
    // Seen from the host, the sandbox's root is its first host id.
    config.process.args = ['/bin/sleep', '30'];
    await writeFile(join(dir, 'bundle', 'config.json'), JSON.stringify(config));
    const pidFile = join(dir, 'pid');
    const d = sh(
      oci,
      ['--root', state, 'run', '--detach', '--pid-file', pidFile, '--bundle', join(dir, 'bundle'), id],
      {
        input: '',
      },
    );
    if (d.ok) {
      const pid = (await readFile(pidFile, 'utf8')).trim();
      console.log(`host view of the sandbox's root: ${sh('ps', ['-o', 'uid=,gid=,comm=', '-p', pid]).out}`);
    } else console.log(`detached run failed: ${d.out}`);
    console.log(`upper layer on disk: ${sh('stat', ['-c', '%n %u:%g', join(p.upper, 'root', 'x')]).out}`);
  } finally {
    sh(oci, ['--root', state, 'delete', '--force', id]);
    if (mounted) await unmountAll(p.rootfs);
    if (mode === 'owned') {
      await unpinNamespace(netns);
      await unpinNamespace(userns);
    } else sh('ip', ['netns', 'del', netnsName]);
    await rm(dir, { recursive: true, force: true });
  }
}

for (const mode of ['owned', 'host']) {
  console.log(
    `\n=== ${oci}, user namespace ${ids.hostId}+${ids.count}, network namespace owned by ${mode === 'owned' ? "the sandbox's user namespace" : "the host's user namespace (+ sysctls, /sys as tmpfs)"}`,
  );
  await run(mode);
}
