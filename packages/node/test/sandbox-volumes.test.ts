// A create's volumes as the node checks them before anything is made: a volume this node
// has mounted (not a bare directory, not a symlink, not another node's), a path a volume
// may be mounted at, one volume per path, and a driver that mounts volumes. A microVM
// holds its volumes alone: it takes none another sandbox mounts, nobody takes one it
// holds, and its paths must fit on its kernel's command line (409s and 400s).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ContainerRuntime } from '../src/runtime/container/container-runtime.js';
import { QemuRuntime } from '../src/runtime/qemu/qemu-runtime.js';
import { SandboxSpecError } from '../src/runtime/types.js';
import type { SandboxRecord } from '../src/sandbox/sandbox-record.js';
import {
  checkVolumeHolders,
  checkVolumes,
  VolumeBusyError,
  volumeDir,
  volumeSpecs,
} from '../src/sandbox/sandbox-volumes.js';
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
  assert.deepEqual(volumeSpecs(home, checked), [
    { hostDir: volumeDir(home, ID), image: `${volumeDir(home, ID)}.ext4`, path: '/mnt/data' },
  ]);
  assert.equal(await checkVolumes(disks, [], container), undefined);
});

test('a microVM takes a volume at a path its kernel command line can carry', async () => {
  assert.deepEqual(await checkVolumes(disks, [{ volumeId: ID, path: '/home/user/data' }], microvm), [
    { volumeId: ID, path: '/home/user/data' },
  ]);
  for (const path of ['/my data', '/"x"', `/${'a'.repeat(200)}`, '/caf\u00e9'])
    await assert.rejects(
      checkVolumes(disks, [{ volumeId: ID, path }], microvm),
      refused(/in a microVM a volume's path has at most 200 characters/),
    );
  // Containers take them.
  assert.ok(await checkVolumes(disks, [{ volumeId: ID, path: '/my data' }], container));
  assert.equal(await checkVolumes(disks, undefined, microvm), undefined);
});

test('a volume a microVM holds is refused to everyone else, and the host has it unmounted meanwhile', async () => {
  await disks.hold(ID, 'vmsandbox');
  try {
    assert.equal(disks.holderOf(ID), 'vmsandbox');
    assert.equal(await disks.isMounted(ID), false, 'its image is the VM’s disk');
    for (const runtime of [container, microvm])
      await assert.rejects(checkVolumes(disks, [{ volumeId: ID, path: '/data' }], runtime), (e: unknown) => {
        assert.ok(e instanceof VolumeBusyError, String(e));
        assert.match(e.message, /attached to microVM sandbox vmsandbox, which holds it alone/);
        assert.deepEqual(e.holders, ['vmsandbox']);
        return true;
      });
    await assert.rejects(disks.remove(ID), /held by sandbox vmsandbox/);
    await disks.letGo(ID, 'someone-else');
    assert.equal(disks.holderOf(ID), 'vmsandbox', 'only its holder lets it go');
  } finally {
    await disks.letGo(ID, 'vmsandbox');
  }
  assert.equal(disks.holderOf(ID), undefined);
  assert.equal(await disks.isMounted(ID), true, 'mounted on the host again');
});

test('the node’s other sandboxes: a microVM takes no volume in use; nobody takes one a microVM holds', () => {
  const record = (id: string, driver: SandboxRecord['driver'], state: SandboxRecord['state'] = 'running') =>
    ({ id, driver, state, volumes: [{ volumeId: ID, path: '/data' }] }) as SandboxRecord;
  const modeOf = (d: SandboxRecord['driver']) =>
    d === 'container' ? 'shared' : d === 'qemu-microvm' ? 'exclusive' : false;
  const mounts = [{ volumeId: ID, path: '/v' }];
  const busy = (holders: string[], message: RegExp) => (e: unknown) => {
    assert.ok(e instanceof VolumeBusyError, String(e));
    assert.deepEqual(e.holders, holders);
    assert.match(e.message, message);
    return true;
  };
  // Containers share.
  checkVolumeHolders(
    [record('c1', 'container'), record('c2', 'container', 'paused')],
    mounts,
    'shared',
    modeOf,
  );
  assert.throws(
    () =>
      checkVolumeHolders(
        [record('c1', 'container'), record('c2', 'container', 'shelved')],
        mounts,
        'exclusive',
        modeOf,
      ),
    busy(['c1', 'c2'], /mounted by sandbox c1, c2: a microVM holds its volumes alone/),
  );
  for (const mode of ['shared', 'exclusive'] as const)
    assert.throws(
      () => checkVolumeHolders([record('vm1', 'qemu-microvm', 'suspended')], mounts, mode, modeOf),
      busy(['vm1'], /attached to microVM sandbox vm1/),
    );
  // Sandboxes that ended, or failed and were freed, hold nothing.
  const freed = { ...record('f', 'qemu-microvm', 'error'), runtime: undefined, network: undefined };
  checkVolumeHolders([record('s', 'qemu-microvm', 'stopped'), freed], mounts, 'exclusive', modeOf);
  checkVolumeHolders([record('vm1', 'qemu-microvm')], undefined, 'exclusive', modeOf);
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
