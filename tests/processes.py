"""A forked child that holds something (a lock, an open file) while a test looks on."""

import os
import signal

import pytest


class HeldInChild:
    """Hold `with enter():` in a forked child until released, killed, or the with-block ends.

    The child signals once inside, then waits until the parent closes its end of a pipe.
    """

    def __init__(self, enter):
        self.enter = enter
        self.pid = self.status = self._release_w = None

    def __enter__(self):
        ready_r, ready_w = os.pipe()
        release_r, self._release_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                os.close(ready_r)
                os.close(self._release_w)
                with self.enter():
                    os.write(ready_w, b"1")
                    os.read(release_r, 1)  # returns b"" once the parent closes its end
                code = 0
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(release_r)
        try:
            taken = os.read(ready_r, 1) == b"1"  # b"" if the child died first
        finally:
            os.close(ready_r)
        if not taken:
            self.__exit__()
            pytest.fail(f"the child could not get in (status {self.status})")
        return self

    def release(self):
        if self._release_w is not None:
            os.close(self._release_w)
            self._release_w = None

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def wait(self):
        if self.pid:
            _, self.status = os.waitpid(self.pid, 0)
            self.pid = None

    def exited_cleanly(self):
        return os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 0

    def __exit__(self, *exc):
        self.release()
        self.wait()
