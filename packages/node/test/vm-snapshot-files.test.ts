// VM snapshots as files: their key names what they are made of (content hashes, sizes,
// the command line), not where the image store is; `aiva image rm` removes the snapshots
// of the images it removes.
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { discardSnapshotsOf, snapshotLocation } from '../src/runtime/qemu/vm-snapshot.js';
import type { RuntimeSpec } from '../src/runtime/types.js';
import { tempDir } from './helpers/temp-dir.js';

const root = await tempDir('aiva-snapshots-');

function spec(store: string, template = 'aa11', memoryMiB = 512): RuntimeSpec {
  return {
    id: 'x1',
    dir: `/var/lib/aiva/sandboxes/x1`,
    template: {
      name: 'base',
      hash: template,
      disk: `${store}/images/${template}/rootfs.ext4`,
      diskSizeMiB: 4096,
    },
    kernel: { hash: 'kk22', kernel: `${store}/kernels/kk22/vmlinuz`, initrd: `${store}/kernels/kk22/initrd` },
    resources: { vcpus: 1, memoryMiB, diskMiB: 4096 },
    network: {
      netns: 'n',
      address: '10.0.0.2',
      guest: { address: '169.254.0.21', prefix: 30, gateway: '169.254.0.22' },
      tap: 'tap0',
    },
    hostname: 'sandbox',
    consoleLog: '/var/lib/aiva/sandboxes/x1/console.log',
  } as unknown as RuntimeSpec;
}

test('the key is the same wherever the image store is, and differs with the template or size', () => {
  const key = (s: RuntimeSpec) => snapshotLocation(root, s, 'tcg', 'qemu-system-x86_64').key;
  assert.equal(key(spec('/var/lib/aiva/images')), key(spec('/tmp/aiva-up-x/images')));
  assert.notEqual(key(spec('/var/lib/aiva/images')), key(spec('/var/lib/aiva/images', 'bb33')));
  assert.notEqual(key(spec('/var/lib/aiva/images')), key(spec('/var/lib/aiva/images', 'aa11', 256)));
});

test('discardSnapshotsOf removes the snapshots of the given templates or kernels, and only those', async () => {
  const make = async (name: string, manifest?: object) => {
    await mkdir(join(root, name), { recursive: true });
    await writeFile(join(root, name, 'memory'), 'x');
    if (manifest) await writeFile(join(root, name, 'snapshot.json'), JSON.stringify(manifest));
  };
  await make('aa11-512M-1-k1', { template: 'aa11', kernel: 'kk22' });
  await make('bb33-512M-1-k2', { template: 'bb33', kernel: 'kk22' });
  await make('cc44-512M-1-k3', { template: 'cc44', kernel: 'kk99' });
  await make('dd55-512M-1-k4');
  await mkdir(join(root, 'locks'), { recursive: true });
  assert.deepEqual((await discardSnapshotsOf(root, new Set(['aa11', 'dd55']))).sort(), [
    'aa11-512M-1-k1',
    'dd55-512M-1-k4',
  ]);
  assert.deepEqual(await discardSnapshotsOf(root, new Set(['kk22'])), ['bb33-512M-1-k2'], 'by kernel');
  assert.deepEqual((await readdir(root)).sort(), ['cc44-512M-1-k3', 'locks']);
  assert.deepEqual(await discardSnapshotsOf(join(root, 'missing'), new Set(['cc44'])), []);
});
