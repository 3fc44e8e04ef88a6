// Firecracker cannot run on this host (PVM KVM). What can be checked here is checked:
// the API requests the driver sends, in order, against a server on a unix socket that
// records them and answers as Firecracker's API specification says; and the guest boot
// layout it uses (ELF kernel, read-only template disk, overlay on a scratch disk),
// booted for real under QEMU.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ENVD_PORT } from '@aiva/protocol';
import { hostTscKhz } from '../src/host/proc.js';
import { execInSandbox, runCommand } from '../src/index.js';
import { FirecrackerApi, FirecrackerApiError } from '../src/runtime/firecracker/firecracker-api.js';
import {
  configureAndBoot,
  FirecrackerRuntime,
  firecrackerArgv,
  firecrackerCheckpointFiles,
  firecrackerFiles,
  loadCheckpoint,
  SCRATCH_DRIVE_PATH,
} from '../src/runtime/firecracker/firecracker-runtime.js';
import { kernelCommandLine } from '../src/runtime/microvm-boot.js';
import { RuntimeError, type RuntimeSpec, SandboxSpecError } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { images } from './helpers/test-node.js';

checkHostLeaks();

interface Recorded {
  method: string;
  url: string;
  body: unknown;
}

interface RecordingOptions {
  /** The path refused with 400 and `fault`. */
  refuse?: string;
  fault?: string;
  /** Does what Firecracker would do for an accepted request before it answers (e.g. write files). */
  act?: (r: Recorded) => Promise<void>;
}

/** An HTTP server on a unix socket that records requests and answers 204, or 400 with a fault for `refuse`. */
async function recordingApi(socket: string, options: RecordingOptions = {}) {
  const requests: Recorded[] = [];
  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      text += d;
    });
    req.on('end', async () => {
      const recorded = {
        method: req.method ?? '',
        url: req.url ?? '',
        body: text ? JSON.parse(text) : undefined,
      };
      requests.push(recorded);
      if (req.url === options.refuse) {
        res
          .writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ fault_message: options.fault ?? 'Invalid kernel path' }));
        return;
      }
      await options.act?.(recorded);
      if (req.method === 'GET' && req.url === '/') {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ app_name: 'Firecracker', id: 'x', state: 'Running', vmm_version: '1.x' }));
      } else {
        res.writeHead(204).end();
      }
    });
  });
  server.listen(socket);
  await once(server, 'listening');
  return { requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function fakeSpec(dir: string): Promise<RuntimeSpec> {
  const template = await images.ensureDisk(await images.ensureTemplate('base'));
  const kernel = await images.ensureKernel();
  return {
    id: 'fc0test0sandbox',
    dir,
    template,
    kernel,
    resources: { vcpus: 2, memoryMiB: 512, diskMiB: 2048 },
    network: {
      netns: 'aiva-fc0test0sandbox',
      address: '10.11.0.2',
      guest: { address: '169.254.0.21', prefix: 30, gateway: '169.254.0.22' },
      tap: 'tap0',
    },
    hostname: 'sandbox',
    consoleLog: join(dir, 'console.log'),
  };
}

describe('firecracker driver', () => {
  test('configures the machine, boot source, drives, network and entropy, then starts it', async () => {
    const dir = await tempDir();
    const spec = await fakeSpec(dir);
    const files = firecrackerFiles(spec);
    const api = await recordingApi(files.socket);
    try {
      await configureAndBoot(new FirecrackerApi(files.socket), spec, files);
    } finally {
      await api.close();
    }
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.url}`),
      [
        'PUT /logger',
        'PUT /machine-config',
        'PUT /boot-source',
        'PUT /drives/template',
        'PUT /drives/scratch',
        'PUT /network-interfaces/eth0',
        'PUT /entropy',
        'PUT /actions',
      ],
    );
    const body = (url: string) => api.requests.find((r) => r.url === url)?.body;
    assert.deepEqual(body('/machine-config'), { vcpu_count: 2, mem_size_mib: 512, smt: false });
    assert.deepEqual(body('/boot-source'), {
      kernel_image_path: spec.kernel?.vmlinux,
      initrd_path: spec.kernel?.initrd,
      boot_args: kernelCommandLine(spec, { root: '/dev/vda', upper: '/dev/vdb', reboot: 'k' }),
    });
    assert.match(
      (body('/boot-source') as { boot_args: string }).boot_args,
      /root=\/dev\/vda ro .*aiva\.upper=\/dev\/vdb/,
    );
    assert.deepEqual(body('/drives/template'), {
      drive_id: 'template',
      path_on_host: spec.template.disk,
      is_root_device: false,
      is_read_only: true,
    });
    // Relative to Firecracker's working directory, the sandbox's: what a snapshot records.
    assert.deepEqual(body('/drives/scratch'), {
      drive_id: 'scratch',
      path_on_host: 'scratch.ext4',
      is_root_device: false,
      is_read_only: false,
    });
    assert.equal(join(dir, SCRATCH_DRIVE_PATH), files.scratch);
    assert.deepEqual(body('/network-interfaces/eth0'), {
      iface_id: 'eth0',
      host_dev_name: 'tap0',
      guest_mac: '02:00:00:00:00:01',
    });
    assert.deepEqual(body('/actions'), { action_type: 'InstanceStart' });
    assert.deepEqual(firecrackerArgv(spec, files), [
      'env',
      `--chdir=${dir}`,
      'firecracker',
      '--api-sock',
      files.socket,
      '--id',
      'aiva-fc0test0sandbox',
    ]);
  });

  test('a refused request stops the sequence with Firecracker’s fault message', async () => {
    const dir = await tempDir();
    const spec = await fakeSpec(dir);
    const files = firecrackerFiles(spec);
    const api = await recordingApi(files.socket, { refuse: '/boot-source' });
    try {
      await assert.rejects(configureAndBoot(new FirecrackerApi(files.socket), spec, files), (e: unknown) => {
        assert.ok(e instanceof FirecrackerApiError);
        assert.equal(e.status, 400);
        assert.equal(e.fault, 'Invalid kernel path');
        return true;
      });
    } finally {
      await api.close();
    }
    assert.equal(api.requests.at(-1)?.url, '/boot-source', 'nothing is sent after the refusal');
  });

  test('pause, resume, snapshot and instance info use the documented paths', async () => {
    const dir = await tempDir();
    const socket = join(dir, 'api.sock');
    const api = await recordingApi(socket);
    const client = new FirecrackerApi(socket);
    try {
      await client.patchVm({ state: 'Paused' });
      await client.createSnapshot({ snapshot_type: 'Full', snapshot_path: '/s/vm', mem_file_path: '/s/mem' });
      await client.loadSnapshot({
        snapshot_path: '/s/vm',
        mem_backend: { backend_type: 'File', backend_path: '/s/mem' },
        resume_vm: true,
      });
      await client.patchVm({ state: 'Resumed' });
      assert.equal((await client.describeInstance()).state, 'Running');
    } finally {
      await api.close();
    }
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.url} ${JSON.stringify(r.body ?? null)}`),
      [
        'PATCH /vm {"state":"Paused"}',
        'PUT /snapshot/create {"snapshot_type":"Full","snapshot_path":"/s/vm","mem_file_path":"/s/mem"}',
        'PUT /snapshot/load {"snapshot_path":"/s/vm","mem_backend":{"backend_type":"File","backend_path":"/s/mem"},"resume_vm":true}',
        'PATCH /vm {"state":"Resumed"}',
        'GET / null',
      ],
    );
  });

  test('a checkpoint saves state and memory through the API, then a sparse copy of the scratch disk', async () => {
    const dir = await tempDir();
    const sandbox = { id: 'fc0test0sandbox', dir: join(dir, 'sandbox') };
    const into = join(dir, 'checkpoint');
    await Promise.all([mkdir(sandbox.dir), mkdir(into)]);
    const files = firecrackerFiles(sandbox);
    // A 64 MiB scratch disk with two written blocks, the rest holes.
    const disk = await open(files.scratch, 'w');
    await disk.truncate(64 * 1024 * 1024);
    await disk.write(Buffer.from('head'), 0, 4, 0);
    await disk.write(Buffer.from('tail'), 0, 4, 40 * 1024 * 1024);
    await disk.close();
    // Like Firecracker: the state and memory files exist once the request is answered.
    const api = await recordingApi(files.socket, {
      act: async (r) => {
        if (r.url !== '/snapshot/create') return;
        const body = r.body as { snapshot_path: string; mem_file_path: string };
        await writeFile(body.snapshot_path, 'state');
        await writeFile(body.mem_file_path, 'memory');
      },
    });
    let result: Awaited<ReturnType<FirecrackerRuntime['checkpoint']>>;
    try {
      result = await new FirecrackerRuntime().checkpoint(
        sandbox,
        { driver: 'firecracker', pid: 0, pidStartTime: 0 },
        into,
      );
    } finally {
      await api.close();
    }
    assert.deepEqual(result, { memory: true });
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.url} ${JSON.stringify(r.body ?? null)}`),
      [
        `PUT /snapshot/create {"snapshot_type":"Full","snapshot_path":"${into}/vmstate","mem_file_path":"${into}/memory"}`,
      ],
    );
    assert.deepEqual((await readdir(into)).sort(), ['memory', SCRATCH_DRIVE_PATH, 'vmstate']);
    const checkpoint = firecrackerCheckpointFiles(into);
    assert.ok(
      (await readFile(checkpoint.scratch)).equals(await readFile(files.scratch)),
      'the disk is copied',
    );
    const copy = await stat(checkpoint.scratch);
    assert.equal(copy.size, 64 * 1024 * 1024);
    assert.ok(copy.blocks * 512 < 1024 * 1024, `the copy keeps its holes (${copy.blocks} blocks)`);
  });

  test('a restore loads the checkpoint into the fresh process and resumes it, configuring nothing else', async () => {
    const dir = await tempDir();
    const files = firecrackerFiles({ id: 'fc0test0restored', dir });
    const checkpoint = firecrackerCheckpointFiles(join(dir, 'checkpoint'));
    const api = await recordingApi(files.socket);
    try {
      await loadCheckpoint(new FirecrackerApi(files.socket), files, checkpoint);
    } finally {
      await api.close();
    }
    assert.deepEqual(
      api.requests.map((r) => `${r.method} ${r.url} ${JSON.stringify(r.body ?? null)}`),
      [
        `PUT /logger {"log_path":"${dir}/firecracker.log","level":"Warning","show_level":true}`,
        `PUT /snapshot/load {"snapshot_path":"${dir}/checkpoint/vmstate","mem_backend":{"backend_type":"File","backend_path":"${dir}/checkpoint/memory"},"resume_vm":true}`,
      ],
    );
  });

  test('a refused snapshot load or create surfaces Firecracker’s fault message', async () => {
    const dir = await tempDir();
    const files = firecrackerFiles({ id: 'fc0test0restored', dir });
    const checkpoint = firecrackerCheckpointFiles(dir);
    const fault =
      'Load snapshot error: Failed to restore from snapshot: Cannot open the block device backing file';
    const load = await recordingApi(files.socket, { refuse: '/snapshot/load', fault });
    try {
      await assert.rejects(
        loadCheckpoint(new FirecrackerApi(files.socket), files, checkpoint),
        (e: unknown) => {
          assert.ok(e instanceof FirecrackerApiError);
          assert.deepEqual([e.method, e.path, e.status, e.fault], ['PUT', '/snapshot/load', 400, fault]);
          assert.match(e.message, /Cannot open the block device backing file/);
          return true;
        },
      );
    } finally {
      await load.close();
    }

    const sandbox = { id: 'fc0test0sandbox', dir: join(dir, 'sandbox') };
    const into = join(dir, 'checkpoint');
    await Promise.all([mkdir(sandbox.dir), mkdir(into)]);
    const socket = firecrackerFiles(sandbox).socket;
    const create = await recordingApi(socket, {
      refuse: '/snapshot/create',
      fault: 'The microVM is not paused',
    });
    try {
      await assert.rejects(
        new FirecrackerRuntime().checkpoint(
          sandbox,
          { driver: 'firecracker', pid: 0, pidStartTime: 0 },
          into,
        ),
        (e: unknown) => {
          assert.ok(e instanceof RuntimeError);
          assert.match(e.message, /PUT \/snapshot\/create: 400 The microVM is not paused/);
          return true;
        },
      );
    } finally {
      await create.close();
    }
    assert.deepEqual(await readdir(into), [], 'a failed checkpoint leaves nothing behind');
  });

  test('a sandbox restored from an incomplete checkpoint is refused before anything is made', async () => {
    const dir = await tempDir();
    const spec = await fakeSpec(join(dir, 'sandbox'));
    await assert.rejects(
      new FirecrackerRuntime().create({ ...spec, restoreFrom: join(dir, 'checkpoint') }),
      (e: unknown) => {
        assert.ok(e instanceof SandboxSpecError);
        assert.match(e.message, /checkpoint\/vmstate is missing/);
        return true;
      },
    );
    assert.deepEqual(await readdir(dir), [], 'nothing was made');
  });

  test('its boot layout (ELF kernel, read-only template, overlay on scratch) boots, under QEMU', async () => {
    const dir = await tempDir();
    const spec = await fakeSpec(dir);
    const files = firecrackerFiles(spec);
    await runCommand('mkfs.ext4', ['-F', '-q', '-m', '0', files.scratch, '1024M']);
    // The same command line the driver gives Firecracker, with user networking in place of a TAP.
    const cmdline = kernelCommandLine(
      {
        ...spec,
        network: { ...spec.network, guest: { address: '10.0.2.15', prefix: 24, gateway: '10.0.2.2' } },
      },
      // Under TCG the guest needs the host's TSC rate and an RTC to boot reliably (as the
      // qemu-microvm driver gives it); Firecracker on KVM needs neither.
      { root: '/dev/vda', upper: '/dev/vdb', reboot: 't', tscKhz: await hostTscKhz() },
    );
    const qemu = spawn(
      'qemu-system-x86_64',
      [
        ...[
          '-M',
          'microvm,x-option-roms=off,rtc=on',
          '-accel',
          'tcg,thread=multi',
          '-cpu',
          'max',
          '-m',
          '512',
        ],
        ...[
          '-nodefaults',
          '-no-user-config',
          '-nographic',
          '-no-reboot',
          '-serial',
          `file:${spec.consoleLog}`,
        ],
        ...['-kernel', spec.kernel?.vmlinux ?? '', '-initrd', spec.kernel?.initrd ?? '', '-append', cmdline],
        ...[
          '-drive',
          `id=t,file=${spec.template.disk},format=raw,if=none,readonly=on`,
          '-device',
          'virtio-blk-device,drive=t',
        ],
        ...[
          '-drive',
          `id=s,file=${files.scratch},format=raw,if=none`,
          '-device',
          'virtio-blk-device,drive=s',
        ],
        ...[
          '-netdev',
          `user,id=n,restrict=on,hostfwd=tcp:127.0.0.1:0-10.0.2.15:${ENVD_PORT}`,
          '-device',
          'virtio-net-device,netdev=n',
        ],
        ...['-qmp', `unix:${join(dir, 'qmp.sock')},server=on,wait=off`],
      ],
      { stdio: 'ignore' },
    );
    try {
      // The forwarded port was chosen by QEMU: ask it which.
      const { QmpClient } = await import('../src/runtime/qemu/qmp-client.js');
      let qmp: Awaited<ReturnType<typeof QmpClient.connect>> | undefined;
      for (let i = 0; i < 100 && !qmp; i++) {
        qmp = await QmpClient.connect(join(dir, 'qmp.sock')).catch(() => undefined);
        if (!qmp) await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(qmp, 'QEMU is up');
      const usernet = await qmp.execute<string>('human-monitor-command', { 'command-line': 'info usernet' });
      qmp.close();
      const port = /HOST_FORWARD\]?\s+\d+\s+127\.0\.0\.1\s+(\d+)/.exec(usernet)?.[1];
      assert.ok(port, usernet);
      let status: number | undefined;
      for (let i = 0; i < 600 && status !== 204; i++) {
        status = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(500) }).then(
          (r) => r.status,
          () => undefined,
        );
        if (status !== 204) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(status, 204, 'envd answers from the overlay root');
      const mounts = await execInSandbox(
        '127.0.0.1',
        'findmnt -n -o FSTYPE / && echo marker > /etc/aiva-marker && sync',
        {
          port: Number(port),
          user: 'root',
        },
      );
      assert.deepEqual([mounts.exitCode, mounts.stdout], [0, 'overlay\n']);
    } finally {
      qemu.kill('SIGKILL');
      await once(qemu, 'exit');
    }
    // What the guest wrote went to the scratch disk; the template is untouched.
    const upper = await runCommand('debugfs', ['-R', 'cat /root/etc/aiva-marker', files.scratch]);
    assert.equal(upper.stdout, 'marker\n');
    const template = await runCommand('debugfs', ['-R', 'stat /etc/aiva-marker', spec.template.disk]);
    assert.match(template.stdout + template.stderr, /File not found/);
  });
});
