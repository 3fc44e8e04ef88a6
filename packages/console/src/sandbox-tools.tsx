import { useEnvd } from './envd.js';
import { SandboxFiles } from './sandbox-files.js';
import { SandboxTerminal } from './sandbox-terminal.js';

/** A running sandbox's terminal and file browser, over its envd (gone when it pauses or ends). */
export function SandboxTools(props: { id: string; stillRunning: () => boolean }) {
  const { envd, error } = useEnvd(props.id);
  if (error)
    return (
      <p role="alert" class="error">
        {error}
      </p>
    );
  if (!envd) return <p>Connecting to the sandbox…</p>;
  return (
    <div class="detail-tools">
      <SandboxTerminal envd={envd} stillRunning={props.stillRunning} />
      <SandboxFiles envd={envd} />
    </div>
  );
}
