"""Keeping the cache within its disk budget: least recently used files go first.

Crops and sources have budgets of their own (CACHE_MAX_BYTES, SOURCE_CACHE_MAX_BYTES). Over
budget, the least recently used are removed until the store is under the low-water mark. This
happens before a write would take a store over its budget (the stores count what they hold, so a
burst of downloads cannot outrun the pruner), when a write finds the disk full (once, then the
write is tried again), and every CACHE_PRUNE_INTERVAL seconds. Eviction is safe because links
heal: nginx sends a request for a missing crop to the app, which makes it again. Only what is in
use is kept: the stores refuse to remove a crop or source being made, or pixels being read. Temp
files left by killed workers go once TEMP_GRACE seconds old.

One pruner runs per cache folder (`python -m cropper cache prune --every N`, which Gunicorn's
arbiter starts): it holds the folder's pruner lock, and any other waits to take over.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass

from .. import metrics
from ..errors import BusyError, CropperError, InsufficientStorageError

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    crops_removed: int = 0
    crop_bytes_removed: int = 0
    sources_removed: int = 0
    source_bytes_removed: int = 0
    temp_files_removed: int = 0
    superseded_removed: int = 0  # crops earlier versions named otherwise (crops.superseded_store_path)
    skipped_in_use: int = 0

    @property
    def removed_anything(self):
        return bool(self.crops_removed or self.sources_removed or self.temp_files_removed or self.superseded_removed)


class Pruner:
    """Keeps a crop store and a source store (storage.Evictable) within their budgets."""

    def __init__(self, crop_store, source_store, settings):
        self.crop_store = crop_store
        self.source_store = source_store
        self.low_water = settings.cache_low_water
        self.temp_grace = settings.temp_grace
        self.budgets = {id(crop_store): settings.cache_max_bytes, id(source_store): settings.source_cache_max_bytes}
        # A store every host shares is evicted by one designated host's pruner (S3_PRUNER), by listing
        # it; the others, and writers everywhere, leave it alone.
        self.stores = [source_store] if crop_store.shared and not settings.s3_pruner else [crop_store, source_store]

    def prune(self, now=None):
        """Remove old temp files and, where over budget, least recently used entries."""
        now = time.time() if now is None else now
        report = PruneReport()
        if self.crop_store in self.stores:
            try:
                report.crops_removed, report.crop_bytes_removed = self._evicting(self.crop_store, report, now)
            except CropperError as error:  # the bucket is down: this host's sources are still its own to keep
                log.warning("cannot prune the %s: %s", self.crop_store.name, error.message)
        report.sources_removed, report.source_bytes_removed = self._evicting(self.source_store, report, now)
        return report

    def _evicting(self, store, report, now):
        """_within_budget as the store's one evictor, as make_room is: two evicting at once would each pass over
        what the other is removing (in use) and go on, together evicting far below the low-water mark."""
        try:
            with store.evicting():
                return self._within_budget(store, report, now=now)
        except BusyError:  # a write's make_room is evicting it now: it does the job, this pass leaves it
            log.info("the %s is being evicted by another process; pruning it next time", store.name)
            return 0, 0

    def within_budget(self, store, nbytes, write):
        """Write nbytes into store within its budget (write() does it); if the disk is full, free space once
        and try again."""
        self.make_room(store, nbytes)
        try:
            write()
        except InsufficientStorageError:
            self.free(2 * nbytes)
            write()
        self.make_room(store, 0)  # writes that ran alongside this one may have passed the budget together

    def make_room(self, store, nbytes):
        """Before storing nbytes in store (or after, with 0): keep it within its budget, evicting now if need be.

        One process evicts a store at a time and checks again when done, so writes that landed
        meanwhile are seen; the others write on.
        """
        for _ in range(3):
            if store.count(0) + nbytes <= self.budgets[id(store)]:
                return
            try:
                with store.evicting():
                    self._within_budget(store, PruneReport(), incoming=nbytes)
            except BusyError:
                return

    def free(self, nbytes):
        """The disk is full: remove the least recently used that nobody uses until nbytes more are free."""
        freed = 0
        for store in (self.source_store, self.crop_store):  # sources first: a few big files
            if store.shared:
                continue  # not on this disk
            freed += self._shrink(store, PruneReport(), lambda listing, freed_here: freed + freed_here >= nbytes)[1]
        log.warning("the cache's disk was full: removed %d bytes of least recently used files", freed)
        return freed

    def _within_budget(self, store, report, incoming=0, now=None):
        """Evict least recently used entries until store plus incoming is under the low-water mark."""
        budget = self.budgets[id(store)]

        def enough(listing, freed):
            total = listing.size + incoming
            return total <= budget or total - freed <= budget * self.low_water

        return self._shrink(store, report, enough, now)

    def _shrink(self, store, report, enough, now=None):
        """Remove least recently used entries nobody uses until enough(listing, bytes freed): (removed, freed).

        With now (a periodic pass), temp files older than the grace go first, from the same listing, and
        so does every crop an earlier version stored under another name (nginx might serve it wrongly).
        """
        counted = store.count(0)
        listing = store.listing()
        if now is not None:
            for temp in listing.temp_files:
                if now - temp.modified > self.temp_grace:
                    store.remove_temp_file(temp)
                    report.temp_files_removed += 1
            report.superseded_removed += sum(store.remove(entry) for entry in listing.superseded)
        removed = freed = 0
        for entry in sorted(listing.entries, key=lambda e: e.last_used):
            if enough(listing, freed):
                break
            if not store.remove(entry):
                report.skipped_in_use += 1
                continue
            removed += 1
            freed += entry.size
        # The count becomes what was measured, less what went, plus what other writers added meanwhile.
        store.count(listing.size - freed - counted)
        metrics.measured(store.name, len(listing.entries) - removed, listing.size - freed)
        if removed:
            metrics.evicted(store.name, removed, freed)
        return removed, freed


def run_pruner(pruner, interval, stop=None, parent_pid=None, after_each=None):
    """Prune every interval seconds as this cache folder's one pruner, until stop is set or the parent dies.

    While another process holds the pruner lock this one waits, and takes over if that one goes.
    after_each: what else this folder's one pruner does each pass (apply the purges it missed).
    """
    stop = stop or threading.Event()

    def stopping():
        return stop.is_set() or (parent_pid is not None and os.getppid() != parent_pid)

    def pause():
        deadline = time.monotonic() + interval
        while not stopping() and deadline > time.monotonic():
            stop.wait(min(deadline - time.monotonic(), 1.0))  # wake each second to see if the parent died

    announced_waiting = False
    while not stopping():
        try:
            with pruner.source_store.sole_pruner():
                log.info("pruning the cache every %s s (pid %d)", interval, os.getpid())
                while not stopping():
                    if _prune_once(pruner):
                        metrics.pruned(interval)
                    if after_each is not None:
                        _each_pass(after_each)
                    pause()
        except BusyError:
            if not announced_waiting:
                log.info("another process prunes this cache; standing by (pid %d)", os.getpid())
                announced_waiting = True
            pause()
        except CropperError as error:  # a read-only or full cache: say so, try again later
            log.warning("cannot prune the cache: %s", error.message)
            pause()


def _each_pass(task):
    try:
        task()
    except Exception as error:  # the store may be down: the next pass tries again
        log.warning("%s failed this pass: %r", getattr(task, "__name__", task), error)


def _prune_once(pruner):
    """One pass; True if it was done."""
    try:
        report = pruner.prune()
    except Exception:  # the pruner must outlive any one bad pass
        log.exception("cache prune failed")
        return False
    if report.removed_anything:
        log.info("cache pruned: %s", report)
    return True
