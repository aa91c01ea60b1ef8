"""Locks shared by every process on this host, one lock file per key."""

import errno
import fcntl
import hashlib
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .. import metrics
from ..errors import BusyError
from .disk import storing, unlink


class Locks:
    """Exclusive locks shared by every process on this host, one lock file per key.

    flock locks belong to an open file, so the kernel drops them when a holder dies, even by
    SIGKILL: a killed worker never blocks anyone. The holder removes the file when it is done;
    a waiter that then wins the lock of a file no longer in place starts again, so no two ever
    hold the lock of one key, and no key waits on another's work.
    """

    def __init__(self, folder, timeout):
        self.folder = Path(folder)
        self.timeout = timeout

    def path(self, name):
        digest = hashlib.sha1(name.encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.lock"

    @contextmanager
    def hold(self, name, what="file", timeout=None):
        """Hold the lock of name, waiting at most timeout (default: the configured one), else BusyError."""
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        path = self.path(name)
        while True:
            fd = self._open(path)
            try:
                self._acquire(fd, deadline, what, timeout)
                if _same_file(fd, path):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # the previous holder removed it after we opened it: take the one in place
        if timeout:  # a wait that could have happened (evictions only ever try once)
            metrics.lock_waited(time.monotonic() - started)
        try:
            yield
        finally:
            try:
                unlink(path)  # while still held: a waiter on this file will see it gone and retry
            finally:
                os.close(fd)  # whatever unlink met (EIO, EROFS): the lock is never kept by a leaked descriptor

    @contextmanager
    def turn(self, name):
        """Hold the lock of name, waiting as long as it takes: a background thread's turn, never a request's.

        The file stays (one per name); a holder that dies lets the next waiter in.
        """
        fd = self._open(self.path(name))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _open(self, path):
        # Read-only: flock needs no more. A descriptor open for writing in the cache folder (the
        # pruner holds its lock for as long as it runs) makes the kernel refuse to remount it read-only.
        with storing("cache"):
            for attempt in range(3):
                try:
                    return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
                except FileNotFoundError:
                    if attempt == 2:
                        raise
                    path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _acquire(fd, deadline, what, timeout):
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                if timeout:
                    metrics.busy("lock")
                raise BusyError(
                    f"Another request is still making this {what}; try again shortly.",
                    retry_after=max(1, round(timeout / 10)),
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def _same_file(fd, path):
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def crop_lock(locks, crop, timeout=None):
    """The lock a crop is made (or removed) under: the same name on one host, whichever store keeps crops."""
    return locks.hold(f"crop:{crop.store_path}", "crop", timeout)


def eviction_lock(locks, store_name):
    """Held by the one process evicting a store at a time; tried once."""
    return locks.hold(f"evict:{store_name}", "prune", timeout=0)
