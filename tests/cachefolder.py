"""A cache folder as tests arrange it: files put where the stores look for them, with chosen sizes and times."""

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from cropper.crops import Box, Crop
from cropper.imaging import write_raw
from cropper.storage.disk import TEMP_SUFFIX, atomic_writer, write_bytes
from cropper.storage.files import FileCropStore, FileSourceStore
from cropper.storage.locks import Locks

UUID = "f11816b8-1234-4abc-8def-0123456789ab"
HOUR = 3600
NOW = time.time()  # tests that pass now= explicitly set file times relative to this


class CacheFolder:
    """The cache folder as these tests arrange it: files put where the stores look for them, and the stores."""

    def __init__(self, root, lock_timeout):
        self.root = Path(root).resolve()
        self.crops = self.root / "crops"
        self.locks = Locks(self.root / "locks", lock_timeout)
        self.crop_store = FileCropStore(self.root, self.locks)
        self.source_store = FileSourceStore(self.root, self.locks)

    def crop_path(self, crop):
        return self.crop_store.path(crop)

    def source_path(self, uuid, suffix):
        return self.root / "sources" / uuid[:2] / f"{uuid}{suffix}"

    def existing_crop(self, crop):
        return self.crop_path(crop) if self.crop_store.find(crop) else None

    def open_pixels(self, uuid):
        return self.source_store.open_pixels(uuid)


@dataclass
class Usage:
    """The stores' listings, crops keyed by their path as the tests know them."""

    crops: list
    sources: list
    temp_files: list

    @staticmethod
    def total(entries):
        return sum(entry.size for entry in entries)


def files_under(folder):
    """Every file under folder now. os.walk, not rglob: a purge or the pruner may remove folders as it walks."""
    return sorted(Path(parent, name) for parent, _, names in os.walk(folder) for name in names)


def scan(cache):
    crops, sources = cache.crop_store.listing(), cache.source_store.listing()
    for entry in crops.entries:
        entry.key = entry.paths[0]
    return Usage(crops.entries, sources.entries,
                 [(temp.path, temp.modified) for temp in crops.temp_files + sources.temp_files])


def crop_req(n, uuid=UUID, fmt="webp"):
    return Crop(uuid, Box(n, 0, n + 1, 1), fmt)


def make_crop(cache, n, uuid=UUID, size=4096, used=NOW - 10 * HOUR, modified=None):
    """Write crop number n of uuid; its atime is `used`, its mtime `modified` (default: same)."""
    path = cache.crop_path(crop_req(n, uuid))
    write_bytes(path, os.urandom(size))
    set_times(path, used, modified)
    return path


def make_source(cache, uuid, side=64, used=NOW - 10 * HOUR, modified=None):
    """Write a source's .json and .pix (side x side grayscale pixels), both with the given times."""
    json_path, pix_path = cache.source_path(uuid, ".json"), cache.source_path(uuid, ".pix")
    write_bytes(json_path, json.dumps({"uuid": uuid, "width": side, "height": side}).encode())
    with atomic_writer(pix_path) as out:
        write_raw(Image.new("L", (side, side), 7), out)
    for path in (json_path, pix_path):
        set_times(path, used, modified)
    return json_path, pix_path


def make_temp(folder, name, age, now=NOW):
    """Leave a temp file as a killed atomic_writer would, last written `age` seconds before now."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=TEMP_SUFFIX)
    os.write(fd, b"half-written")
    os.close(fd)
    set_times(path, now - age)
    return path


def set_times(path, atime, mtime=None):
    os.utime(path, (atime, atime if mtime is None else mtime))


def allocated(*paths):
    return sum(os.stat(path).st_blocks * 512 for path in paths)
