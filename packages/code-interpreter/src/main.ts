import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContextManager } from './code-context.js';
import { executeSilently } from './execution.js';
import { codeInterpreterServer } from './http-server.js';
import { pythonKernelTuning } from './kernel-tuning.js';

/** E2B's code-interpreter port (`JUPYTER_PORT` in `@e2b/code-interpreter`). */
const PORT = Number(process.env.CODE_INTERPRETER_PORT ?? 49999);

// The server listens only once the default Python kernel is warm, so a readiness check
// on /health (the template's) passes only then, as E2B's does.
async function main(): Promise<void> {
  const runtimeDir = await mkdtemp(join(tmpdir(), 'aiva-kernels-'));
  const contexts = new ContextManager(
    { runtimeDir, readyTimeoutMs: 60_000, tune: pythonKernelTuning },
    process.cwd(),
  );
  const python = await contexts.defaultFor('python');
  // A first execute costs the kernel more than later ones: paid now, before a VM snapshot
  // or a warm pool keeps the kernel (silent: the execution count stays at 0).
  await executeSilently(await python.ensureKernel(), 'pass');
  const server = codeInterpreterServer(contexts);
  server.keepAliveTimeout = 640_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(PORT, '0.0.0.0', resolve));
  process.stderr.write(`code-interpreter: listening on ${PORT}\n`);
  const stop = () => {
    server.close();
    void contexts.closeAll().finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((e: Error) => {
  process.stderr.write(`code-interpreter: ${e.message}\n`);
  process.exit(1);
});
