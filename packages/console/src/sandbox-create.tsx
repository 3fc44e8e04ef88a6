import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Template } from './api.js';
import { type KeyValueRow, KeyValueRows, recordOf } from './key-value-rows.js';
import { HOME, navigate, onLinkClick } from './router.js';

/** One destination a line (CIDRs, addresses, domain names); blank lines are skipped. */
export function linesOf(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

function templateName(t: Template): string {
  return t.aliases?.[0] ?? t.names?.[0] ?? t.templateID;
}

/**
 * A new sandbox through `POST /sandboxes`: template, timeout, env vars and metadata (rows
 * of key and value), and its network policy (E2B's `allow_internet_access` and
 * `network.allowOut` / `denyOut`). Its vCPUs and memory are the template's (E2B's API takes
 * them from the template), shown beside it. The API's message is shown when it refuses.
 */
export function SandboxCreate() {
  const [templates, setTemplates] = useState<Template[]>();
  const [template, setTemplate] = useState('base');
  const [timeout, setTimeoutS] = useState('300');
  const [envVars, setEnvVars] = useState<KeyValueRow[]>([]);
  const [metadata, setMetadata] = useState<KeyValueRow[]>([]);
  const [internet, setInternet] = useState(true);
  const [allowOut, setAllowOut] = useState('');
  const [denyOut, setDenyOut] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  useEffect(() => {
    api<Template[]>('GET', '/templates').then(setTemplates, (e) => setError(errorMessage(e)));
  }, []);
  const chosen = templates?.find((t) => templateName(t) === template || t.templateID === template);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(undefined);
    let body: Record<string, unknown>;
    try {
      const allow = linesOf(allowOut);
      const deny = linesOf(denyOut);
      body = {
        templateID: template,
        timeout: Number(timeout),
        metadata: recordOf('Metadata entry', metadata),
        envVars: recordOf('Environment variable', envVars),
        allow_internet_access: internet,
        network:
          allow.length > 0 || deny.length > 0
            ? {
                ...(allow.length > 0 ? { allowOut: allow } : {}),
                ...(deny.length > 0 ? { denyOut: deny } : {}),
              }
            : undefined,
      };
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
        <KeyValueRows
          name="Environment variable"
          legend="Environment variables"
          rows={envVars}
          onChange={setEnvVars}
          keyPlaceholder="NAME"
        />
        <KeyValueRows
          name="Metadata entry"
          legend="Metadata"
          rows={metadata}
          onChange={setMetadata}
          keyPlaceholder="key"
        />
        <fieldset class="kv">
          <legend>Network</legend>
          <label class="check">
            <input
              type="checkbox"
              checked={internet}
              onChange={(e) => setInternet((e.currentTarget as HTMLInputElement).checked)}
            />{' '}
            Allow internet access
          </label>
          <label for="allow-out">Always allowed destinations (one CIDR, address or domain a line)</label>
          <textarea
            id="allow-out"
            rows={2}
            value={allowOut}
            onInput={(e) => setAllowOut((e.currentTarget as HTMLTextAreaElement).value)}
          />
          <label for="deny-out">Denied destinations (one a line)</label>
          <textarea
            id="deny-out"
            rows={2}
            value={denyOut}
            onInput={(e) => setDenyOut((e.currentTarget as HTMLTextAreaElement).value)}
          />
        </fieldset>
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
