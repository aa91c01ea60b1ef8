"""The file stores: crops and image sources in the local cache folder.

- `FileCropStore`: finished crops, write-once, shared by every worker (and the folder nginx serves
  as /crops/ and /iiif/3/). It implements `storage.CropStore`.
- `FileSourceStore`: what this host keeps per FathomNet image to make crops: its metadata and
  its decoded pixels. Always local: a host's working set, not shared state. `storage.SourceStore`.

Layout under the cache folder:
    crops/f1/f11816b8-.../100_100_405_400.webp   a crop, named by crops.Crop.relpath
    iiif/f1/f11816b8-.../0,0,512,512/512,512/0/default.jpg   an IIIF image, likewise
    sources/f1/f11816b8-....json                  the image's FathomNet metadata
    sources/f1/f11816b8-....pix                   its decoded pixels (see imaging.RawImage)
    sources/3c/3c0e9d2a-....box                   a FathomNet annotation (JSON), by the box's uuid
    sources/f1/f11816b8-....gone                  FathomNet no longer has the image (JSON: since when)
    purges/<id>.json                              the purges made here (the crop store's purge list)
    purges-applied/<id>                           the purges this host has applied
    locks/keys.lock                               every key's lock, a byte of it each (locks.Locks.hold)
    locks/3a/3a5f....lock                         a long turn's lock (the pruner's), a file that stays
    usage/crops, usage/sources                    what each store counts it holds
    store-unreachable                             CACHE_BACKEND=s3: the shared store's breaker, when open (breaker.py)

Every file is written whole or not at all (disk.atomic_writer).
"""


import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .. import crops, imaging
from ..errors import BusyError
from . import Entry, Listing, NewFile, OpenedCrop, Removed, TempFile, check_uuid, checked_purge_id, read_purge
from .disk import atomic_writer, is_temp, scratch, storing, unlink, write_bytes
from .locks import crop_lock, eviction_lock

log = logging.getLogger(__name__)

BLOCK = 4096  # what a file of n bytes takes on disk is counted in blocks of this
SPOOL_BYTES = 16 * 1024 * 1024  # downloads up to this stay in memory: no write and read back of a framegrab
SOURCE_NAME = re.compile(rf"([0-9a-f]{{2}})/({crops.UUID})\.(json|pix|box)")  # what eviction may remove
RECORDS = {"info": ".json", "box": ".box"}
# Refreshing atime at most this often keeps a hit to one stat in the common case. nginx's reads
# refresh it too, under the usual relatime mount option, once a day at most.
MARK_USED_EVERY = 3600


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


class _FileStore:
    """What both file stores share: a folder of the cache, its usage counter, its locks."""

    name = "cache"
    shared = False  # this host's folder

    def __init__(self, root, locks, usage_name):
        self.root = Path(root).resolve()
        self.locks = locks
        self.usage = UsageCounter(self.root / "usage" / usage_name)

    def count(self, nbytes):
        return self.usage.add(nbytes)

    def evicting(self):
        return eviction_lock(self.locks, self.name)

    def remove_temp_file(self, temp):
        unlink(temp.path)

    def _write(self, path, data, durable=True):
        """Write a file atomically, and count it against the store's budget (less the file it replaces: records
        are written again as FathomNet is asked again). durable: see disk.atomic_writer."""
        try:
            replaced = _disk_size(os.stat(path))
        except FileNotFoundError:
            replaced = 0
        with storing(self.name):
            write_bytes(path, data, durable)
        self.count(blocks(len(data)) - replaced)

    def _remove(self, path):
        """Remove a file if it is there, and count it off the store's budget: what was removed."""
        try:
            size = _disk_size(os.stat(path))
            os.unlink(path)
        except FileNotFoundError:
            return Removed()
        self.count(-size)
        return Removed(1, size)


class FileCropStore(_FileStore):
    """Crops as files under <root>, named by their store path (crops/..., iiif/...): the folders nginx serves."""

    name = "crop cache"

    def __init__(self, root, locks):
        super().__init__(root, locks, "crops")
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
        self._write(self.path(crop), data)

    def lock(self, crop, timeout=None):
        """Held while the crop is made (or removed), so identical work runs once."""
        return crop_lock(self.locks, crop, timeout)

    def readiness_problem(self):
        return None  # the cache folder's disk is checked as the source store's (the same folder)

    def unreachable(self, why):
        pass  # nginx reads this folder itself: nothing of it lies beyond reach

    def remove_image(self, uuid):
        """Remove every crop of an image; not a temp file being written (its writer's rename would fail)."""
        check_uuid(uuid)
        removed = Removed()
        for family in crops.FAMILIES:
            folder = self.root / family / uuid[:2] / uuid
            for path, _ in _files(folder):
                if not is_temp(path):
                    removed += self._remove(path)
            for dirpath, _, _ in os.walk(folder, topdown=False):  # the emptied folders (the shards stay)
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        return removed

    def record_purge(self, purge):
        """Keep a purge made here (this folder is this host's: every purge in it is made, and applied, here)."""
        with storing(self.name):
            write_bytes(self.root / "purges" / f"{checked_purge_id(purge)}.json", json.dumps(purge).encode())

    def purges(self, known=frozenset()):
        """Every purge recorded here but those known, oldest first."""
        found = []
        for path in sorted((self.root / "purges").glob("*.json")):
            if path.stem not in known:
                try:
                    with open(path, "rb") as file:
                        purge = read_purge(file)
                except FileNotFoundError:  # removed meanwhile
                    continue
                if purge:
                    found.append(purge)
        return found

    def listing(self):
        """Every stored crop, left-over temp file and crop an earlier version named otherwise, measured."""
        listing = Listing()
        for family in crops.FAMILIES:
            for path, stat in _files(self.root / family):
                if is_temp(path):
                    listing.temp_files.append(TempFile(path, stat.st_mtime))
                    continue
                listing.add_crop(os.path.relpath(path, self.root), [path], _disk_size(stat), _last_used(stat))
        return listing

    def remove(self, entry):
        """Remove a crop unless it is being made right now; True if it is gone."""
        try:
            with self.lock(entry.key, timeout=0):
                unlink(entry.paths[0])
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


class FileSourceStore(_FileStore):
    """Under <root>/sources/: per image its FathomNet metadata and decoded pixels; per annotation its box."""

    name = "image source cache"

    def __init__(self, root, locks):
        super().__init__(root, locks, "sources")
        self.folder = self.root / "sources"

    def _path(self, uuid, suffix):
        return self.folder / uuid[:2] / f"{uuid}{suffix}"

    def lock(self, uuid, timeout=None):
        """Held while the image's metadata or pixels are fetched (or removed)."""
        return self.locks.hold(f"source:{uuid}", "image", timeout)

    def sole_pruner(self):
        """The cache folder's pruner lock: one process prunes the folder, the others stand by."""
        return self.locks.turn("pruner", wait=False)

    def read_info(self, uuid):
        """The image's stored metadata (a dict), or None."""
        return self._read_json(uuid, ".json")

    # Records need no fsync: one a power cut left empty or partial does not parse, and is asked for again.

    def write_info(self, uuid, info):
        self._write(self._path(uuid, ".json"), json.dumps(info).encode(), durable=False)

    def read_box(self, box_uuid):
        """A stored annotation (a dict), or None."""
        return self._read_json(box_uuid, ".box")

    def write_box(self, box_uuid, box):
        self._write(self._path(box_uuid, ".box"), json.dumps(box).encode(), durable=False)

    def read_document(self, name):
        return self._read_json_at(self.folder / "documents" / f"{name}.json")

    def write_document(self, name, document):
        self._write(self.folder / "documents" / f"{name}.json", json.dumps(document).encode(), durable=False)

    def _read_json(self, uuid, suffix):
        return self._read_json_at(self._path(uuid, suffix))

    def _read_json_at(self, path):
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:  # damaged on disk (written whole, so not by us): asked for again, as if never stored
            log.warning("ignoring the damaged file %s", path)
            return None

    def forget_info(self, uuid):
        """Drop the image's metadata, so the next crop asks FathomNet again (it led to no usable image)."""
        unlink(self._path(uuid, ".json"))

    def records(self, kind):
        """(uuid, dict) of every stored record of a kind: "info" (images) or "box" (annotations)."""
        suffix = RECORDS[kind]
        for path, _ in _files(self.folder):
            match = SOURCE_NAME.fullmatch(os.path.relpath(path, self.folder))
            if match and f".{match[3]}" == suffix:
                data = self._read_json(match[2], suffix)
                if isinstance(data, dict):
                    yield match[2], data

    def remove_image(self, uuid):
        """Remove the image's metadata and pixels (under its lock). Readers of its pixels (crops being cut) get
        LOCK_TIMEOUT to finish, so what they make lands before the purge is done; then they go anyway."""
        check_uuid(uuid)
        removed = self._remove(self._path(uuid, ".json"))
        pixels = self._path(uuid, ".pix")
        try:
            file = open(pixels, "rb")
        except FileNotFoundError:
            return removed
        with file:
            deadline = time.monotonic() + self.locks.timeout
            while True:
                try:
                    fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        log.warning("removing the pixels of image %s while they are still being read", uuid)
                        break
                    time.sleep(0.02)
            return removed + self._remove(pixels)  # while held: no new reader opens them meanwhile

    def forget_box(self, box_uuid):
        return self._remove(self._path(box_uuid, ".box"))

    def read_withdrawn(self, uuid):
        """When FathomNet was last found not to have the image (its .gone file, which eviction never lists)."""
        data = self._read_json(uuid, ".gone")
        when = data.get("withdrawn_at") if isinstance(data, dict) else None
        return when if type(when) in (int, float) else None

    def write_withdrawn(self, uuid, when):
        with storing(self.name):
            write_bytes(self._path(uuid, ".gone"), json.dumps({"withdrawn_at": when}).encode())

    def forget_withdrawn(self, uuid):
        unlink(self._path(uuid, ".gone"))

    def purges_applied(self):
        """The ids of the purges this host has applied: a file each."""
        try:
            return set(os.listdir(self.root / "purges-applied"))
        except FileNotFoundError:
            return set()

    def note_purge_applied(self, purge_id):
        with storing(self.name):
            write_bytes(self.root / "purges-applied" / checked_purge_id({"id": purge_id}), b"")

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
        self.count(blocks(size))

    @contextmanager
    def scratch_file(self):
        """A temp file for a download: in memory up to SPOOL_BYTES (most images), then anonymous on the
        cache's disk; nothing is left if we are killed."""
        with storing(self.name), scratch(self.folder, SPOOL_BYTES) as file:
            yield file

    def readiness_problem(self, min_free_bytes):
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
            if is_temp(path):
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
                    unlink(path)
        except BusyError:
            return False
        return True


class FileDatasetStore:
    """Finished data sets' files as <root>/datasets/files/<job id>/<name>: the folder nginx serves as
    /datasets/<job id>/files/<name>."""

    shared = False

    def __init__(self, root):
        self.folder = Path(root).resolve() / "datasets" / "files"

    @contextmanager
    def new_file(self, job_id, name):
        """A NewFile to write the job's file into (seekable, as a zip wants); stored whole when the block ends."""
        target = self.folder / job_id / name
        with storing("data-set store"), atomic_writer(target, "w+b") as out:
            new = NewFile(out)
            yield new
            out.flush()
            new.size, new.sha256 = size_and_sha256(out)

    def remove(self, job_id):
        freed = 0
        for path, stat in _files(self.folder / job_id):
            unlink(path)
            freed += _disk_size(stat)
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return freed

    @staticmethod
    def url_path(job_id, name):
        return f"/datasets/{job_id}/files/{name}"

    def open_file(self, job_id, name):
        """(the stored file opened for reading, its size), or None (for Gunicorn alone: nginx serves them)."""
        try:
            file = open(self.folder / job_id / name, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return file, os.fstat(file.fileno()).st_size


class FileJobStore:
    """Data-set job records as <root>/datasets/jobs/<id>.json, an index of request fingerprints to jobs, and
    this host's worker's heartbeat."""

    def __init__(self, root, locks):
        self.root = Path(root).resolve() / "datasets"
        self.locks = locks

    def _path(self, job_id):
        return self.root / "jobs" / f"{job_id}.json"

    def _index(self, key):
        return self.root / "requests" / key[:2] / key

    def get(self, job_id):
        """A job's record (a dict), or None."""
        try:
            return json.loads(self._path(job_id).read_bytes())
        except FileNotFoundError:
            return None

    def put(self, job_id, record):
        with storing("data-set store"):
            write_bytes(self._path(job_id), json.dumps(record).encode())

    def delete(self, job_id):
        unlink(self._path(job_id))

    def lock(self, name):
        """Held while a job (or a request's fingerprint) is read, changed and written back."""
        return self.locks.hold(f"dataset:{name}", "data set")

    def job_of(self, key):
        """The id of the latest job of a request fingerprint, or None."""
        try:
            return self._index(key).read_text().strip() or None
        except FileNotFoundError:
            return None

    def remember(self, key, job_id):
        with storing("data-set store"):
            write_bytes(self._index(key), job_id.encode())

    def beat(self):
        """Say this host's worker is alive (readiness reads it)."""
        path = self.root / "worker.alive"
        with storing("data-set store"):
            try:
                os.utime(path)
            except FileNotFoundError:
                write_bytes(path, b"")

    def readiness_problem(self):
        return None  # the cache folder's disk is checked as the source store's

    def heartbeat_age(self):
        """Seconds since this host's worker last said it is alive, or None if it never did."""
        try:
            return max(0.0, time.time() - (self.root / "worker.alive").stat().st_mtime)
        except FileNotFoundError:
            return None

    def all(self):
        """Every job's record (those removed meanwhile left out)."""
        folder = self.root / "jobs"
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                record = self.get(name[:-5])
                if record is not None:
                    yield record


def size_and_sha256(file):
    file.seek(0)
    digest, size = hashlib.sha256(), 0
    for block in iter(lambda: file.read(1 << 20), b""):
        digest.update(block)
        size += len(block)
    return size, digest.hexdigest()


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


def _disk_size(stat):
    return stat.st_blocks * 512


def _last_used(stat):
    return max(stat.st_atime, stat.st_mtime)


def _remove_unread(path):
    """Unlink a pixel file unless a reader holds it open (readers take a shared flock)."""
    try:
        with open(path, "rb") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            unlink(path)
    except BlockingIOError:
        return False
    except FileNotFoundError:
        pass
    return True
