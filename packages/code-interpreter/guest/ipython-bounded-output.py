# Loaded into every IPython kernel by aiva's code-interpreter server (exec_files).
#
# ipykernel gathers a cell's stdout and stderr for 0.2 s and publishes what it gathered
# as one message, however large: a loop printing 100 MiB becomes one 100 MiB message,
# held whole by the kernel and then by the server. Flushing once a stream has gathered
# 1 MiB keeps every message small, so output streams through, and the server can hold
# the kernel (it stops its process group) while a slow client catches up.
def _aiva_bounded_output():
    from ipykernel.iostream import OutStream

    limit = 1 << 20
    write = OutStream.write

    def bounded_write(self, string):
        n = write(self, string)
        buffer = getattr(self, "_buffer", None)
        if buffer is not None and buffer.tell() >= limit and self._is_master_process():
            self.flush()
        return n

    OutStream.write = bounded_write


_aiva_bounded_output()
del _aiva_bounded_output
