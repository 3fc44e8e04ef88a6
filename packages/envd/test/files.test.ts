// sandbox.files through the real e2b SDK: transfer, metadata, listing and watching.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { filesystem as fsp } from '@aiva/protocol';
import { FileNotFoundError, type FilesystemEvent, FilesystemEventType, InvalidArgumentError } from 'e2b';
import { ENVD_URL } from './helpers/harness.js';
import { eventually, rawClients, sdk, useSandbox } from './helpers/sandbox.js';

const sandbox = useSandbox();

describe('files: read and write', () => {
  test('write then read in every format', async () => {
    const sbx = await sdk();
    const info = await sbx.files.write('/home/user/formats.txt', 'héllo\n');
    assert.deepEqual(info, {
      path: '/home/user/formats.txt',
      name: 'formats.txt',
      type: 'file',
      metadata: undefined,
    });
    assert.equal(await sbx.files.read('/home/user/formats.txt'), 'héllo\n');
    assert.equal(await sbx.files.read('/home/user/formats.txt', { format: 'text' }), 'héllo\n');
    assert.deepEqual(
      Buffer.from(await sbx.files.read('/home/user/formats.txt', { format: 'bytes' })),
      Buffer.from('héllo\n'),
    );
    const blob = await sbx.files.read('/home/user/formats.txt', { format: 'blob' });
    assert.equal(await blob.text(), 'héllo\n');
    const stream = await sbx.files.read('/home/user/formats.txt', { format: 'stream' });
    const chunks: Uint8Array[] = [];
    for await (const c of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(c);
    assert.equal(Buffer.concat(chunks).toString(), 'héllo\n');
    assert.equal(await sbx.files.read('/home/user/formats.txt', { gzip: true }), 'héllo\n');
    // Written as root, owned by the user.
    const st = await sbx.files.getInfo('/home/user/formats.txt');
    assert.equal(st.owner, 'user');
    assert.equal(st.permissions, '-rw-r--r--');
  });

  test('binary data and empty files survive the round trip', async () => {
    const sbx = await sdk();
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) % 256);
    await sbx.files.write('bin.dat', bytes.buffer);
    assert.deepEqual(Buffer.from(await sbx.files.read('bin.dat', { format: 'bytes' })), Buffer.from(bytes));
    await sbx.files.write('empty.txt', '');
    assert.equal(await sbx.files.read('empty.txt'), '');
  });

  test('relative paths are in the home of the user; parents are created and owned by the user', async () => {
    const sbx = await sdk();
    const info = await sbx.files.write('deep/er/rel.txt', 'x');
    assert.equal(info.path, '/home/user/deep/er/rel.txt');
    assert.equal((await sbx.files.getInfo('/home/user/deep/er')).owner, 'user');
    const asRoot = await sbx.files.write('rootfile', 'r', { user: 'root' });
    assert.equal(asRoot.path, '/root/rootfile');
    assert.equal((await sbx.files.getInfo('/root/rootfile', { user: 'root' })).owner, 'root');
  });

  test('write many files in one multipart request', async () => {
    const sbx = await sdk();
    const infos = await sbx.files.write([
      { path: '/home/user/many/a.txt', data: 'A' },
      { path: '/home/user/many/b.txt', data: new Blob(['B']) },
      { path: 'many/c.txt', data: new TextEncoder().encode('C').buffer },
    ]);
    assert.deepEqual(
      infos.map((i) => i.path),
      ['/home/user/many/a.txt', '/home/user/many/b.txt', '/home/user/many/c.txt'],
    );
    assert.equal(await sbx.files.read('/home/user/many/c.txt'), 'C');
  });

  test('octet-stream upload, gzip-compressed or not, from a stream', async () => {
    const sbx = await sdk();
    const big = 'z'.repeat(200_000);
    await sbx.files.write('/home/user/octet.txt', big, { useOctetStream: true });
    assert.equal(await sbx.files.read('/home/user/octet.txt'), big);
    await sbx.files.write('/home/user/gz.txt', big, { gzip: true });
    assert.equal(await sbx.files.read('/home/user/gz.txt'), big);
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode('from '));
        c.enqueue(new TextEncoder().encode('a stream'));
        c.close();
      },
    });
    await sbx.files.write('/home/user/streamed.txt', stream);
    assert.equal(await sbx.files.read('/home/user/streamed.txt'), 'from a stream');
  });

  test('gzip bodies are decoded and a corrupt gzip body is a 400', async () => {
    const ok = await fetch(`${ENVD_URL}/files?path=/tmp/raw-gz.txt&username=user`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' },
      body: gzipSync('raw gzip'),
    });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), [{ path: '/tmp/raw-gz.txt', name: 'raw-gz.txt', type: 'file' }]);
    const bad = await fetch(`${ENVD_URL}/files?path=/tmp/bad-gz.txt&username=user`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' },
      body: 'not gzip at all',
    });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /decompress/);
    assert.equal(await (await sdk()).files.exists('/tmp/bad-gz.txt'), false, 'no partial file is left');
  });

  test('Range requests return 206 with the slice; a bad range 416', async () => {
    await (await sdk()).files.write('/tmp/range.txt', '0123456789');
    const part = await fetch(`${ENVD_URL}/files?path=/tmp/range.txt&username=user`, {
      headers: { range: 'bytes=2-5' },
    });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), 'bytes 2-5/10');
    assert.equal(await part.text(), '2345');
    const tail = await fetch(`${ENVD_URL}/files?path=/tmp/range.txt&username=user`, {
      headers: { range: 'bytes=-3' },
    });
    assert.equal(await tail.text(), '789');
    const bad = await fetch(`${ENVD_URL}/files?path=/tmp/range.txt&username=user`, {
      headers: { range: 'bytes=50-' },
    });
    assert.equal(bad.status, 416);
  });

  test('metadata is stored as user.e2b.* xattrs and replaced by the next write, with or without metadata', async () => {
    const s = sandbox();
    const sbx = await sdk();
    const info = await sbx.files.write('/home/user/md.txt', 'm', {
      metadata: { Owner: 'team-a', purpose: 'test run' },
    });
    assert.deepEqual(info.metadata, { owner: 'team-a', purpose: 'test run' });
    const { stdout } = await s.exec(['getfattr', '-d', '--absolute-names', '/home/user/md.txt']);
    assert.match(stdout, /user\.e2b\.owner="team-a"/);
    assert.match(stdout, /user\.e2b\.purpose="test run"/);
    assert.deepEqual((await sbx.files.getInfo('/home/user/md.txt')).metadata, {
      owner: 'team-a',
      purpose: 'test run',
    });
    await sbx.files.write('/home/user/md.txt', 'm2', { metadata: { only: 'this' } });
    assert.deepEqual((await sbx.files.getInfo('/home/user/md.txt')).metadata, { only: 'this' });
    const listed = await sbx.files.list('/home/user');
    assert.deepEqual(listed.find((e) => e.name === 'md.txt')?.metadata, { only: 'this' });
    // Renaming keeps the metadata with the file.
    const moved = await sbx.files.rename('/home/user/md.txt', '/home/user/md2.txt');
    assert.deepEqual(moved.metadata, { only: 'this' });
    // A write without metadata replaces it too, as E2B's envd: none of the old file's stays.
    await sbx.files.write('/home/user/md2.txt', 'plain');
    await sbx.files.write('/home/user/fresh.txt', 'plain');
    assert.deepEqual(
      (await sbx.files.getInfo('/home/user/md2.txt')).metadata,
      (await sbx.files.getInfo('/home/user/fresh.txt')).metadata,
    );
    const after = await s.exec(['getfattr', '-d', '--absolute-names', '/home/user/md2.txt']);
    assert.doesNotMatch(after.stdout, /user\.e2b\./);
  });

  test('reading a missing file is FileNotFoundError; a directory is InvalidArgumentError', async () => {
    const sbx = await sdk();
    await assert.rejects(sbx.files.read('/nope/none.txt'), (e: unknown) => e instanceof FileNotFoundError);
    await assert.rejects(sbx.files.read('/home/user'), (e: unknown) => e instanceof InvalidArgumentError);
    await assert.rejects(sbx.files.write('/home/user', 'x'), /is a directory/);
  });
});

describe('files: stat, list, make, move, remove', () => {
  test('stat of files, directories and symlinks', async () => {
    const sbx = await sdk();
    await sbx.files.write('/home/user/st/file.txt', 'abc');
    await sbx.commands.run(
      'ln -s file.txt /home/user/st/link && ln -s /nowhere /home/user/st/broken && chmod 640 /home/user/st/file.txt',
    );
    const f = await sbx.files.getInfo('/home/user/st/file.txt');
    assert.equal(f.type, 'file');
    assert.equal(f.size, 3);
    assert.equal(f.mode, 0o640);
    assert.equal(f.permissions, '-rw-r-----');
    assert.equal(f.group, 'user');
    assert.ok(f.modifiedTime instanceof Date && Math.abs(f.modifiedTime.getTime() - Date.now()) < 600_000);
    const d = await sbx.files.getInfo('/home/user/st');
    assert.equal(d.type, 'dir');
    assert.equal(d.permissions, 'drwxr-xr-x');
    const l = await sbx.files.getInfo('/home/user/st/link');
    assert.equal(l.type, 'file');
    assert.equal(l.symlinkTarget, '/home/user/st/file.txt');
    assert.equal(l.permissions, 'Lrwxrwxrwx');
    assert.equal(l.mode, 0o640);
    const tmp = await sbx.files.getInfo('/tmp');
    assert.equal(tmp.type, 'dir');
    assert.equal(tmp.permissions, 'dtrwxrwxrwx');
    await assert.rejects(
      sbx.files.getInfo('/home/user/st/missing'),
      (e: unknown) => e instanceof FileNotFoundError,
    );
  });

  test('list with depth 1, 2 and 3 in lexical depth-first order', async () => {
    const sbx = await sdk();
    await sbx.files.write([
      { path: '/home/user/tree/b/d/deep.txt', data: '1' },
      { path: '/home/user/tree/b/c.txt', data: '2' },
      { path: '/home/user/tree/a.txt', data: '3' },
    ]);
    const names = async (depth: number) =>
      (await sbx.files.list('/home/user/tree', { depth })).map((e) => e.path);
    assert.deepEqual(await names(1), ['/home/user/tree/a.txt', '/home/user/tree/b']);
    assert.deepEqual(await names(2), [
      '/home/user/tree/a.txt',
      '/home/user/tree/b',
      '/home/user/tree/b/c.txt',
      '/home/user/tree/b/d',
    ]);
    assert.deepEqual(await names(3), [
      '/home/user/tree/a.txt',
      '/home/user/tree/b',
      '/home/user/tree/b/c.txt',
      '/home/user/tree/b/d',
      '/home/user/tree/b/d/deep.txt',
    ]);
    const viaRelative = await sbx.files.list('tree');
    assert.deepEqual(
      viaRelative.map((e) => [e.name, e.type]),
      [
        ['a.txt', 'file'],
        ['b', 'dir'],
      ],
    );
    await assert.rejects(
      sbx.files.list('/home/user/tree/a.txt'),
      (e: unknown) => e instanceof InvalidArgumentError,
    );
    await assert.rejects(sbx.files.list('/home/user/none'), (e: unknown) => e instanceof FileNotFoundError);
  });

  test('exists, makeDir, rename and remove', async () => {
    const sbx = await sdk();
    assert.equal(await sbx.files.exists('/home/user/mk'), false);
    assert.equal(await sbx.files.makeDir('/home/user/mk/sub/dir'), true);
    assert.equal(await sbx.files.makeDir('/home/user/mk/sub/dir'), false);
    assert.equal(await sbx.files.exists('/home/user/mk/sub/dir'), true);
    const dir = await sbx.files.getInfo('/home/user/mk/sub');
    assert.equal(dir.owner, 'user');
    assert.equal(dir.permissions, 'drwxr-xr-x');
    await sbx.files.write('/home/user/mk/sub/dir/f.txt', 'f');
    const moved = await sbx.files.rename('/home/user/mk/sub', '/home/user/mk/moved/here');
    assert.equal(moved.path, '/home/user/mk/moved/here');
    assert.equal(moved.type, 'dir');
    assert.equal(await sbx.files.read('/home/user/mk/moved/here/dir/f.txt'), 'f');
    await assert.rejects(
      sbx.files.rename('/home/user/mk/nothing', '/home/user/mk/x'),
      (e: unknown) => e instanceof FileNotFoundError,
    );
    await sbx.files.remove('/home/user/mk');
    assert.equal(await sbx.files.exists('/home/user/mk'), false);
    await sbx.files.remove('/home/user/mk'); // missing is fine
  });
});

describe('files: watch', () => {
  test('watchDir recursive with includeEntry reports create, write, chmod, rename, remove (also in new subdirectories)', async () => {
    const sbx = await sdk();
    await sbx.files.makeDir('/home/user/w');
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir(
      '/home/user/w',
      (e) => {
        events.push(e);
      },
      { recursive: true, includeEntry: true },
    );
    const has = (type: FilesystemEventType, name: string) =>
      events.some((e) => e.type === type && e.name === name);
    await sbx.files.write('/home/user/w/f.txt', 'hello');
    await eventually(() => has(FilesystemEventType.WRITE, 'f.txt'), 'WRITE f.txt');
    assert.ok(has(FilesystemEventType.CREATE, 'f.txt'));
    const created = events.find((e) => e.type === FilesystemEventType.CREATE && e.name === 'f.txt');
    assert.equal(created?.entry?.path, '/home/user/w/f.txt');
    assert.equal(created?.entry?.type, 'file');
    await sbx.files.makeDir('/home/user/w/sub');
    await eventually(() => has(FilesystemEventType.CREATE, 'sub'), 'CREATE sub');
    await sbx.files.write('/home/user/w/sub/inner.txt', 'x');
    await eventually(() => has(FilesystemEventType.WRITE, 'sub/inner.txt'), 'WRITE in a new subdirectory');
    await sbx.commands.run('chmod 600 /home/user/w/f.txt');
    await eventually(() => has(FilesystemEventType.CHMOD, 'f.txt'), 'CHMOD f.txt');
    await sbx.files.rename('/home/user/w/f.txt', '/home/user/w/g.txt');
    await eventually(
      () => has(FilesystemEventType.RENAME, 'f.txt') && has(FilesystemEventType.CREATE, 'g.txt'),
      'RENAME',
    );
    await sbx.files.remove('/home/user/w/g.txt');
    await eventually(() => has(FilesystemEventType.REMOVE, 'g.txt'), 'REMOVE g.txt');
    await handle.stop();
    const s = sandbox();
    await eventually(async () => (await s.envdChildren()).length === 0, 'the watcher to be gone');
  });

  test('a non-recursive watch does not see into subdirectories', async () => {
    const sbx = await sdk();
    await sbx.files.makeDir('/home/user/nr/sub');
    const events: FilesystemEvent[] = [];
    const handle = await sbx.files.watchDir('/home/user/nr', (e) => {
      events.push(e);
    });
    await sbx.files.write('/home/user/nr/sub/hidden.txt', 'x');
    await sbx.files.write('/home/user/nr/seen.txt', 'x');
    await eventually(() => events.some((e) => e.name === 'seen.txt'), 'seen.txt');
    assert.equal(
      events.some((e) => e.name.includes('hidden')),
      false,
    );
    assert.equal(events[0]?.entry, undefined, 'no entry unless asked');
    await handle.stop();
  });

  test('watching a missing path or a file fails clearly', async () => {
    const sbx = await sdk();
    await assert.rejects(
      sbx.files.watchDir('/home/user/not-there', () => {}),
      (e: unknown) => e instanceof FileNotFoundError,
    );
    await sbx.files.write('/home/user/plain.txt', 'x');
    await assert.rejects(
      sbx.files.watchDir('/home/user/plain.txt', () => {}),
      (e: unknown) => e instanceof InvalidArgumentError,
    );
  });

  test('polling watchers: create, get events, remove', async () => {
    const sbx = await sdk();
    const { filesystem } = rawClients({ authorization: `Basic ${Buffer.from('user:').toString('base64')}` });
    await sbx.files.makeDir('/home/user/poll');
    const { watcherId } = await filesystem.createWatcher({
      path: '/home/user/poll',
      recursive: true,
      includeEntry: true,
    });
    await sbx.files.write('/home/user/poll/p.txt', 'p');
    const seen: fsp.FilesystemEvent[] = [];
    await eventually(async () => {
      seen.push(...(await filesystem.getWatcherEvents({ watcherId })).events);
      return seen.some((e) => e.name === 'p.txt' && e.type === fsp.EventType.WRITE);
    }, 'polled WRITE');
    assert.equal(seen.find((e) => e.type === fsp.EventType.CREATE)?.entry?.path, '/home/user/poll/p.txt');
    assert.deepEqual(
      (await filesystem.getWatcherEvents({ watcherId })).events,
      [],
      'events are handed out once',
    );
    await filesystem.removeWatcher({ watcherId });
    await assert.rejects(filesystem.getWatcherEvents({ watcherId }), /not found/);
    await assert.rejects(filesystem.removeWatcher({ watcherId }), /not found/);
  });
});
