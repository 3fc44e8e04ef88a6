import { useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';

/**
 * Sets when a running sandbox ends, counted from now (`POST /sandboxes/{id}/timeout`, as
 * the SDK's `setTimeout`): longer or shorter. The new end comes back through the stream.
 */
export function SandboxTimeout(props: { id: string }) {
  const [seconds, setSeconds] = useState('300');
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ error: boolean; text: string }>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setMessage(undefined);
    try {
      await api('POST', `/sandboxes/${props.id}/timeout`, { timeout: Number(seconds) });
      setMessage({ error: false, text: `It now ends ${seconds} s from now.` });
    } catch (err) {
      setMessage({ error: true, text: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="inline-form" onSubmit={submit}>
      <label for="timeout-seconds">Timeout from now (seconds)</label>
      <input
        id="timeout-seconds"
        type="number"
        min={1}
        max={86400}
        required
        value={seconds}
        onInput={(e) => setSeconds((e.currentTarget as HTMLInputElement).value)}
      />
      <button type="submit" disabled={busy}>
        Set timeout
      </button>
      {message && (
        <span role={message.error ? 'alert' : 'status'} class={message.error ? 'error' : 'muted'}>
          {message.text}
        </span>
      )}
    </form>
  );
}
