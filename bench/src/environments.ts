// Named environments and volumes as a user sees them, against one real `aiva up`
// (containers), through the public API only: aiva's `/v1/environments` routes, the e2b
// SDK's `Sandbox` and `Volume`, and the built CLI's `aiva data`. Each figure is a median
// of several rounds, next to the plain-sandbox baseline it stands for:
// - init+start→first exec of an environment vs Sandbox.create→first exec;
// - stop→start→first exec of an environment vs pause({ keepMemory: false })→connect→first exec;
// - dd of 256 MiB (fsync) into a mounted volume vs into the sandbox's own disk, and read back;
// - `aiva data push` of a 2000-file tree vs `aiva data sync` after 10 files changed.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Sandbox, Volume } from 'e2b';
import { aivaUpForSdk, benchScratch, type Server } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const cli = fileURLToPath(new URL('../../../packages/cli/dist/src/main.js', import.meta.url));

const ROUNDS = { start: 5, stopStart: 5, disk: 3, sync: 3 };
const DD_MIB = 256;
const SMALL_FILES = 2000;
const BIG_FILES = 4;
const CHANGED = 10;

const p50 = (xs: number[]) =>
  round(
    quantile(
      [...xs].sort((a, b) => a - b),
      0.5,
    ),
    1,
  );
const since = (t: number) => performance.now() - t;
const log = (s: string) => process.stderr.write(`  ${s}\n`);

interface EnvironmentView {
  name: string;
  state: string;
  sandboxID: string | null;
}

/** aiva's own API, with the server's API key. */
async function api<T>(server: Server, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { 'x-api-key': server.apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (res.status === 204 ? undefined : await res.json()) as T;
}

/** Removes the environment, its sandbox and its volume; one never made (404) is no error. */
async function removeEnvironment(server: Server, name: string): Promise<void> {
  const res = await fetch(`${server.url}/v1/environments/${name}?force=true`, {
    method: 'DELETE',
    headers: { 'x-api-key': server.apiKey },
  });
  if (!res.ok && res.status !== 404)
    throw new Error(`DELETE /v1/environments/${name}: ${res.status} ${await res.text()}`);
}

/** The first command in the environment's sandbox, through the SDK. */
async function firstExec(env: EnvironmentView): Promise<Sandbox> {
  if (!env.sandboxID) throw new Error(`environment ${env.name} has no sandbox after start`);
  const sbx = await Sandbox.connect(env.sandboxID);
  await sbx.commands.run('true');
  return sbx;
}

/** 1. init + start → first exec of new environments vs create → first exec, interleaved. */
async function startRounds(server: Server): Promise<BenchRow[]> {
  const env = { init: [] as number[], start: [] as number[], total: [] as number[] };
  const plain: number[] = [];
  for (let i = 0; i < ROUNDS.start; i++) {
    log(`environment init+start→first exec ${i + 1}/${ROUNDS.start} …`);
    const name = `bench-start-${randomBytes(3).toString('hex')}`;
    try {
      const t = performance.now();
      await api(server, 'POST', '/v1/environments', { name });
      const initMs = since(t);
      const started = await api<EnvironmentView>(server, 'POST', `/v1/environments/${name}/start`, {});
      const startMs = since(t) - initMs;
      await firstExec(started);
      env.total.push(since(t));
      env.init.push(initMs);
      env.start.push(startMs);
    } finally {
      await removeEnvironment(server, name);
    }
    const t = performance.now();
    const sbx = await Sandbox.create({ timeoutMs: 120_000 });
    try {
      await sbx.commands.run('true');
      plain.push(since(t));
    } finally {
      await sbx.kill();
    }
  }
  const detail = `n=${ROUNDS.start}, containers, template base; environment: POST /v1/environments + /start, Sandbox.connect + commands.run('true')`;
  const total = p50(env.total);
  const base = p50(plain);
  return [
    { metric: 'environment init p50', value: p50(env.init), unit: 'ms', detail },
    { metric: 'environment start (fresh sandbox + volume) p50', value: p50(env.start), unit: 'ms', detail },
    { metric: 'environment init+start→first exec p50', value: total, unit: 'ms', detail },
    {
      metric: 'baseline Sandbox.create→first exec p50',
      value: base,
      unit: 'ms',
      detail: `n=${ROUNDS.start}, containers, template base, interleaved with the above`,
    },
    { metric: 'environment / baseline (p50)', value: round(total / base, 2), unit: '×', detail },
  ];
}

/** 2. stop → start → first exec of one environment vs pause without memory → connect → first exec. */
async function stopStartRounds(server: Server): Promise<BenchRow[]> {
  const env = { stop: [] as number[], back: [] as number[] };
  const plain = { pause: [] as number[], back: [] as number[] };
  const name = `bench-cycle-${randomBytes(3).toString('hex')}`;
  let sbx: Sandbox | undefined;
  try {
    await api(server, 'POST', '/v1/environments', { name });
    sbx = await Sandbox.create({ timeoutMs: 600_000 });
    const first = await firstExec(await api(server, 'POST', `/v1/environments/${name}/start`, {}));
    await first.files.write('/home/user/kept.txt', 'kept');
    await sbx.files.write('/home/user/kept.txt', 'kept');
    for (let i = 0; i < ROUNDS.stopStart; i++) {
      log(`environment stop→start→first exec ${i + 1}/${ROUNDS.stopStart} …`);
      let t = performance.now();
      await api(server, 'POST', `/v1/environments/${name}/stop`, {});
      env.stop.push(since(t));
      t = performance.now();
      const back = await firstExec(await api(server, 'POST', `/v1/environments/${name}/start`, {}));
      env.back.push(since(t));
      if ((await back.files.read('/home/user/kept.txt')) !== 'kept')
        throw new Error('the environment lost a file');

      t = performance.now();
      await sbx.pause({ keepMemory: false });
      plain.pause.push(since(t));
      t = performance.now();
      const resumed = await Sandbox.connect(sbx.sandboxId);
      await resumed.commands.run('true');
      plain.back.push(since(t));
      if ((await resumed.files.read('/home/user/kept.txt')) !== 'kept')
        throw new Error('the sandbox lost a file');
    }
  } finally {
    await removeEnvironment(server, name);
    await sbx?.kill();
  }
  const detail = `n=${ROUNDS.stopStart}, containers, template base, one environment stopped and started again, a file in /home/user checked after`;
  const baseDetail = `n=${ROUNDS.stopStart}, containers, template base, one sandbox: pause({ keepMemory: false }), Sandbox.connect + commands.run('true'), interleaved`;
  const envTotal = p50(env.stop.map((s, i) => s + (env.back[i] ?? 0)));
  const baseTotal = p50(plain.pause.map((s, i) => s + (plain.back[i] ?? 0)));
  return [
    { metric: 'environment stop p50', value: p50(env.stop), unit: 'ms', detail },
    { metric: 'environment start→first exec after stop p50', value: p50(env.back), unit: 'ms', detail },
    { metric: 'environment stop+start→first exec p50', value: envTotal, unit: 'ms', detail },
    { metric: 'baseline pause without memory p50', value: p50(plain.pause), unit: 'ms', detail: baseDetail },
    {
      metric: 'baseline connect→first exec after pause without memory p50',
      value: p50(plain.back),
      unit: 'ms',
      detail: baseDetail,
    },
    { metric: 'baseline pause+connect→first exec p50', value: baseTotal, unit: 'ms', detail: baseDetail },
    {
      metric: 'environment stop+start / baseline pause+connect (p50)',
      value: round(envTotal / baseTotal, 2),
      unit: '×',
      detail,
    },
  ];
}

/** Milliseconds a shell command takes inside the sandbox (as root), timed there. */
async function timed(sbx: Sandbox, cmd: string): Promise<number> {
  const r = await sbx.commands.run(
    `s=$(date +%s%N); ${cmd} >/dev/null 2>&1 || exit 3; e=$(date +%s%N); echo $(( (e - s) / 1000 ))`,
    { user: 'root', timeoutMs: 300_000 },
  );
  return Number(r.stdout.trim()) / 1000;
}

type ReadMethod = 'sandbox drop_caches' | 'host drop_caches' | 'O_DIRECT' | 'page cache';

/** Empties the host's page cache (containers share its kernel); false if not permitted. */
function dropHostCaches(): Promise<boolean> {
  return new Promise((resolve) =>
    execFile('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches'], (e) => resolve(!e)),
  );
}

/**
 * How a read can miss the page cache: the sandbox's root drops the caches, else this
 * process does on the host (the same kernel), else O_DIRECT reads, else it cannot.
 */
async function uncachedRead(sbx: Sandbox, files: string[]): Promise<ReadMethod> {
  const ok = async (cmd: string) =>
    (
      await sbx.commands.run(`${cmd} >/dev/null 2>&1 && echo ok || echo no`, { user: 'root' })
    ).stdout.trim() === 'ok';
  if (await ok('sync && echo 3 > /proc/sys/vm/drop_caches')) return 'sandbox drop_caches';
  if (await dropHostCaches()) return 'host drop_caches';
  const direct = await Promise.all(
    files.map((f) => ok(`dd if=${f} of=/dev/null bs=1M count=1 iflag=direct`)),
  );
  return direct.every(Boolean) ? 'O_DIRECT' : 'page cache';
}

const READ_HOW: Record<ReadMethod, string> = {
  'sandbox drop_caches':
    'caches dropped in the sandbox (echo 3 > /proc/sys/vm/drop_caches as root) before each read',
  'host drop_caches':
    'caches dropped on the host before each read (echo 3 > /proc/sys/vm/drop_caches by the benchmark, root; the sandbox shares its kernel but may not write /proc/sys)',
  O_DIRECT: 'read with iflag=direct (O_DIRECT): dropping the caches is not permitted here',
  'page cache': 'read from the page cache: neither dropping the caches nor O_DIRECT is permitted here',
};

/** 3. dd write (fsync) and read of 256 MiB into a mounted volume vs the sandbox's own disk. */
async function diskRounds(): Promise<{ rows: BenchRow[]; notes: string[] }> {
  const volume = await Volume.create(`bench-dd-${randomBytes(3).toString('hex')}`);
  const targets = { volume: '/mnt/vol/dd.bin', 'own disk': '/home/user/dd.bin' } as const;
  const speeds: Record<string, { write: number[]; read: number[] }> = {
    volume: { write: [], read: [] },
    'own disk': { write: [], read: [] },
  };
  let method: ReadMethod = 'page cache';
  let filesystems = '';
  try {
    const sbx = await Sandbox.create({ timeoutMs: 600_000, volumeMounts: { '/mnt/vol': volume } });
    try {
      const probes = Object.values(targets).map((f) => `${f}.probe`);
      await sbx.commands.run(
        probes.map((f) => `dd if=/dev/zero of=${f} bs=1M count=1 conv=fsync`).join(' && '),
        {
          user: 'root',
        },
      );
      method = await uncachedRead(sbx, probes);
      filesystems = (
        await sbx.commands.run("stat -f -c '%n: %T' /mnt/vol /home/user", { user: 'root' })
      ).stdout
        .trim()
        .replaceAll('\n', ', ');
      await sbx.commands.run(`rm -f ${probes.join(' ')}`, { user: 'root' });
      for (let i = 0; i < ROUNDS.disk; i++) {
        for (const [where, file] of Object.entries(targets)) {
          log(`dd ${DD_MIB} MiB into the ${where} ${i + 1}/${ROUNDS.disk} …`);
          const w = await timed(sbx, `dd if=/dev/zero of=${file} bs=1M count=${DD_MIB} conv=fsync`);
          if (method === 'sandbox drop_caches')
            await sbx.commands.run('sync && echo 3 > /proc/sys/vm/drop_caches', { user: 'root' });
          if (method === 'host drop_caches' && !(await dropHostCaches()))
            throw new Error('dropping the host caches failed');
          const flag = method === 'O_DIRECT' ? ' iflag=direct' : '';
          const r = await timed(sbx, `dd if=${file} of=/dev/null bs=1M${flag}`);
          await sbx.commands.run(`rm -f ${file}`, { user: 'root' });
          speeds[where]?.write.push((DD_MIB * 1000) / w);
          speeds[where]?.read.push((DD_MIB * 1000) / r);
        }
      }
    } finally {
      await sbx.kill();
    }
  } finally {
    await Volume.destroy(volume.volumeId);
  }
  const readHow = READ_HOW[method];
  const detail = `n=${ROUNDS.disk}, containers, one sandbox, dd bs=1M count=${DD_MIB}, as root`;
  const rows: BenchRow[] = [];
  for (const kind of ['write', 'read'] as const) {
    const vol = p50(speeds.volume?.[kind] ?? []);
    const own = p50(speeds['own disk']?.[kind] ?? []);
    const how = kind === 'write' ? 'conv=fsync' : readHow;
    rows.push(
      { metric: `volume ${kind} p50`, value: vol, unit: 'MiB/s', detail: `${detail}, ${how}, /mnt/vol` },
      { metric: `own disk ${kind} p50`, value: own, unit: 'MiB/s', detail: `${detail}, ${how}, /home/user` },
      { metric: `volume / own disk ${kind} (p50)`, value: round(vol / own, 2), unit: '×', detail },
    );
  }
  return {
    rows,
    notes: [
      `disk reads: ${readHow}`,
      `filesystems in the sandbox (stat -f, which names ext4 ext2/ext3): ${filesystems}; the volume is a loop-mounted ext4 image on the host, both on this VM's virtual disk, whose own host may cache it`,
    ],
  };
}

/** The built CLI with the server's home: its output and how long it took. */
function aiva(home: string, args: string[]): Promise<{ stdout: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, AIVA_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      const ms = since(t);
      if (code !== 0) reject(new Error(`aiva ${args.join(' ')}: exit ${code}\n${stderr}`));
      else resolve({ stdout, ms });
    });
  });
}

/** `aiva data … --json`: its summary and how long it took. */
async function aivaData(home: string, args: string[]): Promise<{ uploaded?: number; ms: number }> {
  const r = await aiva(home, ['data', ...args, '--json']);
  return { ...(JSON.parse(r.stdout) as { uploaded?: number }), ms: r.ms };
}

/** The tree: SMALL_FILES files of 1 KiB in 40 directories and BIG_FILES of 1 MiB. */
async function makeTree(root: string): Promise<string[]> {
  const small: string[] = [];
  for (let d = 0; d < 40; d++) await mkdir(join(root, `dir-${d}`), { recursive: true });
  for (let i = 0; i < SMALL_FILES; i++) {
    const file = join(root, `dir-${i % 40}`, `file-${i}.txt`);
    await writeFile(file, randomBytes(512).toString('hex'));
    small.push(file);
  }
  for (let i = 0; i < BIG_FILES; i++) await writeFile(join(root, `big-${i}.bin`), randomBytes(1 << 20));
  return small;
}

/** 4. `aiva data push` of a new tree vs `aiva data sync` after CHANGED files changed. */
async function syncRounds(server: Server, home: string, scratch: string): Promise<BenchRow[]> {
  const push: number[] = [];
  const sync: number[] = [];
  const unchanged: number[] = [];
  const cliStart: number[] = [];
  const name = `bench-data-${randomBytes(3).toString('hex')}`;
  try {
    await api(server, 'POST', '/v1/environments', { name });
    await api(server, 'POST', `/v1/environments/${name}/start`, {});
    for (let i = 0; i < ROUNDS.sync; i++) {
      log(`aiva data push, then sync of ${CHANGED} changed files ${i + 1}/${ROUNDS.sync} …`);
      const local = join(scratch, `tree-${i}`);
      const small = await makeTree(local);
      const first = await aivaData(home, [name, 'push', local, `tree-${i}`]);
      if (first.uploaded !== SMALL_FILES + BIG_FILES) throw new Error(`push moved ${first.uploaded} files`);
      push.push(first.ms);
      for (const file of small.slice(0, CHANGED)) await writeFile(file, randomBytes(512).toString('hex'));
      const again = await aivaData(home, [name, 'sync', local, `tree-${i}`]);
      if (again.uploaded !== CHANGED) throw new Error(`sync moved ${again.uploaded} files, not ${CHANGED}`);
      sync.push(again.ms);
      const none = await aivaData(home, [name, 'sync', local, `tree-${i}`]);
      if (none.uploaded !== 0) throw new Error(`a sync of an unchanged tree moved ${none.uploaded} files`);
      unchanged.push(none.ms);
      cliStart.push((await aiva(home, ['data', '--help'])).ms);
      await rm(local, { recursive: true, force: true });
    }
  } finally {
    await removeEnvironment(server, name);
  }
  const detail = `n=${ROUNDS.sync}, containers, the built CLI (one process each, its start included), a tree of ${SMALL_FILES} files of 1 KiB and ${BIG_FILES} of 1 MiB into the environment's /data volume`;
  const first = p50(push);
  const changed = p50(sync);
  const start = p50(cliStart);
  return [
    { metric: 'aiva data push of the tree p50', value: first, unit: 'ms', detail },
    { metric: `aiva data sync, ${CHANGED} files changed p50`, value: changed, unit: 'ms', detail },
    { metric: 'aiva data sync, nothing changed p50', value: p50(unchanged), unit: 'ms', detail },
    {
      metric: 'aiva data --help (the CLI starting) p50',
      value: start,
      unit: 'ms',
      detail: `n=${ROUNDS.sync}, the built CLI, node ${process.version}`,
    },
    { metric: 'changed sync / first push (p50)', value: round(changed / first, 2), unit: '×', detail },
    {
      metric: 'changed sync / first push, less the CLI starting (p50)',
      value: round((changed - start) / (first - start), 2),
      unit: '×',
      detail,
    },
  ];
}

export const environmentsBenchmark: Benchmark = {
  name: 'environments',
  description:
    'named environments and volumes on containers: init+start→first exec vs create, stop+start vs pause without memory, dd into a volume vs the own disk, aiva data push vs sync of a changed tree',
  async run() {
    const scratch = await benchScratch('environments');
    const home = join(scratch, 'home');
    const rows: BenchRow[] = [];
    const notes: string[] = [];
    try {
      const server = await aivaUpForSdk(home, ['--runtime', 'container', '--volume-size', '512']);
      process.env.E2B_VOLUME_API_URL = server.url;
      try {
        rows.push(...(await startRounds(server)));
        rows.push(...(await stopStartRounds(server)));
        const disk = await diskRounds();
        rows.push(...disk.rows);
        notes.push(...disk.notes);
        rows.push(...(await syncRounds(server, home, join(scratch, 'trees'))));
      } finally {
        await server.stop();
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    return {
      rows,
      environment: { driver: 'container', volumeSizeMiB: 512, ddMiB: DD_MIB },
      notes: [
        ...notes,
        'aiva data times include starting the CLI (node) each time',
        'baselines run on the same aiva up, interleaved with the environment rounds',
      ],
    };
  },
};
