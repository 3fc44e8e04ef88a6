"""aiva's bash kernel: a Jupyter wrapper kernel (ipykernel's Kernel base class) over one
persistent bash, so variables, functions and the working directory last from cell to cell.

How a cell runs: its code goes to a file that bash sources, with stdin from /dev/null;
then bash writes the cell's exit status to a pipe of its own (fd 19). bash's stdout and
stderr are two pipes, streamed to the client as they come, complete lines at a time.

bash is interactive (`-i`, without readline, prompts or job control) for one reason: an
interactive bash that gets SIGINT abandons the command it runs (the whole sourced cell)
and lives on, while a non-interactive one exits. The code-interpreter server interrupts
a kernel with SIGINT to its process group, which holds this process, bash and bash's
children: the child running dies, bash returns to its loop, this kernel reports the
interrupt and keeps bash and its state.

A cell whose last command exits non-zero is an error with `ename` '' and `evalue` the
status, as E2B's bash kernel (PyPI's bash_kernel) reports it. `exit` in a cell ends bash:
the kernel starts a new one (its state is lost) and reports that as an error.
"""

import codecs
import os
import select
import shutil
import signal
import subprocess
import tempfile

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

STATUS_FD = 19
# How long a partial line (no newline yet) waits before it is sent anyway.
PARTIAL_LINE_S = 0.1
MAX_PENDING = 64 * 1024
INIT = (
    "set +m +H; set +o history; unset HISTFILE MAILCHECK PROMPT_COMMAND; export -n PS1 PS2\n"
    f"printf 'ready\\n' >&{STATUS_FD}\n"
)


class BashKernel(Kernel):
    implementation = "aiva_bash_kernel"
    implementation_version = "1.0"
    language = "bash"
    language_version = "5"
    language_info = {
        "name": "bash",
        "mimetype": "text/x-sh",
        "file_extension": ".sh",
        "codemirror_mode": "shell",
        "pygments_lexer": "bash",
    }
    banner = "aiva bash kernel"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._dir = tempfile.mkdtemp(prefix="aiva-bash-")
        self._cwd = os.getcwd()
        self._bash = None
        self._interrupted = False
        self._start_bash()

    # bash's life

    def _start_bash(self):
        status_r, status_w = os.pipe()
        env = dict(os.environ, PS1="", PS2="", PS4="+ ")

        def in_child():
            os.dup2(status_w, STATUS_FD)
            # bash's children get SIGINT's default action (ipykernel may ignore it here).
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        self._bash = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "--noediting", "-i"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self._cwd,
            env=env,
            pass_fds=(STATUS_FD,),
            preexec_fn=in_child,
        )
        os.close(status_w)
        self._status = status_r
        for f in (self._bash.stdout, self._bash.stderr):
            os.set_blocking(f.fileno(), False)
        os.set_blocking(status_r, False)
        self._status_buf = b""
        self._send(INIT)
        # What bash says while starting (no job control, ...) is not the user's.
        if self._wait_status(discard=True) is None:
            raise RuntimeError("bash did not start")

    def _send(self, text):
        self._bash.stdin.write(text.encode())
        self._bash.stdin.flush()

    def _stop_bash(self):
        if self._bash is None:
            return
        if self._bash.poll() is None:
            self._bash.kill()
        self._bash.wait()
        for f in (self._bash.stdin, self._bash.stdout, self._bash.stderr):
            try:
                f.close()
            except OSError:
                pass
        os.close(self._status)
        self._bash = None

    # one cell

    def _wait_status(self, discard=False, silent=False):
        """Streams bash's output until it writes a status line; returns it (None: bash ended)."""
        decoders = {
            self._bash.stdout.fileno(): ("stdout", codecs.getincrementaldecoder("utf-8")("replace")),
            self._bash.stderr.fileno(): ("stderr", codecs.getincrementaldecoder("utf-8")("replace")),
        }
        pending = {"stdout": "", "stderr": ""}
        quiet = discard or silent

        def emit(name, text, final=False):
            pending[name] += text
            # A line longer than MAX_PENDING goes out in pieces rather than piling up here.
            if final or len(pending[name]) > MAX_PENDING:
                out, pending[name] = pending[name], ""
            else:
                cut = pending[name].rfind("\n") + 1
                out, pending[name] = pending[name][:cut], pending[name][cut:]
            # An interactive bash ends the line it was on when SIGINT comes: not output.
            if name == "stderr" and out == "\n" and self._interrupted:
                out = ""
            if out and not quiet:
                self.send_response(self.iopub_socket, "stream", {"name": name, "text": out})

        def drain(fd, reads=None):
            name, dec = decoders[fd]
            # At most `reads` reads while the cell runs, so a fast writer cannot starve the rest.
            for _ in iter(int, 1) if reads is None else range(reads):
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if not data:
                    break
                emit(name, dec.decode(data))

        status = None
        fds = list(decoders) + [self._status]
        while status is None:
            try:
                status = self._step(fds, drain, emit, pending)
            except KeyboardInterrupt:
                # bash got the same SIGINT: it abandons the cell and writes its status.
                self._interrupted = True
            # bash ended: its end of the status pipe closed, or (a job it left in the
            # background still holds that) it is no more.
            if status is None and (self._status not in fds or self._bash.poll() is not None):
                break
        # The cell is over: what its commands wrote is in the pipes already.
        for fd in decoders:
            drain(fd)
        for name in pending:
            emit(name, "", final=True)
        return status

    def _step(self, fds, drain, emit, pending):
        """One wait for output; the status line once bash wrote it."""
        ready, _, _ = select.select(fds, [], [], PARTIAL_LINE_S)
        if not ready:
            for name in pending:
                emit(name, "", final=True)
            return None
        for fd in ready:
            if fd != self._status:
                drain(fd, 16)
                continue
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            if not data:
                # bash ended (its end of the status pipe closed).
                fds.remove(fd)
                return None
            self._status_buf += data
            if b"\n" in self._status_buf:
                line, self._status_buf = self._status_buf.split(b"\n", 1)
                return line.decode()
        return None

    def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False):
        ok = {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}
        if not code.strip():
            return ok
        self._interrupted = False
        cell = os.path.join(self._dir, "cell.sh")
        with open(cell, "w", encoding="utf-8") as f:
            f.write(code if code.endswith("\n") else code + "\n")
        quoted = "'" + cell.replace("'", "'\\''") + "'"
        try:
            self._send(f". {quoted} </dev/null\nprintf '%d\\n' \"$?\" >&{STATUS_FD}\n")
            status = self._wait_status(silent=silent)
        except BrokenPipeError:
            status = None
        if status is None:
            code_ = self._bash.wait() if self._bash else None
            self._stop_bash()
            self._start_bash()
            return self._error(
                "BashExited",
                f"bash exited (status {code_}); a new bash was started in {self._cwd}, "
                "without the variables, functions and working directory of the old one",
                silent,
            )
        if self._interrupted:
            return self._error("KeyboardInterrupt", "interrupted (SIGINT)", silent)
        if status != "0":
            # As E2B's bash kernel: no name, the status as the value.
            return self._error("", status, silent, [f"the cell's last command exited with status {status}"])
        return ok

    def _error(self, ename, evalue, silent, traceback=None):
        content = {"ename": ename, "evalue": evalue, "traceback": traceback or [f"{ename}: {evalue}"]}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    def do_shutdown(self, restart):
        self._stop_bash()
        shutil.rmtree(self._dir, ignore_errors=True)
        return {"status": "ok", "restart": restart}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
