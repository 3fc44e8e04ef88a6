// A create's volumes as the node checks them before anything is made: a volume this node
// has mounted (not a bare directory, not a symlink, not another node's), a path a volume may be mounted at,
// one volume per path, and a driver that binds volumes — a microVM's create with volumes
// is refused (400), never run without them.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ContainerRuntime } from '../src/runtime/container/container-runtime.js';
import { QemuRuntime } from '../src/runtime/qemu/qemu-runtime.js';
import { SandboxSpecError } from '../src/runtime/types.js';
import { checkVolumes, volumeDir, volumeSpecs } from '../src/sandbox/sandbox-volumes.js';
import { VolumeDisks } from '../src/sandbox/volume-disks.js';

const ID = `vol${'a'.repeat(20)}`;
const LINK = `vol${'b'.repeat(20)}`;
const BARE = `vol${'d'.repeat(20)}`;
let home: string;
let disks: VolumeDisks;
const container = new ContainerRuntime({ oci: 'runc', stateRoot: '/nonexistent' });
const microvm = new QemuRuntime({ accel: 'tcg' });

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'aiva-sandbox-volumes-'));
  disks = new VolumeDisks(home);
  await disks.create(ID, 8);
  await symlink('/etc', volumeDir(home, LINK));
  // A directory where a volume would be, but no image mounted there: not a volume.
  await mkdir(volumeDir(home, BARE));
});
after(async () => {
  await disks.remove(ID);
  await rm(home, { recursive: true, force: true });
});

const refused = (message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof SandboxSpecError, String(e));
  assert.match(e.message, message);
  return true;
};

test('containers take a volume of this node at a normalized path', async () => {
  const checked = await checkVolumes(disks, [{ volumeId: ID, path: '/mnt//data/' }], container);
  assert.deepEqual(checked, [{ volumeId: ID, path: '/mnt/data' }]);
  assert.deepEqual(volumeSpecs(home, checked), [{ hostDir: volumeDir(home, ID), path: '/mnt/data' }]);
  assert.equal(await checkVolumes(disks, [], container), undefined);
});

test('a microVM’s create with volumes is refused, saying so', async () => {
  await assert.rejects(
    checkVolumes(disks, [{ volumeId: ID, path: '/data' }], microvm),
    refused(/not supported by the qemu-microvm runtime yet/),
  );
  assert.equal(await checkVolumes(disks, undefined, microvm), undefined);
});

test('unknown or linked volumes, bad paths and two at one path are refused', async () => {
  const cases: [string, string, RegExp][] = [
    [`vol${'c'.repeat(20)}`, '/data', /is not on this node/],
    [LINK, '/data', /is not on this node/],
    [BARE, '/data', /is not on this node \(or its image is not mounted\)/],
    ['../etc', '/data', /is not a volume id/],
    [ID, 'data', /not an absolute path/],
    [ID, '/', /root directory/],
    [ID, '/dev/shm/x', /is under/],
    [ID, '/a/../b', /must not contain/],
  ];
  for (const [volumeId, path, message] of cases)
    await assert.rejects(checkVolumes(disks, [{ volumeId, path }], container), refused(message));
  await assert.rejects(
    checkVolumes(
      disks,
      [
        { volumeId: ID, path: '/a' },
        { volumeId: ID, path: '/a/' },
      ],
      container,
    ),
    refused(/two volumes are mounted at \/a/),
  );
});
