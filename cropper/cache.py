"""The file cache: where crops and sources live, how they are written, and who may write them.

Layout under the cache folder (crops/ is what nginx serves as /crops/):
    crops/f1/f11816b8-.../100_100_405_400.webp   one file per (uuid, box, format)
    sources/f1/f11816b8-....json                  the image's FathomNet metadata
    sources/f1/f11816b8-....pix                   its decoded pixels (see imaging.RawImage)
    locks/crop-0042.lock, locks/source-0007.lock  fcntl locks shared by all workers
Sharding on the uuid's first two hex digits keeps folders small at FathomNet's scale,
and a crop's parameters can be read back from its path.
"""

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

from . import imaging
from .errors import BusyError

log = logging.getLogger(__name__)

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CROP_PATH = re.compile(
    rf"(?P<prefix>[0-9a-f]{{2}})/(?P<uuid>{UUID})/"
    r"(?P<x1>0|[1-9]\d{0,8})_(?P<y1>0|[1-9]\d{0,8})_(?P<x2>0|[1-9]\d{0,8})_(?P<y2>0|[1-9]\d{0,8})"
    r"\.(?P<format>webp|jpeg|png)"
)
SOURCE_PATH = re.compile(rf"(?P<prefix>[0-9a-f]{{2}})/(?P<uuid>{UUID})\.(?P<suffix>json|pix)")
# A fixed set of lock files: they never need deleting (deleting a lock file races with
# its next user), and two keys sharing one only means they briefly wait for each other.
LOCK_STRIPES = 1024
TEMP_SUFFIX = ".tmp"


def crop_relpath(req):
    """The crop's path below crops/: a pure function of uuid, box and format."""
    x1, y1, x2, y2 = req.box
    return f"{req.uuid[:2]}/{req.uuid}/{x1}_{y1}_{x2}_{y2}.{req.format}"


def parse_crop_relpath(relpath):
    """Read a crop path back into request fields, or None if it is not one we would have made."""
    match = CROP_PATH.fullmatch(relpath)
    if match is None or match["uuid"][:2] != match["prefix"]:
        return None
    fields = match.groupdict()
    del fields["prefix"]
    return {k: (v if k in ("uuid", "format") else int(v)) for k, v in fields.items()}


# Refreshing atime at most this often keeps a hit to one stat in the common case. nginx's reads
# refresh it too, under the usual relatime mount option, once a day at most.
MARK_USED_EVERY = 3600


def mark_used(path, stat):
    """Record a use of path in its atime, which the pruner ranks files by."""
    now = time.time()
    if now - stat.st_atime > MARK_USED_EVERY:
        try:
            os.utime(path, (now, stat.st_mtime))
        except OSError:  # gone meanwhile, or not ours to touch: only the ranking suffers
            pass


class FileCache:
    def __init__(self, root, lock_timeout):
        self.root = Path(root).resolve()
        self.crops = self.root / "crops"
        self.sources = self.root / "sources"
        self.locks = self.root / "locks"
        self.lock_timeout = lock_timeout
        for folder in (self.crops, self.sources, self.locks):
            folder.mkdir(parents=True, exist_ok=True)

    def check_writable(self, min_free_bytes):
        """Return None if a file can be written here and enough space is free, else why not."""
        try:
            self.write_bytes(self.locks / "ready-probe", b"ok")
            usage = shutil.disk_usage(self.root)
        except OSError as error:
            return f"cannot write to {self.root}: {error.strerror}"
        if usage.free < min_free_bytes:
            return f"only {usage.free} bytes free, under the {min_free_bytes} required"
        return None

    def crop_path(self, req):
        return self.crops / crop_relpath(req)

    def existing_crop(self, req):
        """The crop's path if it is on disk (marking it used, for the pruner), else None."""
        path = self.crop_path(req)
        try:
            mark_used(path, os.stat(path))
        except FileNotFoundError:
            return None
        return path

    def open_pixels(self, uuid):
        """The image's raw pixels, memory-mapped, or None when not cached (or damaged).

        The shared flock held while they are open tells the pruner they are being read.
        """
        path = self.source_path(uuid, ".pix")
        try:
            file = open(path, "rb")
        except FileNotFoundError:
            return None
        fcntl.flock(file.fileno(), fcntl.LOCK_SH)
        mark_used(path, os.fstat(file.fileno()))
        try:
            return imaging.RawImage(file)
        except ValueError:
            log.warning("%s is damaged; fetching the image again", path)
            return None

    def source_path(self, uuid, suffix):
        return self.sources / uuid[:2] / f"{uuid}{suffix}"

    def read_json(self, path):
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None

    def write_json(self, path, data):
        with self.atomic_writer(path) as out:
            out.write(json.dumps(data).encode())

    def write_bytes(self, path, data):
        with self.atomic_writer(path) as out:
            out.write(data)

    @contextmanager
    def atomic_writer(self, path):
        """Yield a temp file beside path that replaces path only once fully written.

        Readers see the old file or the whole new one, never a part, even if this process is
        killed mid-write; a killed writer leaves only a *.tmp file for the pruner.
        """
        for attempt in range(3):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
                break
            except FileNotFoundError:  # the pruner removed the (empty) folder in between
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)  # mkstemp makes 0600; nginx runs as another user
            os.replace(temp, path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise

    @contextmanager
    def lock(self, kind, key, timeout=None):
        """Hold the cross-process lock for key, waiting at most timeout (default lock_timeout), else BusyError.

        flock locks belong to an open file, so the kernel drops them when a holder dies,
        even by SIGKILL: a killed worker never blocks anyone.
        """
        stripe = zlib.crc32(key.encode()) % LOCK_STRIPES
        fd = os.open(self.locks / f"{kind}-{stripe:04d}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd, kind, self.lock_timeout if timeout is None else timeout)
            yield
        finally:
            os.close(fd)  # closing the file releases the lock

    def _acquire(self, fd, kind, timeout):
        deadline = time.monotonic() + timeout
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise BusyError(
                    f"Another request is still making this {kind}; try again shortly.",
                    retry_after=max(1, round(timeout / 10)),
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
