"""Locks shared by every process on this host: a byte of one lock file per key, and a file per long turn."""

import errno
import fcntl
import hashlib
import os
import struct
import time
from contextlib import contextmanager
from pathlib import Path

from .. import metrics
from ..errors import BusyError
from .disk import storing

KEYS_FILE = "keys.lock"
# struct flock as Linux lays it out on 64-bit machines: l_type, l_whence, l_start, l_len, l_pid, padding.
FLOCK = struct.Struct("hhqqi4x")


class Locks:
    """Exclusive locks shared by every process on this host.

    A key's lock is an open-file-description lock (F_OFD_SETLK) on one byte of a single file, at an
    offset drawn from the key's hash: no file is created or removed per lock. (One file per key, created
    and removed by each holder, cost a new inode per crop, and ext4 without a journal then scans past
    every inode freed in the last seconds for each new file: that made a file a millisecond.) These
    locks belong to an open file, like flock's, so threads of one process exclude each other and the
    kernel drops them when a holder dies, even by SIGKILL: a killed worker never blocks anyone.
    Offsets are 60 bits of the hash, so two keys share a lock with odds of one in 2**60.
    """

    def __init__(self, folder, timeout):
        self.folder = Path(folder)
        self.timeout = timeout

    @staticmethod
    def offset(name):
        """The byte of the keys' file that stands for name."""
        return int(hashlib.sha1(name.encode()).hexdigest()[:15], 16)

    @contextmanager
    def hold(self, name, what="file", timeout=None):
        """Hold the lock of name, waiting at most timeout (default: the configured one), else BusyError.

        Its descriptor is open for writing (a write lock needs it) only while held: a short hold, which
        delays a read-only remount of the cache folder by no more than that.
        """
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        fd = self._open(KEYS_FILE, os.O_RDWR)
        try:
            self._acquire(fd, self.offset(name), started + timeout, what, timeout)
            if timeout:  # a wait that could have happened (evictions only ever try once)
                metrics.lock_waited(time.monotonic() - started)
            yield
        finally:
            os.close(fd)  # releases the lock: whatever happened, it is never kept by a leaked descriptor

    @contextmanager
    def turn(self, name, wait=True):
        """Hold the lock of name for as long as the block runs: a background process's turn, never a request's.
        wait=False: BusyError at once if another has it.

        A file per name (it stays), flock'ed on a read-only descriptor: held for a process's whole life (the
        pruner's), it never keeps the cache folder from being remounted read-only.
        """
        digest = hashlib.sha1(name.encode()).hexdigest()
        fd = self._open(f"{digest[:2]}/{digest}.lock", os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise BusyError(f"Another process holds the {name} turn.", retry_after=1) from None
            yield
        finally:
            os.close(fd)

    def _open(self, relpath, mode):
        path = self.folder / relpath
        with storing("cache"):
            for attempt in range(3):
                try:
                    return os.open(path, mode | os.O_CREAT, 0o644)
                except FileNotFoundError:
                    if attempt == 2:
                        raise
                    path.parent.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _acquire(fd, offset, deadline, what, timeout):
        lock = FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0)
        pause = 0.001
        while True:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, lock)
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


def crop_lock(locks, crop, timeout=None):
    """The lock a crop is made (or removed) under: the same name on one host, whichever store keeps crops."""
    return locks.hold(f"crop:{crop.store_path}", "crop", timeout)


def eviction_lock(locks, store_name):
    """Held by the one process evicting a store at a time; tried once."""
    return locks.hold(f"evict:{store_name}", "prune", timeout=0)
