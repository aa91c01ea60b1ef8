"""The processes beside Gunicorn's workers (the cache pruner, the data-set worker): started by the arbiter,
and started again whenever they die.

gunicorn_settings.when_ready starts each (`python -m cropper cache prune --every N --exit-with-parent`,
`python -m cropper datasets worker --exit-with-parent`) as a `KeptProcess`, whose thread waits on it.
If it dies (the kernel's OOM killer, an operator's mistake, a crash), the log says so in words and it
is started again, as Gunicorn starts a worker again: after FIRST_PAUSE, doubling with each death that
follows a short run up to MAX_PAUSE, so one that cannot start does not spin. Without it, periodic
pruning (and the clean-up of killed writers' temp files) or the data-set jobs would stop for as long
as the arbiter lives, and nothing would say so.

Gunicorn's arbiter reaps any child it sees exit (its SIGCHLD handler waits on every pid): when it
reaps one first, the thread learns only that it is gone, not how it ended.
"""

import logging
import signal
import subprocess
import threading
import time

log = logging.getLogger(__name__)

FIRST_PAUSE = 1.0  # seconds before the first start again
MAX_PAUSE = 60.0  # the longest pause, however often it died
STEADY = 60.0  # a process that ran this long before it died was not failing at start: the pause starts over


def ended(returncode):
    """How a process ended, in words, from its Popen returncode."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    if returncode > 0:
        return f"exited with status {returncode}"
    return "exited"  # 0: a clean exit, or one whose status the arbiter took


def next_pause(pause, ran):
    """The pause before starting again: the first after a steady run, else the last one doubled."""
    if pause is None or ran >= STEADY:
        return FIRST_PAUSE
    return min(pause * 2, MAX_PAUSE)


class KeptProcess:
    """A process beside the workers, and a thread that starts it again whenever it dies, until stop()."""

    def __init__(self, name, command):
        self.name = name  # in the log: "cache pruner", "data-set worker"
        self.command = command
        self.process = None
        self._lock = threading.Lock()  # stop() and a start again never cross
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._keep, name=f"cropper-{name.replace(' ', '-')}", daemon=True)

    def start(self):
        self.process = self._popen()
        self._thread.start()
        return self

    def _popen(self):
        # In a session of its own: a terminal's Ctrl-C reaches its whole process group, and one that
        # reached a helper still importing printed a KeyboardInterrupt; the arbiter stops it (stop()).
        return subprocess.Popen(self.command, start_new_session=True)

    def stop(self, timeout=10):
        """Stop the process and start it no more."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        self._thread.join(timeout)

    def _keep(self):
        pause = None
        while True:
            started = time.monotonic()
            returncode = self.process.wait()
            ran = time.monotonic() - started
            if self._stopping.is_set():
                return
            pause = next_pause(pause, ran)
            log.error("the %s (pid %d) %s after %.0f s; starting it again in %.0f s",
                      self.name, self.process.pid, ended(returncode), ran, pause)
            if self._stopping.wait(pause):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = self._popen()
            log.warning("started the %s again (pid %d)", self.name, self.process.pid)
