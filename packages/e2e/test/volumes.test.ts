// Volumes through the e2b SDK (2.51): `Volume.create/connect/getInfo/list/destroy`, the
// instance's content methods, and `volumeMounts` in `Sandbox.create`, against `aiva up`
// (containers) with small volumes (32 MiB) and a small quota (96 MiB), reached by
// environment variables only (E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, and
// E2B_VOLUME_API_URL for the content API). A volume is an ext4 image mounted on the host:
// a sandbox that writes past it gets ENOSPC and the host's disk gives it no more.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import {
  AuthenticationError,
  RateLimitError,
  Sandbox,
  SandboxError,
  Volume,
  VolumeError,
  VolumeFileType,
  VolumeNotFoundError,
  VolumePathNotFoundError,
} from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

/** Volumes of 32 MiB unless asked otherwise, and 96 MiB of them for a team. */
const server = aivaUpForFile(['--volume-quota', '96', '--volume-size', '32']);

const volumeDir = (id: string) => join(server.up.home, 'volumes', id);
const volumeImage = (id: string) => `${volumeDir(id)}.ext4`;
/** Whether something is mounted at `dir` on the host. */
const mountedAt = async (dir: string) =>
  (await readFile('/proc/self/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === dir);

/** Once the test ends: its sandboxes killed, then its volume destroyed (one in use cannot go). */
function cleanUp(t: TestContext, vol: Volume, sandboxes: Sandbox[] = []): Sandbox[] {
  t.after(async () => {
    for (const s of sandboxes) await s.kill();
    await Volume.destroy(vol.volumeId);
  });
  return sandboxes;
}

/** Rejects with an error of `type` whose message matches `message`. */
function failsWith(type: abstract new (...args: never[]) => Error, message: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof type, `${String(e)} is not a ${type.name}`);
    assert.match((e as Error).message, message);
    return true;
  };
}

describe('volumes through the e2b SDK', () => {
  test('what one sandbox writes to a mounted volume, the next one reads (and the content API sees)', async (t) => {
    const vol = await Volume.create('shared-data');
    const made = cleanUp(t, vol);
    assert.match(vol.volumeId, /^vol[a-f0-9]{20}$/);
    assert.equal(vol.name, 'shared-data');
    assert.ok(vol.token.length >= 40);
    assert.ok(await mountedAt(volumeDir(vol.volumeId)), 'the volume’s image is mounted on the node');

    const first = await Sandbox.create({ volumeMounts: { '/mnt/data': vol } });
    made.push(first);
    const wrote = await first.commands.run(
      'echo hello > /mnt/data/from-first.txt && mkdir /mnt/data/dir && stat -c "%u %U" /mnt/data/from-first.txt',
    );
    assert.equal(wrote.stdout, '1000 user\n', 'the sandbox’s user owns what it writes');
    await first.kill();

    // By name this time, at another path.
    const second = await Sandbox.create({ volumeMounts: { '/data': 'shared-data' } });
    made.push(second);
    assert.equal(await second.files.read('/data/from-first.txt'), 'hello\n');
    const appended = await second.commands.run('echo again >> /data/from-first.txt && ls -ln /data');
    assert.match(appended.stdout, /^d\S+ +\d+ 1000 1000 .* dir$/m, appended.stdout);
    const info = await second.getInfo();
    assert.deepEqual(info.volumeMounts, [{ name: 'shared-data', path: '/data' }]);
    const listed = (await Sandbox.list().nextItems()).find((s) => s.sandboxId === second.sandboxId);
    assert.deepEqual(listed?.volumeMounts, [{ name: 'shared-data', path: '/data' }]);

    // The content API reads what the sandboxes wrote, with the ids they have on disk.
    assert.equal(await vol.readFile('from-first.txt'), 'hello\nagain\n');
    const entry = await vol.getInfo('/from-first.txt');
    assert.equal(entry.type, VolumeFileType.FILE);
    assert.equal(entry.uid, 1000);
    assert.equal(entry.size, 12);
    // And a sandbox sees what the content API writes, live.
    await vol.writeFile('from-api.txt', 'written from outside');
    assert.equal(
      (await second.commands.run('cat /data/from-api.txt; stat -c " %U" /data/from-api.txt')).stdout,
      'written from outside user\n',
    );
  });

  test('the Volume content methods: write, read, list, make directories, metadata, remove', async (t) => {
    const vol = await Volume.create('content');
    cleanUp(t, vol);
    await assert.rejects(vol.writeFile('notes/a.txt', 'x'), failsWith(VolumePathNotFoundError, /not found/));
    const dir = await vol.makeDir('notes');
    assert.equal(dir.type, VolumeFileType.DIRECTORY);
    assert.equal(dir.path, '/notes');
    await assert.rejects(vol.makeDir('notes'), failsWith(VolumeError, /already exists/));
    const deep = await vol.makeDir('a/b/c', { force: true });
    assert.equal(deep.path, '/a/b/c');

    const written = await vol.writeFile('notes/a.txt', 'one', { mode: 0o640 });
    assert.equal(written.size, 3);
    assert.equal(written.mode, 0o640);
    assert.equal(written.uid, 1000);
    await assert.rejects(vol.writeFile('notes/a.txt', 'two'), failsWith(VolumeError, /already exists/));
    await vol.writeFile('notes/a.txt', 'two!', { force: true });
    assert.equal(await vol.readFile('notes/a.txt'), 'two!');
    assert.deepEqual([...(await vol.readFile('notes/a.txt', { format: 'bytes' }))], [...Buffer.from('two!')]);
    const bytes = new Uint8Array([0, 1, 2, 255]);
    await vol.writeFile('notes/bin', bytes.buffer);
    assert.deepEqual([...(await vol.readFile('notes/bin', { format: 'bytes' }))], [0, 1, 2, 255]);

    assert.deepEqual(
      (await vol.list('/')).map((e) => [e.path, e.type]),
      [
        ['/a', 'directory'],
        ['/notes', 'directory'],
      ],
    );
    assert.deepEqual(
      (await vol.list('/', { depth: 3 })).map((e) => e.path),
      ['/a', '/a/b', '/a/b/c', '/notes', '/notes/a.txt', '/notes/bin'],
    );
    assert.equal(await vol.exists('notes/a.txt'), true);
    assert.equal(await vol.exists('notes/none'), false);
    const changed = await vol.updateMetadata('notes/a.txt', { mode: 0o600, uid: 1234 });
    assert.equal(changed.mode, 0o600);
    assert.equal(changed.uid, 1234);
    assert.equal(changed.gid, 1000);

    await vol.remove('notes/a.txt');
    assert.equal(await vol.exists('notes/a.txt'), false);
    await vol.remove('a');
    assert.deepEqual(
      (await vol.list('/', { depth: 2 })).map((e) => e.path),
      ['/notes', '/notes/bin'],
    );
    await assert.rejects(vol.remove('a'), failsWith(VolumePathNotFoundError, /not found/));
    await assert.rejects(vol.readFile('nothing'), failsWith(VolumePathNotFoundError, /not found/));
    await assert.rejects(vol.list('nothing'), failsWith(VolumePathNotFoundError, /not found/));
    await assert.rejects(vol.readFile('../../etc/passwd'), failsWith(VolumeError, /^400: .*"\.\."/));
    await assert.rejects(vol.readFile('notes'), failsWith(VolumeError, /^400: .*not a regular file/));
  });

  test('the content API never follows a symlink a sandbox made', async (t) => {
    const vol = await Volume.create('links');
    const made = cleanUp(t, vol);
    const sbx = await Sandbox.create({ volumeMounts: { '/v': vol } });
    made.push(sbx);
    await sbx.commands.run('ln -s /etc /v/etc && ln -s /etc/hostname /v/hostname && mkdir /v/d');
    const link = await vol.getInfo('hostname');
    assert.equal(link.type, VolumeFileType.SYMLINK);
    assert.equal(link.target, '/etc/hostname');
    await assert.rejects(vol.readFile('hostname'), failsWith(VolumeError, /^400: .*not a regular file/));
    await assert.rejects(vol.readFile('etc/passwd'), failsWith(VolumeError, /^400: .*symlink/));
    await assert.rejects(vol.writeFile('etc/x', 'x'), failsWith(VolumeError, /^400: .*symlink/));
    await assert.rejects(vol.writeFile('hostname', 'x', { force: true }), failsWith(VolumeError, /^400/));
    await assert.rejects(vol.updateMetadata('hostname', { mode: 0o777 }), failsWith(VolumeError, /^400/));
    // Removing a symlink removes the link, not what it names.
    await vol.remove('etc');
    assert.equal(existsSync('/etc/hostname'), true);
    assert.equal((await sbx.commands.run('ls /v')).stdout, 'd\nhostname\n');
  });

  test('list, getInfo and connect; destroying a volume in use is a 409 naming the sandbox', async (t) => {
    const vol = await Volume.create('kept');
    let destroyed = false;
    t.after(async () => {
      if (!destroyed) await Volume.destroy(vol.volumeId);
    });
    const listed = await Volume.list();
    assert.ok(
      listed.some((v) => v.volumeId === vol.volumeId && v.name === 'kept'),
      JSON.stringify(listed),
    );
    const info = await Volume.getInfo(vol.volumeId);
    assert.deepEqual([info.volumeId, info.name, info.token], [vol.volumeId, 'kept', vol.token]);
    const again = await Volume.connect(vol.volumeId);
    await again.writeFile('f', 'via connect');
    assert.equal(await vol.readFile('f'), 'via connect');

    // A read-only key sees volumes but gets no token: the token writes their files.
    const made = await fetch(`${server.up.url}/v1/keys`, {
      method: 'POST',
      headers: { 'x-api-key': server.up.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'viewer', scopes: ['read-only'] }),
    });
    assert.equal(made.status, 201);
    const viewer = ((await made.json()) as { key: string }).key;
    assert.ok((await Volume.list({ apiKey: viewer })).some((v) => v.volumeId === vol.volumeId));
    const seen = await Volume.connect(vol.volumeId, { apiKey: viewer });
    assert.equal(seen.token, '');
    await assert.rejects(seen.readFile('f'), failsWith(AuthenticationError, /missing volume token/));
    await assert.rejects(
      Volume.create('nope', { apiKey: viewer }),
      failsWith(VolumeError, /^403: .*"sandboxes"/),
    );
    await assert.rejects(Volume.destroy(vol.volumeId, { apiKey: viewer }), failsWith(VolumeError, /^403/));

    const sbx = await Sandbox.create({ volumeMounts: { '/kept': vol } });
    await assert.rejects(
      Volume.destroy(vol.volumeId),
      failsWith(VolumeError, new RegExp(`^409: .*in use by sandbox ${sbx.sandboxId}`)),
    );
    assert.equal(await vol.readFile('f'), 'via connect', 'a refused destroy leaves the files');
    // A paused sandbox still holds it.
    await sbx.pause();
    await assert.rejects(Volume.destroy(vol.volumeId), /409/);
    await Sandbox.kill(sbx.sandboxId);

    assert.equal(await Volume.destroy(vol.volumeId), true);
    destroyed = true;
    assert.equal(existsSync(volumeDir(vol.volumeId)), false, 'its directory is gone');
    assert.equal(existsSync(volumeImage(vol.volumeId)), false, 'and its image');
    assert.equal(await mountedAt(volumeDir(vol.volumeId)), false, 'and its mount');
    assert.equal(await Volume.destroy(vol.volumeId), false);
    await assert.rejects(Volume.getInfo(vol.volumeId), failsWith(VolumeNotFoundError, /not found/));
    await assert.rejects(vol.readFile('f'), failsWith(AuthenticationError, /invalid token/));
    assert.ok(!(await Volume.list()).some((v) => v.volumeId === vol.volumeId));
  });

  test('bad names, ids, paths and tokens are clear errors, and leave nothing behind', async (t) => {
    await assert.rejects(Volume.create('bad name!'), failsWith(VolumeError, /^400: volume name "bad name!"/));
    await assert.rejects(Volume.create(''), failsWith(VolumeError, /^400/));
    const vol = await Volume.create('taken');
    cleanUp(t, vol);
    await assert.rejects(Volume.create('taken'), failsWith(VolumeError, /^409: a volume named "taken"/));
    await assert.rejects(Volume.getInfo('vol-no-such'), failsWith(VolumeNotFoundError, /not found/));
    await assert.rejects(
      Volume.getInfo('vol00000000000000000000'),
      failsWith(VolumeNotFoundError, /not found/),
    );

    const before = (await Volume.list()).length;
    const refused: [Record<string, string>, RegExp][] = [
      [{ '/data': 'no-such-volume' }, /^400: volume "no-such-volume" does not exist/],
      [{ data: 'taken' }, /^400: volume mount path "data" is not an absolute path/],
      [{ '/proc/x': 'taken' }, /^400: volume mount path "\/proc\/x" is under/],
      [{ '/': 'taken' }, /^400: volume mount path "\/" is the root directory/],
      [{ '/a/../b': 'taken' }, /^400: .*must not contain/],
      [{ '/a': 'taken', '/a/': 'taken' }, /^400: two volumes are mounted at \/a/],
    ];
    for (const [volumeMounts, message] of refused)
      await assert.rejects(Sandbox.create({ volumeMounts }), failsWith(SandboxError, message));
    assert.equal((await Sandbox.list().nextItems()).length, 0, 'no sandbox was left half-made');
    assert.equal((await Volume.list()).length, before);

    // The content API takes the volume's own token, not another's or an API key.
    const other = await Volume.create('other');
    cleanUp(t, other);
    const forged = new Volume(vol.volumeId, vol.name, other.token);
    await assert.rejects(forged.list('/'), failsWith(AuthenticationError, /invalid token/));
    const withKey = new Volume(vol.volumeId, vol.name, process.env.E2B_API_KEY ?? '');
    await assert.rejects(withKey.list('/'), failsWith(AuthenticationError, /invalid token/));
    const raw = await fetch(`${server.up.url}/volumecontent/${vol.volumeId}/dir?path=/`);
    assert.equal(raw.status, 401);
    await raw.body?.cancel();
  });

  test('a sandbox cannot write past its volume: ENOSPC inside, the host gives no more; the volume works after', async (t) => {
    const vol = await Volume.create('small');
    const made = cleanUp(t, vol);
    const sbx = await Sandbox.create({ volumeMounts: { '/mnt/v': vol } });
    made.push(sbx);
    const dd = await sbx.commands.run('dd if=/dev/zero of=/mnt/v/big bs=1M count=100 2>&1; echo "exit $?"');
    assert.match(dd.stdout, /No space left on device/, dd.stdout);
    assert.match(dd.stdout, /exit [1-9]/, dd.stdout);
    const { stdout: du } = await promisify(execFile)('du', ['-s', '-B1', volumeImage(vol.volumeId)]);
    assert.ok(Number(du.split('\t')[0]) <= 32 * 1024 * 1024, `the image takes ${du} on the host`);
    // The sandbox sees its volume's size.
    const df = await sbx.commands.run('df -B1M --output=size /mnt/v | tail -1');
    assert.ok(Number(df.stdout.trim()) <= 32, df.stdout);
    // Emptied, it takes writes again, from the sandbox and from the content API.
    const again = await sbx.commands.run('rm /mnt/v/big && head -c 1M /dev/zero > /mnt/v/again && ls /mnt/v');
    assert.equal(again.stdout, 'again\n');
    await vol.writeFile('from-api', 'fits');
    // The content API's write into a full volume: 507, and nothing left of it.
    await assert.rejects(
      vol.writeFile('too-big', new Uint8Array(40 * 1024 * 1024).buffer),
      failsWith(VolumeError, /^507: the volume is full/),
    );
    assert.equal(await vol.exists('too-big'), false, 'a refused write leaves nothing');
    assert.equal(await vol.readFile('from-api'), 'fits');
  });

  test('the team’s volume quota counts their sizes: a create past it is 429 and makes nothing', async (t) => {
    const one = await Volume.create('one');
    cleanUp(t, one);
    // aiva's own field: a size of its own.
    const raw = (body: object) =>
      fetch(`${server.up.url}/volumes`, {
        method: 'POST',
        headers: { 'x-api-key': server.up.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const sized = await raw({ name: 'sixty-four', sizeMiB: 64 });
    assert.equal(sized.status, 201);
    const two = (await sized.json()) as { volumeID: string; name: string };
    cleanUp(t, new Volume(two.volumeID, two.name, ''));
    const listed = await Volume.list();
    await assert.rejects(
      Volume.create('more'),
      failsWith(RateLimitError, /would pass its volume quota of 96 MiB/),
    );
    const tooSmall = await raw({ name: 'tiny', sizeMiB: 4 });
    assert.equal(tooSmall.status, 400);
    assert.match(((await tooSmall.json()) as { message: string }).message, /volume size 4 MiB is not valid/);
    assert.deepEqual(await Volume.list(), listed, 'nothing was made');
    const images = (await promisify(execFile)('ls', [join(server.up.home, 'volumes')])).stdout;
    assert.equal(images.split('\n').filter((n) => n.endsWith('.ext4')).length, 2, images);
  });
});
