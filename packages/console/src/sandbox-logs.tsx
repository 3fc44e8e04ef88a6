import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';

interface LogEntry {
  timestamp: string;
  level: string;
  message: string;
  fields: Record<string, string>;
}

const POLL_MS = 3000;
/** The tail shows at most this many lines. */
const TAIL = 500;

/**
 * The tail of a sandbox's console log (E2B's `GET /v2/sandboxes/{id}/logs`), read again
 * every 3 s while it runs. Following (the default) keeps the newest line in view; scrolling
 * up stops following until the box is scrolled back to its end.
 */
export function SandboxLogs(props: { id: string; live: boolean }) {
  const [entries, setEntries] = useState<LogEntry[]>();
  const [error, setError] = useState<string>();
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLPreElement>(null);

  useEffect(() => {
    // Read while it runs; a paused sandbox keeps what was read.
    if (!props.live) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const read = async () => {
      try {
        const r = await api<{ logs: LogEntry[] }>('GET', `/v2/sandboxes/${props.id}/logs?limit=10000`);
        if (!stopped) {
          setEntries(r.logs.slice(-TAIL));
          setError(undefined);
        }
      } catch (e) {
        if (!stopped) setError(errorMessage(e));
      }
      if (!stopped) timer = setTimeout(read, POLL_MS);
    };
    void read();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [props.id, props.live]);

  useEffect(() => {
    const el = box.current;
    if (follow && el) el.scrollTop = el.scrollHeight;
  }, [entries, follow]);

  return (
    <section class="detail-tools" aria-labelledby="logs-title">
      <div class="title-row">
        <h2 id="logs-title">Console log</h2>
        <label class="inline-label">
          <input
            type="checkbox"
            checked={follow}
            onChange={(e) => setFollow((e.currentTarget as HTMLInputElement).checked)}
          />{' '}
          Follow
        </label>
      </div>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {!entries ? (
        <p>{props.live ? 'Loading…' : 'Read while the sandbox runs.'}</p>
      ) : entries.length === 0 ? (
        <p class="empty">No log lines yet.</p>
      ) : (
        <pre
          ref={box}
          class="log-tail"
          // biome-ignore lint/a11y/noNoninteractiveTabindex: the log scrolls, and a keyboard must reach it to scroll it
          tabIndex={0}
          role="log"
          aria-label="Console log lines"
          onScroll={(e) => {
            const el = e.currentTarget as HTMLPreElement;
            const atEnd = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
            if (atEnd !== follow) setFollow(atEnd);
          }}
        >
          {entries.map((e, i) => (
            <span key={`${e.timestamp}-${i}`} class={`log-line log-${e.level}`}>
              <time dateTime={e.timestamp}>{new Date(e.timestamp).toLocaleTimeString()}</time> {e.message}
              {'\n'}
            </span>
          ))}
        </pre>
      )}
    </section>
  );
}
