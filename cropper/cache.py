"""The file cache: crops and sources on local disk, how they are written, and who may write them.

Two stores, spoken to in meanings, never in paths:
- `FileCropStore`: finished crops, write-once, shared by every worker (and the folder nginx serves
  as /crops/). Another backend (an object store) can take its place behind the same methods.
- `FileSourceStore`: what this host keeps per FathomNet image to make crops: its metadata and
  its decoded pixels. Always local: it is a host's working set, not shared state.

Layout under the cache folder:
    crops/f1/f11816b8-.../100_100_405_400.webp   a crop, named by crops.Crop.relpath
    sources/f1/f11816b8-....json                  the image's FathomNet metadata
    sources/f1/f11816b8-....pix                   its decoded pixels (see imaging.RawImage)
    sources/3c/3c0e9d2a-....box                   a FathomNet annotation (JSON), by the box's uuid
    locks/3a/3a5f....lock                         one lock file per key being made, removed after

Every file is written to a temp file beside it, flushed and renamed into place, so readers see
the old file or the whole new one; a killed writer leaves only a dot-named *.tmp file.
"""

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import crops, imaging, metrics
from .errors import BusyError, InsufficientStorageError

log = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
# What a write meets when the cache's disk cannot take it: full, over quota, read-only, or not ours.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
BLOCK = 4096  # what a file of n bytes takes on disk is counted in blocks of this
SPOOL_BYTES = 16 * 1024 * 1024  # downloads up to this stay in memory: no write and read back of a framegrab
SOURCE_NAME = re.compile(rf"([0-9a-f]{{2}})/({crops.UUID})\.(json|pix|box)")
# Refreshing atime at most this often keeps a hit to one stat in the common case. nginx's reads
# refresh it too, under the usual relatime mount option, once a day at most.
MARK_USED_EVERY = 3600


@dataclass
class Entry:
    """One evictable unit: a crop file, or a source's metadata and pixels together."""

    key: object  # the Crop, or the source's uuid
    paths: list
    size: int  # bytes on disk (allocated blocks, which is what fills a disk)
    last_used: float


@dataclass
class TempFile:
    path: str
    modified: float


@dataclass
class Listing:
    entries: list = field(default_factory=list)
    temp_files: list = field(default_factory=list)

    @property
    def size(self):
        return sum(entry.size for entry in self.entries)


@dataclass(frozen=True)
class OpenedCrop:
    """A stored crop opened for sending: its bytes as a file, and what HTTP caching needs."""

    file: object
    size: int
    modified: float
    etag: str | None = None  # the store's own, when it has one (S3): what nginx passes on when it serves the crop


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


class UsageCounter:
    """Bytes a store holds, as last measured by eviction plus what was written since; shared by all processes.

    Lets a writer keep a store within its budget without walking it before every write.
    """

    def __init__(self, path):
        self.path = Path(path)

    def add(self, nbytes):
        """Count nbytes more (or fewer); return the new total."""
        with storing("cache"):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the first count in a new cache
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # flock, not lockf: a POSIX lock is the process's, so two threads of one worker would both
            # hold it (and the first to close its descriptor would drop the other's); flock's is this open's.
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 32, 0)
            total = max(0, (int(raw) if raw.strip().isdigit() else 0) + nbytes)
            if nbytes:  # add(0) only reads
                with storing("cache"):  # a counter made empty by add(0) takes its first block here
                    os.pwrite(fd, b"%-31d" % total, 0)
            return total
        finally:
            os.close(fd)


def blocks(nbytes):
    """Bytes on disk of a file of nbytes."""
    return -(-nbytes // BLOCK) * BLOCK


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
                _unlink(path)  # while still held: a waiter on this file will see it gone and retry
            finally:
                os.close(fd)  # whatever unlink met (EIO, EROFS): the lock is never kept by a leaked descriptor

    def _open(self, path):
        with storing("cache"):
            for attempt in range(3):
                try:
                    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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


def _store(store, path, data):
    """Write a file of store's atomically, and count it against the store's budget."""
    with storing(store.name):
        write_bytes(path, data)
    store.usage.add(blocks(len(data)))


class FileCropStore:
    """Crops as files under <root>, named by their store path (crops/..., iiif/...): the folders nginx serves."""

    name = "crop cache"
    families = ("crops", "iiif")
    shared = False  # this host's folder (an S3CropStore is shared by every host)

    def __init__(self, root, locks):
        self.root = Path(root).resolve()
        self.locks = locks
        self.usage = UsageCounter(self.root / "usage" / "crops")
        self._root = str(self.root)  # paths by string joins: pathlib costs more than the stat on a hit

    def path(self, crop):
        return self.root / crop.store_path

    def find(self, crop):
        """True if the crop is stored (and mark it used, for eviction)."""
        path = f"{self._root}/{crop.store_path}"
        try:
            _mark_used(path, os.stat(path))
        except FileNotFoundError:
            return False
        return True

    def open(self, crop):
        """The stored crop opened for reading, or None if it is not there."""
        try:
            file = open(self.path(crop), "rb")
        except FileNotFoundError:
            return None
        stat = os.fstat(file.fileno())
        return OpenedCrop(file, stat.st_size, stat.st_mtime)

    def put(self, crop, data):
        _store(self, self.path(crop), data)

    def lock(self, crop, timeout=None):
        """Held while the crop is made (or removed), so identical work runs once."""
        return self.locks.hold(f"crop:{crop.store_path}", "crop", timeout)

    def listing(self):
        """Every stored crop and left-over temp file, measured."""
        listing = Listing()
        for family in self.families:
            for path, stat in _files(self.root / family):
                if _is_temp(path):
                    listing.temp_files.append(TempFile(path, stat.st_mtime))
                    continue
                crop = crops.parse_store_path(os.path.relpath(path, self.root))
                if crop is not None:
                    listing.entries.append(Entry(crop, [path], _disk_size(stat), _last_used(stat)))
        return listing

    def remove(self, entry):
        """Remove a crop unless it is being made right now; True if it is gone."""
        try:
            with self.lock(entry.key, timeout=0):
                _unlink(entry.paths[0])
        except BusyError:
            return False
        folder = Path(entry.paths[0]).parent
        while len(folder.relative_to(self.root).parts) > 2:  # emptied folders up to the image's (shards stay)
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent
        return True


class FileSourceStore:
    """Under <root>/sources/: per image its FathomNet metadata and decoded pixels; per annotation its box."""

    name = "image source cache"
    shared = False  # always this host's

    def __init__(self, root, locks):
        self.root = Path(root).resolve()
        self.folder = self.root / "sources"
        self.locks = locks
        self.usage = UsageCounter(self.root / "usage" / "sources")

    def _path(self, uuid, suffix):
        return self.folder / uuid[:2] / f"{uuid}{suffix}"

    def lock(self, uuid, timeout=None):
        """Held while the image's metadata or pixels are fetched (or removed)."""
        return self.locks.hold(f"source:{uuid}", "image", timeout)

    def read_info(self, uuid):
        """The image's stored metadata (a dict), or None."""
        return self._read_json(uuid, ".json")

    def write_info(self, uuid, info):
        _store(self, self._path(uuid, ".json"), json.dumps(info).encode())

    def read_box(self, box_uuid):
        """A stored annotation (a dict), or None."""
        return self._read_json(box_uuid, ".box")

    def write_box(self, box_uuid, box):
        _store(self, self._path(box_uuid, ".box"), json.dumps(box).encode())

    def _read_json(self, uuid, suffix):
        path = self._path(uuid, suffix)
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:  # damaged on disk (written whole, so not by us): asked for again, as if never stored
            log.warning("ignoring the damaged file %s", path)
            return None

    def forget_info(self, uuid):
        """Drop the image's metadata, so the next crop asks FathomNet again (it led to no usable image)."""
        _unlink(self._path(uuid, ".json"))

    def open_pixels(self, uuid):
        """The image's raw pixels, memory-mapped, or None when not stored (or damaged).

        The shared flock held while they are open tells eviction they are being read.
        """
        path = self._path(uuid, ".pix")
        try:
            file = open(path, "rb")
        except FileNotFoundError:
            return None
        fcntl.flock(file.fileno(), fcntl.LOCK_SH)
        _mark_used(path, os.fstat(file.fileno()))
        try:
            return imaging.RawImage(file)
        except ValueError:
            log.warning("%s is damaged; fetching the image again", path)
            return None

    @contextmanager
    def new_pixels(self, uuid):
        """A file to write the image's raw pixels into; they are stored once the block ends without error."""
        with storing(self.name), atomic_writer(self._path(uuid, ".pix")) as out:
            yield out
            size = out.tell()
        self.usage.add(blocks(size))

    @contextmanager
    def scratch_file(self):
        """A temp file for a download: in memory up to SPOOL_BYTES (most images), then anonymous on the
        cache's disk; nothing is left if we are killed."""
        with storing(self.name):
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=self.folder) as file:
                yield file

    def check_writable(self, min_free_bytes):
        """None if a file can be written here and enough space is free, else why not."""
        try:
            write_bytes(self.root / "locks" / "ready-probe", b"ok")
            usage = shutil.disk_usage(self.root)
        except OSError as error:
            return f"cannot write to {self.root}: {error.strerror}"
        if usage.free < min_free_bytes:
            return f"only {usage.free} bytes free, under the {min_free_bytes} required"
        return None

    def listing(self):
        """Every stored image (metadata and pixels as one entry) and left-over temp file, measured."""
        listing = Listing()
        by_uuid = {}
        for path, stat in _files(self.folder):
            if _is_temp(path):
                listing.temp_files.append(TempFile(path, stat.st_mtime))
                continue
            match = SOURCE_NAME.fullmatch(os.path.relpath(path, self.folder))
            if match is None or match[2][:2] != match[1]:
                continue
            entry = by_uuid.setdefault(match[2], Entry(match[2], [], 0, 0.0))
            entry.paths.append(path)
            entry.size += _disk_size(stat)
            entry.last_used = max(entry.last_used, _last_used(stat))
        listing.entries = list(by_uuid.values())
        return listing

    def remove(self, entry):
        """Remove an image's files unless it is being fetched or its pixels read; True if gone."""
        try:
            with self.lock(entry.key, timeout=0):
                pixels = [p for p in entry.paths if p.endswith(".pix")]
                if pixels and not _remove_unread(pixels[0]):
                    return False
                for path in entry.paths:
                    _unlink(path)
        except BusyError:
            return False
        return True


def file_stores(cache_dir, lock_timeout):
    """The crop store and the source store of one cache folder, sharing its locks."""
    root = Path(cache_dir).resolve()
    locks = Locks(root / "locks", lock_timeout)
    return FileCropStore(root, locks), FileSourceStore(root, locks)


def remove_temp_file(temp):
    _unlink(temp.path)


@contextmanager
def atomic_writer(path):
    """Yield a temp file beside path that replaces path only once fully written.

    Readers see the old file or the whole new one, never a part, even if this process is
    killed mid-write; a killed writer leaves only a *.tmp file for the pruner.
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
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes 0600; nginx runs as another user
        os.replace(temp, path)
    except BaseException:
        _unlink(temp)
        raise


def write_bytes(path, data):
    with atomic_writer(path) as out:
        out.write(data)


def _mark_used(path, stat):
    """Record a use of path in its atime, which eviction ranks files by."""
    now = time.time()
    if now - stat.st_atime > MARK_USED_EVERY:
        try:
            os.utime(path, (now, stat.st_mtime))
        except OSError:  # gone meanwhile, or not ours to touch: only the ranking suffers
            pass


def _files(folder):
    """(path, stat) of every file below folder; a file removed meanwhile is simply not listed."""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                yield path, os.stat(path)
            except FileNotFoundError:
                continue


def _is_temp(path):
    name = os.path.basename(path)
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _disk_size(stat):
    return stat.st_blocks * 512


def _last_used(stat):
    return max(stat.st_atime, stat.st_mtime)


def _remove_unread(path):
    """Unlink a pixel file unless a reader holds it open (readers take a shared flock)."""
    try:
        with open(path, "rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _unlink(path)
    except BlockingIOError:
        return False
    except FileNotFoundError:
        pass
    return True


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
