'use strict';
// aiva's JavaScript and TypeScript Jupyter kernel: ijavascript's libraries (jp-kernel,
// which runs each cell in a nel session: a child node process) started with aiva's
// transpile hook (js-transpile.cjs) and with Promise results awaited. Runs on the
// template's node 18; its npm packages are in the template under PREFIX.
//
//   node js-kernel.cjs <connection_file>
//
// An interrupt (SIGINT to the kernel's process group) cannot stop code in the middle of
// a run in a nel session: the session is restarted (the context's state is lost) and the
// interrupted request is answered with an error saying so.
const { readFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { join } = require('node:path');
const { makeTranspile } = require('./js-transpile.cjs');

const PREFIX = process.env.AIVA_JS_KERNEL_PREFIX || '/usr/local/lib/aiva-js-kernel';
const requireFromPrefix = createRequire(join(PREFIX, 'package.json'));
const Kernel = requireFromPrefix('jp-kernel');
const { Session } = requireFromPrefix('nel');

const connectionFile = process.argv[2];
if (!connectionFile) {
  process.stderr.write('usage: js-kernel.cjs <connection_file>\n');
  process.exit(2);
}

const protocolVersion = '5.0';
const kernel = new Kernel({
  connection: JSON.parse(readFileSync(connectionFile, 'utf8')),
  cwd: process.cwd(),
  hideUndefined: true,
  protocolVersion,
  transpile: makeTranspile(requireFromPrefix),
  startupCallback() {
    // nel resolves a Promise result before sending it (and a rejected one is an error).
    this.session.execute('$$.config.awaitExecution = true;');
  },
  kernelInfoReply: {
    protocol_version: protocolVersion,
    implementation: 'aiva-javascript',
    implementation_version: '1.0.0',
    language_info: {
      name: 'javascript',
      version: process.versions.node,
      mimetype: 'application/javascript',
      file_extension: '.js',
    },
    banner: `aiva JavaScript/TypeScript kernel (Node.js ${process.version})`,
    help_links: [],
  },
});

const INTERRUPTED = {
  ename: 'KernelInterrupted',
  evalue:
    'The run was interrupted: the JavaScript context was restarted to stop it, so its state (variables, imports) was lost',
  traceback: [],
};

/**
 * Restarts the nel session: the session's node process is killed (the group's SIGINT
 * may have ended it already), a fresh one started, and the request that was running is
 * answered with an error; requests queued behind it run in the fresh session.
 */
function interrupt() {
  process.stderr.write('js-kernel: interrupted: restarting the session (its state is lost)\n');
  const session = kernel.session;
  const running = session._currentTask;
  const queued = session._tasks.slice();
  const child = session._server;
  session._status = 'dead';
  child.removeAllListeners('exit');
  child.removeAllListeners('message');
  const restart = () => {
    Session.call(session, session._nelConfig);
    kernel._initSession();
    if (running) {
      running.onError?.({ error: INTERRUPTED });
      running.afterRun?.();
    }
    for (const task of queued) session._run(task);
  };
  if (child.exitCode !== null || child.signalCode !== null) restart();
  else {
    child.once('exit', restart);
    child.kill('SIGKILL');
  }
}

process.on('SIGINT', interrupt);
process.on('SIGTERM', () => kernel.destroy(() => process.exit(0)));
