import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Template } from './api.js';
import { HOME, navigate, onLinkClick } from './router.js';

/** `key=value` lines → metadata; the first line that is not one is named in the error. */
export function parseMetadata(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`metadata line ${i + 1} is not key=value: ${line}`);
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

function templateName(t: Template): string {
  return t.aliases?.[0] ?? t.names?.[0] ?? t.templateID;
}

/**
 * A new sandbox through `POST /sandboxes`: template, timeout and metadata. Its vCPUs and
 * memory are the template's (E2B's API takes them from the template), shown beside it.
 */
export function SandboxCreate() {
  const [templates, setTemplates] = useState<Template[]>();
  const [template, setTemplate] = useState('base');
  const [timeout, setTimeoutS] = useState('300');
  const [metadata, setMetadata] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  useEffect(() => {
    api<Template[]>('GET', '/templates').then(setTemplates, (e) => setError(errorMessage(e)));
  }, []);
  const chosen = templates?.find((t) => templateName(t) === template || t.templateID === template);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    let body: { templateID: string; timeout: number; metadata: Record<string, string> };
    try {
      body = { templateID: template, timeout: Number(timeout), metadata: parseMetadata(metadata) };
    } catch (err) {
      return setError(errorMessage(err));
    }
    setBusy(true);
    try {
      const made = await api<{ sandboxID: string }>('POST', '/sandboxes', body);
      navigate(`/ui/sandboxes/${made.sandboxID}`);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="create-title">
      <p>
        <a href={HOME} onClick={onLinkClick}>
          ← Sandboxes
        </a>
      </p>
      <h1 id="create-title">New sandbox</h1>
      <form class="card form" onSubmit={submit}>
        <label for="template">Template</label>
        <select
          id="template"
          value={template}
          onChange={(e) => setTemplate((e.currentTarget as HTMLSelectElement).value)}
        >
          {(templates ?? []).map((t) => (
            <option key={t.templateID} value={templateName(t)}>
              {templateName(t)}
            </option>
          ))}
          {!templates && <option value={template}>{template}</option>}
        </select>
        <p class="hint" aria-live="polite">
          {chosen ? `${chosen.cpuCount} vCPU, ${chosen.memoryMB} MiB memory (set by the template)` : ' '}
        </p>
        <label for="timeout">Timeout (seconds)</label>
        <input
          id="timeout"
          type="number"
          min={1}
          max={86400}
          required
          value={timeout}
          onInput={(e) => setTimeoutS((e.currentTarget as HTMLInputElement).value)}
        />
        <label for="metadata">Metadata (one key=value a line)</label>
        <textarea
          id="metadata"
          rows={3}
          value={metadata}
          onInput={(e) => setMetadata((e.currentTarget as HTMLTextAreaElement).value)}
        />
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create sandbox'}
        </button>
      </form>
    </section>
  );
}
