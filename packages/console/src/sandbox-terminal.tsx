import { Signal } from '@aiva/protocol/process';
import { FitAddon } from '@xterm/addon-fit';
import { type ITheme, Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { errorMessage } from './api.js';
import type { Envd } from './envd.js';

/** Within this many ms after Escape, Tab leaves the terminal instead of going to the shell. */
const ESCAPE_TAB_MS = 1500;

/** Colours with WCAG AA contrast on the terminal's background, light and dark (and xterm.js keeps any other at 4.5:1). */
const LIGHT: ITheme = {
  background: '#ffffff',
  foreground: '#1b1f24',
  cursor: '#1b1f24',
  cursorAccent: '#ffffff',
  selectionBackground: '#b6d3ff',
  black: '#1b1f24',
  red: '#b3261e',
  green: '#1d6b35',
  yellow: '#7a5200',
  blue: '#1f5fbf',
  magenta: '#8e2f8e',
  cyan: '#0b6470',
  white: '#555b66',
  brightBlack: '#555b66',
  brightRed: '#a1261e',
  brightGreen: '#1a5e2f',
  brightYellow: '#6b4800',
  brightBlue: '#1b4fa0',
  brightMagenta: '#7a2a7a',
  brightCyan: '#0a5660',
  brightWhite: '#3a3f48',
};
const DARK: ITheme = {
  background: '#101215',
  foreground: '#e8eaee',
  cursor: '#e8eaee',
  cursorAccent: '#101215',
  selectionBackground: '#33507a',
  black: '#a9afba',
  red: '#ff8a80',
  green: '#7ddc98',
  yellow: '#f2c26b',
  blue: '#7fb0ff',
  magenta: '#e09cf0',
  cyan: '#7fdbe6',
  white: '#e8eaee',
  brightBlack: '#a9afba',
  brightRed: '#ffb3ab',
  brightGreen: '#a5ecb7',
  brightYellow: '#f7d794',
  brightBlue: '#a9c9ff',
  brightMagenta: '#ecbdf5',
  brightCyan: '#a8e9f0',
  brightWhite: '#ffffff',
};

function pidSelector(pid: number) {
  return { selector: { case: 'pid' as const, value: pid } };
}

/**
 * A live shell in the sandbox: xterm.js over envd's PTY (`process.Process/Start` with a
 * `pty`, streamed; keys by `SendInput`; the terminal's size by `Update`, following the
 * element's size). The shell is killed when the terminal goes while the sandbox still runs
 * (the page left); a sandbox that paused or ended is left alone.
 * Escape then Tab moves the focus on; the rest of the keys go to the shell.
 */
export function SandboxTerminal(props: { envd: Envd; stillRunning: () => boolean }) {
  const host = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState('Connecting…');
  const [error, setError] = useState<string>();

  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const { process } = props.envd;
    const dark = window.matchMedia('(prefers-color-scheme: dark)');
    const term = new Terminal({
      cursorBlink: false,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace',
      fontSize: 14,
      minimumContrastRatio: 4.5,
      theme: dark.matches ? DARK : LIGHT,
    });
    const onScheme = () => {
      term.options.theme = dark.matches ? DARK : LIGHT;
    };
    dark.addEventListener('change', onScheme);
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(element);
    term.textarea?.setAttribute('aria-describedby', 'terminal-hint');
    fit.fit();

    let escapedAt = 0;
    term.attachCustomKeyEventHandler((e) => {
      if (e.type !== 'keydown') return true;
      if (e.key === 'Escape') escapedAt = Date.now();
      else if (e.key === 'Tab' && Date.now() - escapedAt < ESCAPE_TAB_MS) return false;
      return true;
    });

    const aborted = new AbortController();
    let pid: number | undefined;
    const pending: Uint8Array[] = [];
    const failed = (e: unknown) => {
      if (!aborted.signal.aborted) setError(errorMessage(e));
    };
    // One input call at a time, in order: calls in flight together may reach envd in any
    // order, and keystrokes must not ("echo" arriving as "ehco").
    let sending: Promise<unknown> = Promise.resolve();
    const send = (data: Uint8Array) => {
      if (pid === undefined) return void pending.push(data);
      const to = pid;
      sending = sending
        .then(() =>
          process.sendInput({ process: pidSelector(to), input: { input: { case: 'pty', value: data } } }),
        )
        .catch(failed);
    };
    const encoder = new TextEncoder();
    const typed = term.onData((d) => send(encoder.encode(d)));
    const typedBinary = term.onBinary((d) => send(Uint8Array.from(d, (c) => c.charCodeAt(0) & 0xff)));
    const resized = term.onResize(({ cols, rows }) => {
      if (pid !== undefined)
        process.update({ process: pidSelector(pid), pty: { size: { cols, rows } } }).catch(failed);
    });
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(element);

    (async () => {
      try {
        const events = process.start(
          {
            process: { cmd: '/bin/bash', args: ['-i', '-l'], envs: { TERM: 'xterm-256color' } },
            pty: { size: { cols: term.cols, rows: term.rows } },
          },
          { signal: aborted.signal },
        );
        for await (const { event } of events) {
          const e = event?.event;
          if (e?.case === 'start') {
            pid = e.value.pid;
            setStatus('Connected');
            for (const data of pending.splice(0)) send(data);
            if (term.cols !== 0)
              process
                .update({ process: pidSelector(pid), pty: { size: { cols: term.cols, rows: term.rows } } })
                .catch(failed);
          } else if (e?.case === 'data' && e.value.output.case === 'pty') term.write(e.value.output.value);
          else if (e?.case === 'end') {
            pid = undefined;
            setStatus(`The shell ended (${e.value.status || `exit code ${e.value.exitCode}`})`);
          }
        }
      } catch (e) {
        failed(e);
        if (!aborted.signal.aborted) setStatus('Disconnected');
      }
    })();

    return () => {
      aborted.abort();
      if (pid !== undefined && props.stillRunning())
        process.sendSignal({ process: pidSelector(pid), signal: Signal.SIGKILL }).catch(() => {});
      observer.disconnect();
      typed.dispose();
      typedBinary.dispose();
      resized.dispose();
      dark.removeEventListener('change', onScheme);
      term.dispose();
    };
  }, [props.envd]);

  return (
    <section aria-labelledby="terminal-title" class="terminal-section">
      <h2 id="terminal-title">Terminal</h2>
      <p id="terminal-hint" class="hint">
        A shell in the sandbox as <code>user</code>. To move the focus out of the terminal, press Escape, then
        Tab. <span role="status">{status}</span>
      </p>
      {error && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div ref={host} class="terminal-frame" data-terminal="" />
    </section>
  );
}
