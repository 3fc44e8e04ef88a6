// A create's volumes as the node checks them before anything is made: a directory of
// this node's (not a symlink, not another node's), a path a volume may be mounted at,
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

const ID = `vol${'a'.repeat(20)}`;
const LINK = `vol${'b'.repeat(20)}`;
let home: string;
const container = new ContainerRuntime({ oci: 'runc', stateRoot: '/nonexistent' });
const microvm = new QemuRuntime({ accel: 'tcg' });

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'aiva-sandbox-volumes-'));
  await mkdir(volumeDir(home, ID), { recursive: true });
  await symlink('/etc', volumeDir(home, LINK));
});
after(() => rm(home, { recursive: true, force: true }));

const refused = (message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof SandboxSpecError, String(e));
  assert.match(e.message, message);
  return true;
};

test('containers take a volume of this node at a normalized path', async () => {
  const checked = await checkVolumes(home, [{ volumeId: ID, path: '/mnt//data/' }], container);
  assert.deepEqual(checked, [{ volumeId: ID, path: '/mnt/data' }]);
  assert.deepEqual(volumeSpecs(home, checked), [{ hostDir: volumeDir(home, ID), path: '/mnt/data' }]);
  assert.equal(await checkVolumes(home, [], container), undefined);
});

test('a microVM’s create with volumes is refused, saying so', async () => {
  await assert.rejects(
    checkVolumes(home, [{ volumeId: ID, path: '/data' }], microvm),
    refused(/not supported by the qemu-microvm runtime yet/),
  );
  assert.equal(await checkVolumes(home, undefined, microvm), undefined);
});

test('unknown or linked volumes, bad paths and two at one path are refused', async () => {
  const cases: [string, string, RegExp][] = [
    [`vol${'c'.repeat(20)}`, '/data', /is not on this node/],
    [LINK, '/data', /is not on this node/],
    ['../etc', '/data', /is not a volume id/],
    [ID, 'data', /not an absolute path/],
    [ID, '/', /root directory/],
    [ID, '/dev/shm/x', /is under/],
    [ID, '/a/../b', /must not contain/],
  ];
  for (const [volumeId, path, message] of cases)
    await assert.rejects(checkVolumes(home, [{ volumeId, path }], container), refused(message));
  await assert.rejects(
    checkVolumes(
      home,
      [
        { volumeId: ID, path: '/a' },
        { volumeId: ID, path: '/a/' },
      ],
      container,
    ),
    refused(/two volumes are mounted at \/a/),
  );
});
