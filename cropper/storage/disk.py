"""Writing files safely on a disk that may be full, read-only or shared with readers.

Every file is written to a temp file beside it, flushed and renamed into place, so readers see the
old file or the whole new one; a killed writer leaves only a dot-named *.tmp file, which the pruner
removes once old. A disk that cannot take a write is an `InsufficientStorageError` naming what.
"""

import errno
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import InsufficientStorageError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
# What a write meets when the cache's disk cannot take it: full, over quota, read-only, or not ours.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@contextmanager
def storing(what):
    """Turn the OSError of a disk that cannot take a write into InsufficientStorageError, naming `what`."""
    try:
        yield
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        reason = {errno.EROFS: "is read-only", errno.EACCES: "may not be written by this service",
                  errno.EPERM: "may not be written by this service"}.get(error.errno, "is full")
        log.warning("cannot store in the %s: %s", what, error)
        raise InsufficientStorageError(
            f"The {what} {reason}: new crops cannot be made right now; crops already made are still served.",
            store=what,
        ) from None


@contextmanager
def atomic_writer(path, mode="wb", durable=True):
    """Yield a temp file beside path (opened in mode: "w+b" to read it back too) that replaces path only once
    fully written.

    Readers see the old file or the whole new one, never a part, even if this process is
    killed mid-write; a killed writer leaves only a *.tmp file for the pruner. durable: its bytes reach
    the disk before it takes path's name, so not even a power cut leaves an empty or partial file there;
    only files read back as they are (crops nginx sends, pixels cut by offset) need that.
    """
    for attempt in range(3):
        try:
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
            break
        except FileNotFoundError:  # a new folder, or the pruner removed the (empty) folder in between
            if attempt == 2:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with os.fdopen(fd, mode) as out:
            yield out
            out.flush()
            if durable:
                os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes 0600; nginx runs as another user
        os.replace(temp, path)
    except BaseException:
        unlink(temp)
        raise


@contextmanager
def scratch(folder, spool_bytes=0):
    """A temp file (w+b) in folder, in memory up to spool_bytes, gone when the block ends (or we are killed)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.SpooledTemporaryFile(max_size=spool_bytes, dir=folder) as file:
        yield file


def write_bytes(path, data, durable=True):
    with atomic_writer(path, durable=durable) as out:
        out.write(data)


def is_temp(path):
    name = os.path.basename(path)
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def unlink(path):
    """Remove a file, if it is still there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
