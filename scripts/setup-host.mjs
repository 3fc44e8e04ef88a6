#!/usr/bin/env node
// Prepares this host for `npm start` (purpose "run") or `npm test` (purpose "test"):
// Debian packages, npm dependencies and the TypeScript build. Uses only Node's
// standard library because it runs before `npm ci`. Says what it does and why; does
// nothing that is already done.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const purpose = process.argv[2] ?? 'run';
if (purpose !== 'run' && purpose !== 'test') {
  console.error(`usage: setup-host.mjs run|test (got ${purpose})`);
  process.exit(2);
}

// Debian packages aiva shells out to, and why. `test` adds what only the tests use.
const packages = {
  run: {
    'qemu-system-x86': 'microVM driver (qemu-system-x86_64 -M microvm)',
    'qemu-utils': 'copy-on-write sandbox disks (qemu-img)',
    runc: 'container driver',
    crun: 'container driver (alternative OCI runtime)',
    lxcfs:
      'containers see their own memory and CPUs in /proc (free, top, os.totalmem(), os.cpus()), not the host’s',
    mmdebstrap: 'building template root filesystems from Debian packages',
    e2fsprogs: 'ext4 images without mounting (mkfs.ext4 -d, debugfs)',
    'busybox-static': "the microVM initramfs, and the guest layer's shell and tools (static /bin/busybox)",
    tini: "the guest layer's init reaper (static /usr/bin/tini-static), so templates need no tini",
    cpio: 'packing the microVM initramfs',
    kmod: 'module dependencies of the guest kernel (depmod)',
    'util-linux': 'private mount namespaces for builds (unshare)',
    iproute2: 'sandbox networking (ip)',
    nftables: 'sandbox firewall (nft)',
    conntrack: 'dropping a sandbox’s open connections when its policy changes (conntrack -D)',
    gcc: "building envd's static native helper (aiva-exec: PTYs, users, xattrs, inotify)",
    'libc6-dev': "the C library (static) envd's native helper is linked with",
    skopeo: 'pulling registry images and importing OCI layouts and docker save archives',
    zstd: 'unpacking zstd-compressed layers of OCI images',
    attr: 'marking opaque directories of OCI image layers for overlayfs (setfattr; tests read xattrs with getfattr)',
    openssl: 'aiva tls init: the local CA and the certificates `aiva up --domain` serves',
  },
  test: {
    'docker-registry': 'the OCI image tests run a registry of their own on 127.0.0.1',
    'apache2-utils': 'the OCI image tests make the registry password file (htpasswd -B)',
    'postgresql-15':
      'the --database-url, node-token and cluster tests run a PostgreSQL server of their own (initdb, pg_ctl)',
    systemd: 'the deployment test checks the systemd unit files (systemd-analyze verify)',
    'dpkg-dev': 'the template package-step test indexes the apt repository it serves (dpkg-scanpackages)',
    git: 'the template package-step test makes a repository and serves it (git daemon)',
    chromium:
      "the web console's end-to-end test drives Debian's Chromium headless (playwright-core, which downloads no browser)",
  },
};
const wanted = { ...packages.run, ...(purpose === 'test' ? packages.test : {}) };

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    console.error(`aiva setup: \`${cmd} ${args.join(' ')}\` failed with exit code ${r.status}`);
    process.exit(r.status ?? 1);
  }
}

function installed(pkg) {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

const missing = Object.keys(wanted).filter((p) => !installed(p));
if (missing.length > 0) {
  console.log('aiva setup: installing Debian packages:');
  for (const p of missing) console.log(`  ${p.padEnd(16)} ${wanted[p]}`);
  if (process.getuid?.() !== 0) {
    console.error(
      `aiva setup: this needs root. Run: sudo apt-get install --no-install-recommends ${missing.join(' ')}`,
    );
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-q'], { env });
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env });
}

// The unprivileged user QEMU drops to after start-up (`-runas`).
const vmUser = 'aiva-vm';
if (spawnSync('id', ['-u', vmUser]).status !== 0 && process.getuid?.() === 0) {
  console.log(`aiva setup: creating system user ${vmUser} (microVMs run as it once started)`);
  run('useradd', [
    '--system',
    '--no-create-home',
    '--home-dir',
    '/nonexistent',
    '--shell',
    '/usr/sbin/nologin',
    vmUser,
  ]);
}

// npm dependencies: install when node_modules is missing or older than the lockfile.
const stamp = join(root, 'node_modules', '.package-lock.json');
const lock = join(root, 'package-lock.json');
if (!existsSync(stamp) || statSync(stamp).mtimeMs < statSync(lock).mtimeMs) {
  console.log('aiva setup: installing npm dependencies (npm ci)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

// Build: TypeScript (incremental), the envd bundle and the web console's.
const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
console.log(`aiva setup: building aiva ${version}`);
run('npm', ['run', '-s', 'build']);
