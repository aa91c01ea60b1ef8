"""A breaker for the shared store: once this host has found it unreachable, new work fails at once.

A store that is alive but silent (a paused VM, a network black hole) answers nothing: every call
waits its timeouts. The first call of this host to wait in vain (or /readyz's probe, or nginx's read)
opens the breaker, a file in the cache folder that every Gunicorn worker of the host sees, and so
does its nginx (which then reads only its own cache of the store, never the store). Calls to the
store then fail at once, and one prober per host asks the store every PROBE_SECONDS, in the
background, until it answers; then the file goes and the store is used again. While the breaker
is closed a call costs one stat of a file that is not there: no network.
"""

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InsufficientStorageError
from .disk import unlink, write_bytes

log = logging.getLogger(__name__)

OPEN_FILE = "store-unreachable"  # in CACHE_DIR; nginx's config names it too (ops/nginx.py)
PROBE_SECONDS = 0.5  # between the end of one probe and the next, while the store is unreachable


@dataclass(frozen=True)
class Outage:
    """The store as this host last found it: unreachable since `since` (a time.time()), and why."""

    since: float
    why: str


class StoreBreaker:
    """Open (the store is unreachable) or closed, for every process of this host: a file, and a prober.

    probe: a call that tries the store once, briefly, and returns None if it answered, else why not;
    locks: this host's (storage.locks.Locks), which keep its probers to one at a time.
    """

    def __init__(self, path, probe, locks, every=PROBE_SECONDS):
        self.path = Path(path)
        self.probe = probe
        self.locks = locks
        self.every = every
        self._prober = None
        self._prober_lock = threading.Lock()

    def outage(self):
        """The Outage if the breaker is open, else None; while it is open, a prober runs on this host."""
        outage = self.recorded()
        if outage:
            self._keep_probing()
        return outage

    def recorded(self):
        """The Outage the file records, or None (without starting a prober)."""
        try:
            since, _, why = self.path.read_text(errors="replace").partition("\n")
        except OSError:  # not there (closed), or unreadable: the calls themselves will say what is wrong
            return None
        try:
            return Outage(float(since), why)
        except ValueError:  # damaged: open all the same
            return Outage(time.time(), why)

    def trip(self, why):
        """Open the breaker (if it is not open already): the store could not be reached, for why."""
        if not self.path.exists():
            try:
                write_bytes(self.path, f"{time.time()}\n{why}".encode())  # whole or not at all: nginx sees it too
            except OSError as error:  # a full or read-only disk: no breaker, calls wait their timeouts as before
                log.warning("cannot open the crop store's breaker %s: %s", self.path, error)
                return
            log.warning("the crop store cannot be reached (%s): new work fails at once until it answers a probe "
                        "(every %s s)", why, self.every)
        self._keep_probing()

    def close(self):
        """The store answered: use it again."""
        outage = self.recorded()
        unlink(self.path)
        if outage:
            log.warning("the crop store answers again, after %.1f s", time.time() - outage.since)

    def probe_now(self):
        """Try the store once, now: close the breaker if it answers, open it if not; None, or why not."""
        problem = self.probe()
        if problem is None:
            self.close()
        else:
            self.trip(problem)
        return problem

    def _keep_probing(self):
        """Have a prober thread in this process; of all the host's, the one holding the probe lock probes."""
        with self._prober_lock:
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(target=self._probe_until_reached, name="store-prober", daemon=True)
                self._prober.start()

    def _probe_until_reached(self):
        try:
            # One prober per host: the others wait their turn here, and find the breaker closed when it comes.
            with self.locks.turn(f"probe:{self.path}"):
                while self.path.exists():
                    if self.probe() is None:
                        self.close()
                        return
                    time.sleep(self.every)
        except (OSError, InsufficientStorageError) as error:  # its lock cannot be made: the next outage() tries again
            log.warning("cannot probe the crop store: %s", error)
