"""Keeping the cache within its disk budget: least recently used files go first.

Crops and sources have budgets of their own (CACHE_MAX_BYTES, SOURCE_CACHE_MAX_BYTES). Over
budget, the least recently used are removed until the folder is under the low-water mark.
Eviction is safe because links heal: nginx sends a request for a missing crop to the app,
which makes it again. Nothing in use is removed: files used within CACHE_MIN_AGE seconds are
kept, a crop or source whose lock is held (being made) is skipped, and so is a source whose
pixels are open (readers hold a shared flock on them). Temp files left by killed workers are
removed once TEMP_GRACE seconds old.
"""

import fcntl
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .cache import CROP_PATH, SOURCE_PATH, TEMP_SUFFIX
from .errors import BusyError

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One evictable unit: a crop file, or a source's .json and .pix together."""

    key: str  # the crop's path, or the source's uuid
    paths: list
    size: int  # bytes on disk (allocated blocks, which is what fills a disk)
    last_used: float


@dataclass
class Usage:
    crops: list = field(default_factory=list)
    sources: list = field(default_factory=list)
    temp_files: list = field(default_factory=list)  # (path, mtime)

    @staticmethod
    def total(entries):
        return sum(entry.size for entry in entries)


@dataclass
class PruneReport:
    crops_removed: int = 0
    crop_bytes_removed: int = 0
    sources_removed: int = 0
    source_bytes_removed: int = 0
    temp_files_removed: int = 0
    skipped_in_use: int = 0


def disk_size(stat):
    return stat.st_blocks * 512


def last_used(stat):
    return max(stat.st_atime, stat.st_mtime)


def _files(folder):
    """(path, stat) of every file below folder; a file removed meanwhile is simply not listed."""
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                yield path, os.stat(path)
            except FileNotFoundError:
                continue


def scan(cache):
    """Measure what the cache holds."""
    usage = Usage()
    for path, stat in _files(cache.crops):
        name = os.path.basename(path)
        if name.startswith(".") and name.endswith(TEMP_SUFFIX):
            usage.temp_files.append((path, stat.st_mtime))
        elif CROP_PATH.fullmatch(os.path.relpath(path, cache.crops)):
            usage.crops.append(Entry(path, [path], disk_size(stat), last_used(stat)))
    sources = {}
    for path, stat in _files(cache.sources):
        name = os.path.basename(path)
        if name.startswith(".") and name.endswith(TEMP_SUFFIX):
            usage.temp_files.append((path, stat.st_mtime))
            continue
        match = SOURCE_PATH.fullmatch(os.path.relpath(path, cache.sources))
        if match is None or match["uuid"][:2] != match["prefix"]:
            continue
        uuid = match["uuid"]
        entry = sources.setdefault(uuid, Entry(uuid, [], 0, 0.0))
        entry.paths.append(path)
        entry.size += disk_size(stat)
        entry.last_used = max(entry.last_used, last_used(stat))
    usage.sources = list(sources.values())
    return usage


class Pruner:
    def __init__(self, cache, settings):
        self.cache = cache
        self.max_crop_bytes = settings.cache_max_bytes
        self.max_source_bytes = settings.source_cache_max_bytes
        self.low_water = settings.cache_low_water
        self.min_age = settings.cache_min_age
        self.temp_grace = settings.temp_grace
        self.interval = settings.cache_prune_interval
        self._stopped = threading.Event()

    def prune(self, now=None):
        """Remove old temp files and, where over budget, least recently used entries."""
        now = time.time() if now is None else now
        usage = scan(self.cache)
        report = PruneReport()
        for path, mtime in usage.temp_files:
            if now - mtime > self.temp_grace:
                _unlink(path)
                report.temp_files_removed += 1
        removed, size = self._evict(usage.crops, self.max_crop_bytes, self._remove_crop, now, report)
        report.crops_removed, report.crop_bytes_removed = removed, size
        removed, size = self._evict(usage.sources, self.max_source_bytes, self._remove_source, now, report)
        report.sources_removed, report.source_bytes_removed = removed, size
        return report

    def _evict(self, entries, budget, remove, now, report):
        total = Usage.total(entries)
        if total <= budget:
            return 0, 0
        target = budget * self.low_water
        removed = freed = 0
        for entry in sorted(entries, key=lambda e: e.last_used):
            if total - freed <= target:
                break
            if now - entry.last_used < self.min_age or not remove(entry):
                report.skipped_in_use += 1
                continue
            removed += 1
            freed += entry.size
        return removed, freed

    def _remove_crop(self, entry):
        try:
            with self.cache.lock("crop", entry.key, timeout=0):
                _unlink(entry.key)
        except BusyError:
            return False  # being made right now
        try:
            os.rmdir(os.path.dirname(entry.key))  # the image's folder, when this was its last crop
        except OSError:
            pass
        return True

    def _remove_source(self, entry):
        try:
            with self.cache.lock("source", entry.key, timeout=0):
                pixels = [p for p in entry.paths if p.endswith(".pix")]
                if pixels and not _remove_unread(pixels[0]):
                    return False
                for path in entry.paths:
                    _unlink(path)
        except BusyError:
            return False
        return True

    def run_in_background(self):
        """Prune every `interval` seconds in a daemon thread; one worker at a time does it."""
        if self.interval <= 0:
            return None
        thread = threading.Thread(target=self._loop, name="cache-pruner", daemon=True)
        thread.start()
        return thread

    def stop(self):
        """End the background thread after its current pass."""
        self._stopped.set()

    def _loop(self):
        stamp = self.cache.locks / "last-prune"
        while not self._stopped.wait(self.interval * random.uniform(0.5, 1.0)):  # workers drift apart
            try:
                if time.time() - _mtime(stamp) < self.interval:
                    continue  # another worker did it recently
                with self.cache.lock("prune", "all", timeout=0):
                    stamp.touch()
                    report = self.prune()
                if report.crops_removed or report.sources_removed or report.temp_files_removed:
                    log.info("cache pruned: %s", report)
            except BusyError:
                continue
            except Exception:  # the pruner must outlive any one bad pass
                log.exception("cache prune failed")


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


def _mtime(path):
    try:
        return Path(path).stat().st_mtime
    except FileNotFoundError:
        return 0.0
