"""CropService: the one place that orders resolve, lookup, download, cut, encode and store for a crop.

The routes make one call per crop (`crop` for a request, `open` for a crop's file) and get back a
result; everything between the request and the answer (which annotation, which image, who makes it,
whether there is room) is decided here and below, never in the HTTP layer.
"""

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from . import crops, imaging, metrics
from .crops import Crop
from .errors import BusyError, CropperError, InvalidRequestError
from .upstream import BoxInfo


@dataclass(frozen=True)
class CropResult:
    crop: Crop
    cached: bool  # True when it was already stored (made earlier, or by a request we waited on)


@dataclass(frozen=True)
class Resolved:
    """A request made definite: the crop it names, the box it asked for, and the annotation it came from."""

    crop: Crop
    box: crops.Box
    annotation: BoxInfo | None = None


@dataclass(frozen=True)
class Made:
    """A crop request answered: what it resolved to, and whether its file was already stored."""

    resolved: Resolved
    cached: bool


class Admission:
    """How many requests of this process may make crops at once, and how many may queue for that.

    Making a crop waits on FathomNet, the image host and locks. Capping it below the number of
    Gunicorn threads keeps threads free for cache hits, which need none of that, and a request
    past the queue is told to come back (503) instead of waiting behind a slow host.
    """

    def __init__(self, slots, queue, timeout):
        self._slots = threading.BoundedSemaphore(slots)
        self._room = threading.BoundedSemaphore(slots + queue)
        self.timeout = timeout

    @contextmanager
    def slot(self):
        if not self._room.acquire(blocking=False):
            metrics.busy("slots")
            raise BusyError("This server is busy making other crops; try again shortly.", retry_after=1)
        try:
            if not self._slots.acquire(timeout=self.timeout):
                metrics.busy("slots")
                raise BusyError("This server is busy making other crops; try again shortly.", retry_after=1)
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._room.release()


def encoder_options(settings):
    """Pillow save() options by format: the encoder effort the settings choose."""
    return {"webp": {"method": settings.webp_method}, "png": {"compress_level": settings.png_compress_level},
            "jpeg": {"optimize": settings.jpeg_optimize, "progressive": settings.jpeg_progressive}}


class CropService:
    def __init__(self, settings, crop_store, sources, pruner, cluster):
        self.settings = settings
        self.crop_store = crop_store  # a storage.CropStore
        self.sources = sources  # an ImageSources: image records, annotations and pixels
        self.pruner = pruner
        self.cluster = cluster  # who makes an image's crops: this host, or the one that owns the image
        self.admission = Admission(settings.miss_slots, settings.miss_queue, settings.lock_timeout)
        self.encoder_options = encoder_options(settings)
        # A plain box's crop depends on the request alone, and tools repeat their requests.
        self._resolve_plain = functools.lru_cache(maxsize=4096)(self._resolve)

    def crop(self, request):
        """A crop request answered: resolved, and its crop found or made."""
        resolved = self.resolve(request)
        return Made(resolved, self.get_or_create(resolved.crop).cached)

    def open(self, crop, store_failure=None):
        """A crop's file for sending, and whether it was already stored: made first if it is gone (links
        never break), within the same admission as a POST's crop.

        store_failure: why this host's nginx could not read the crop from the shared store just now, if
        it could not; then the store is not waited on a second time (the breaker opens, the call fails at once).
        """
        if store_failure:
            self.crop_store.unreachable(store_failure)
        result = self.get_or_create(crop)
        opened = self.crop_store.open(crop)
        if opened is None:  # evicted between making and sending: make it once more
            with self.admission.slot():
                self.make(crop)
            opened = self.crop_store.open(crop)
        if opened is None:  # evicted at once again: the cache is far over its budget, not this request's fault
            raise BusyError("The crop was evicted as soon as it was made; the cache is under pressure.")
        return opened, result.cached

    def resolve(self, request, info=None, annotation=None):
        """The Resolved of a CropRequest: looks up the annotation and the image's size only when needed."""
        if request.box_uuid is None and not request.needs_image_size:
            return self._resolve_plain(request)
        return self._resolve(request, info, annotation)

    def _resolve(self, request, info=None, annotation=None):
        if request.box_uuid is not None:
            annotation = annotation or self.sources.box(request.box_uuid)
            uuid, box = annotation.image_uuid, annotation.box
        else:
            uuid, box = request.uuid, request.box
        if request.needs_image_size and info is None:
            info = self.sources.info(uuid)
        crop = crops.resolve(request, uuid, box, info.size if info else None)
        too_large = crops.over_limits(crop, self.settings.max_crop_side, self.settings.max_crop_pixels)
        if too_large:
            raise InvalidRequestError("This crop is too large.", _schema=[too_large])
        return Resolved(crop, box, annotation)

    def get_or_create(self, crop, here=False):
        """The stored crop, made on a miss; identical work runs once across workers (and hosts).

        here: make it on this host whoever owns the image (another host asked us to).
        """
        if self.crop_store.find(crop):  # a hit costs one stat (or one HEAD of the store) and no FathomNet call
            return CropResult(crop, cached=True)
        if not here:
            made = self.cluster.make_elsewhere([crop])[0]
            if isinstance(made, CropperError):
                raise made
            if made is not None:
                return CropResult(crop, cached=made.cached)
        with self.admission.slot():
            return self.make(crop)

    def make(self, crop, info=None):
        """Make the crop under its lock, unless the request we waited for already did.

        info: the image's record when the caller has it, with the box already checked against it.
        """
        with self.crop_store.lock(crop):
            if self.crop_store.find(crop):
                return CropResult(crop, cached=True)
            if info is None:
                info = self.sources.info(crop.uuid)
                crops.check_box(crop.region, info.size)
            with self.sources.pixels(info) as source:
                started = time.perf_counter()  # the encode metric: not the download pixels() may do
                image = imaging.render(source, crop)
                data = imaging.encode(image, crop.format, crop.quality or self.settings.quality,
                                      self.encoder_options.get(crop.format))
                metrics.encoded(crop.format, time.perf_counter() - started)
                self.pruner.within_budget(self.crop_store, len(data), lambda: self.crop_store.put(crop, data))
        return CropResult(crop, cached=False)

    def readiness(self):
        """Check what serving needs besides this process: the cache disk, FathomNet, a shared store, and the
        other hosts' taking this one's CLUSTER_KEY (one they cannot be asked is no key mismatch)."""
        with ThreadPoolExecutor(1) as asking:  # the other hosts meanwhile: /readyz stays within 2 READY_TIMEOUTs
            asked = asking.submit(self.cluster.check_key, self.settings.ready_timeout)
            problems = {
                "cache": self.sources.store.readiness_problem(self.settings.min_free_bytes),
                "fathomnet": self.sources.readiness_problem(self.settings.ready_timeout),
            }
            if self.crop_store.shared:
                problems["store"] = self.crop_store.readiness_problem()
            keys = asked.result()
        checks = {name: {"ok": problem is None, **({"error": problem} if problem else {})}
                  for name, problem in problems.items()}
        if keys is not None:
            checks["cluster"] = {"ok": keys.problem is None, **({"error": keys.problem} if keys.problem else {}),
                                 **({"warning": keys.warning} if keys.warning else {})}
        return checks
