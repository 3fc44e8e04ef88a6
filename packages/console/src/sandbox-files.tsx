import { type EntryInfo, FileType } from '@aiva/protocol/filesystem';
import { useEffect, useState } from 'preact/hooks';
import { errorMessage } from './api.js';
import { ENVD_USER, type Envd, restError } from './envd.js';

function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

function childOf(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

function filesQuery(path: string): string {
  return `/files?${new URLSearchParams({ path, username: ENVD_USER })}`;
}

function sizeText(size: bigint): string {
  const n = Number(size);
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Directories first, then by name. */
function ordered(entries: EntryInfo[]): EntryInfo[] {
  const dir = (e: EntryInfo) => (e.type === FileType.DIRECTORY ? 0 : 1);
  return [...entries].sort((a, b) => dir(a) - dir(b) || a.name.localeCompare(b.name));
}

/**
 * The sandbox's files, through envd: a directory listed by `filesystem.Filesystem/ListDir`
 * (starting at the user's home), a directory entered by its name, a file uploaded as
 * multipart to `POST /files?path=`, downloaded from `GET /files?path=` (read as a blob,
 * then saved), deleted by `Remove` (asked once more: "Confirm delete").
 */
export function SandboxFiles(props: { envd: Envd }) {
  const { fs, rest } = props.envd;
  const [dir, setDir] = useState<string>();
  const [entries, setEntries] = useState<EntryInfo[]>();
  const [error, setError] = useState<string>();
  const [note, setNote] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState<string>();

  const list = async (path: string) => {
    const res = await fs.listDir({ path, depth: 1 });
    setEntries(ordered(res.entries));
    setDir(path);
  };

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    setNote(undefined);
    try {
      await what();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
      setConfirming(undefined);
    }
  };

  useEffect(() => {
    void run(async () => {
      const home = (await fs.stat({ path: '~' })).entry?.path ?? '/';
      await list(home);
    });
  }, [props.envd]);

  useEffect(() => {
    if (!confirming) return;
    const t = setTimeout(() => setConfirming(undefined), 5000);
    return () => clearTimeout(t);
  }, [confirming]);

  const onUpload = (input: HTMLInputElement) =>
    run(async () => {
      const files = [...(input.files ?? [])];
      input.value = '';
      if (!dir || files.length === 0) return;
      for (const file of files) {
        const form = new FormData();
        form.append('file', file, file.name);
        const res = await rest(filesQuery(childOf(dir, file.name)), { method: 'POST', body: form });
        if (!res.ok) throw new Error(`Uploading ${file.name}: ${await restError(res)}`);
      }
      await list(dir);
      setNote(`Uploaded ${files.map((f) => f.name).join(', ')}`);
    });

  const onDownload = (entry: EntryInfo) =>
    run(async () => {
      const res = await rest(filesQuery(entry.path));
      if (!res.ok) throw new Error(`Downloading ${entry.name}: ${await restError(res)}`);
      const url = URL.createObjectURL(await res.blob());
      const save = document.createElement('a');
      save.href = url;
      save.download = entry.name;
      save.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setNote(`Downloaded ${entry.name}`);
    });

  const onDelete = (entry: EntryInfo) =>
    run(async () => {
      await fs.remove({ path: entry.path });
      if (dir) await list(dir);
      setNote(`Deleted ${entry.name}`);
    });

  return (
    <section aria-labelledby="files-title" class="files-section">
      <h2 id="files-title">Files</h2>
      <div class="files-bar">
        <p class="files-path">
          Directory <code data-directory="">{dir ?? '…'}</code>
        </p>
        <button
          type="button"
          disabled={busy || !dir || dir === '/'}
          onClick={() => dir && run(() => list(parentOf(dir)))}
        >
          Up
        </button>
        <button type="button" disabled={busy || !dir} onClick={() => dir && run(() => list(dir))}>
          Refresh
        </button>
        <label class="upload">
          Upload a file
          <input type="file" multiple disabled={busy || !dir} onChange={(e) => onUpload(e.currentTarget)} />
        </label>
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <p role="status" class="hint">
        {busy ? 'Working…' : note}
      </p>
      {entries &&
        (entries.length === 0 ? (
          <p>This directory is empty.</p>
        ) : (
          <table class="files">
            <caption class="visually-hidden">Files in {dir}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Size</th>
                <th scope="col">Modified</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => {
                const isDir = e.type === FileType.DIRECTORY;
                return (
                  <tr key={e.path} data-file={e.name}>
                    <td>
                      {isDir ? (
                        <button
                          type="button"
                          class="link"
                          disabled={busy}
                          onClick={() => run(() => list(e.path))}
                        >
                          {e.name}/
                        </button>
                      ) : (
                        e.name
                      )}
                    </td>
                    <td>{isDir ? '—' : sizeText(e.size)}</td>
                    <td>
                      {e.modifiedTime ? new Date(Number(e.modifiedTime.seconds) * 1000).toLocaleString() : ''}
                    </td>
                    <td>
                      <div class="actions">
                        {!isDir && (
                          <button
                            type="button"
                            disabled={busy}
                            onClick={() => onDownload(e)}
                            aria-label={`Download ${e.name}`}
                          >
                            Download
                          </button>
                        )}
                        {confirming === e.path ? (
                          <button
                            type="button"
                            class="danger"
                            disabled={busy}
                            onClick={() => onDelete(e)}
                            aria-label={`Confirm delete ${e.name}`}
                          >
                            Confirm delete
                          </button>
                        ) : (
                          <button
                            type="button"
                            disabled={busy}
                            onClick={() => setConfirming(e.path)}
                            aria-label={`Delete ${e.name}`}
                          >
                            Delete
                          </button>
                        )}
                      </div>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        ))}
    </section>
  );
}
