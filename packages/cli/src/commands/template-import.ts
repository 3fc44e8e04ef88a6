import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runCommand } from '@aiva/node';
import { apiTarget, callApi } from '../api-client.js';

interface BuildStatus {
  status: 'waiting' | 'building' | 'ready' | 'error';
  logEntries: { level: string; message: string }[];
  reason?: { message: string };
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/**
 * `aiva template import`: an image archive (`docker save`, an OCI archive) or an OCI
 * layout directory becomes a template. The archive is uploaded as a build's files and
 * the build starts from it (`fromArchive`, aiva's own field of E2B's build API), so it
 * works against any aiva server, with the same log as every build.
 */
export async function importTemplate(
  path: string,
  opts: { name: string; cpu: number; memory: number },
  print: (line: string) => void,
): Promise<string> {
  await checkExists(path);
  const { templateID, buildID } = await callApi<{ templateID: string; buildID: string }>(
    'POST',
    '/v3/templates',
    {
      name: opts.name,
      cpuCount: opts.cpu,
      memoryMB: opts.memory,
    },
  );
  const hash = await uploadImageArchive(path, templateID, print);
  await callApi('POST', `/v2/templates/${templateID}/builds/${buildID}`, { fromArchive: hash, steps: [] });
  await followBuild(templateID, buildID, opts.name, print);
  return templateID;
}

/** Refuses a path that is not there, before anything is asked of the server. */
export async function checkExists(path: string): Promise<void> {
  if (!(await stat(resolve(path)).catch(() => undefined)))
    throw new Error(`${path}: no such file or directory`);
}

/**
 * Uploads an image archive, or an OCI layout directory as a tar of itself (an OCI
 * archive), as the build files of `templateID` (unless the team has them already);
 * returns their hash, what `fromArchive` names.
 */
export async function uploadImageArchive(
  path: string,
  templateID: string,
  print: (line: string) => void,
): Promise<string> {
  const abs = resolve(path);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw new Error(`${path}: no such file or directory`);
  const work = await mkdtemp(join(tmpdir(), 'aiva-import-'));
  try {
    let archive = abs;
    if (st.isDirectory()) {
      archive = join(work, 'layout.tar');
      await runCommand('tar', ['-cf', archive, '-C', abs, '.']);
    }
    const hash = await sha256Of(archive);
    const link = await callApi<{ present: boolean; url: string }>(
      'GET',
      `/templates/${templateID}/files/${hash}`,
    );
    if (!link.present) {
      const size = (await stat(archive)).size;
      print(`  … uploading ${path} (${(size / 1024 / 1024).toFixed(1)} MiB)`);
      const res = await fetch(link.url, {
        method: 'PUT',
        body: Readable.toWeb(createReadStream(archive)) as ReadableStream,
        headers: { 'content-length': String(size) },
        duplex: 'half',
      } as RequestInit);
      if (!res.ok) throw new Error(`the upload was refused: ${(await res.text()) || res.status}`);
    }
    return hash;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Prints a build's log lines as they come until it ends; a failed build throws its reason. */
export async function followBuild(
  templateID: string,
  buildID: string,
  name: string,
  print: (line: string) => void,
): Promise<void> {
  const { apiUrl } = await apiTarget();
  let offset = 0;
  for (;;) {
    const s = await callApi<BuildStatus>(
      'GET',
      `/templates/${templateID}/builds/${buildID}/status?logsOffset=${offset}`,
    );
    for (const e of s.logEntries) print(`    ${e.message}`);
    offset += s.logEntries.length;
    if (s.status === 'ready' && s.logEntries.length === 0) return;
    if (s.status === 'error' && s.logEntries.length === 0)
      throw new Error(s.reason?.message ?? `the build failed (aiva template logs ${name} on ${apiUrl})`);
    if (s.logEntries.length === 0) await new Promise((r) => setTimeout(r, 200));
  }
}
