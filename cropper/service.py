"""CropService: the one place that orders lookup, download, decode, crop and store for one crop."""

import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass

from . import crops, imaging, metrics
from .crops import Crop
from .errors import (
    BoxNotFoundError,
    BusyError,
    ConceptNotFoundError,
    CropperError,
    ImageNotFoundError,
    InsufficientStorageError,
    InvalidRequestError,
    UpstreamError,
)
from .fathomnet import BoxInfo, ImageInfo

log = logging.getLogger(__name__)

QUERY_CHUNK = 100  # uuids per FathomNet query, keeping each request and answer modest


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
    def __init__(self, settings, crop_store, source_store, fathomnet, pruner, cluster):
        self.settings = settings
        self.crop_store = crop_store
        self.source_store = source_store
        self.fathomnet = fathomnet
        self.pruner = pruner
        self.cluster = cluster  # who makes an image's crops: this host, or the one that owns the image
        self._decoded = {}  # uuid -> MemorySource of images whose pixels are being stored
        self._unstored = {}  # uuid -> (image, its lock) fetched, to be stored (store_fetched)
        self._writer = None
        self.admission = Admission(settings.miss_slots, settings.miss_queue, settings.lock_timeout)
        self.encoder_options = encoder_options(settings)
        # A plain box's crop depends on the request alone, and tools repeat their requests.
        self._resolve_plain = functools.lru_cache(maxsize=4096)(self._resolve)

    def resolve(self, request, info=None, annotation=None):
        """The Resolved of a CropRequest: looks up the annotation and the image's size only when needed."""
        if request.box_uuid is None and not request.needs_image_size:
            return self._resolve_plain(request)
        return self._resolve(request, info, annotation)

    def _resolve(self, request, info=None, annotation=None):
        if request.box_uuid is not None:
            annotation = annotation or self.bounding_box(request.box_uuid)
            uuid, box = annotation.image_uuid, annotation.box
        else:
            uuid, box = request.uuid, request.box
        if request.needs_image_size and info is None:
            info = self.image_info(uuid)
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

        info: the image's metadata when the caller has it, with the box already checked against it.
        """
        with self.crop_store.lock(crop):
            if self.crop_store.find(crop):
                return CropResult(crop, cached=True)
            if info is None:
                info = self.image_info(crop.uuid)
                crops.check_box(crop.region, info.size)
            try:
                with self.open_source(info, store_later=True) as source:
                    started = time.perf_counter()  # the encode metric: not the download open_source may do
                    image = imaging.render(source, crop)
                data = imaging.encode(image, crop.format, crop.quality or self.settings.quality,
                                      self.encoder_options.get(crop.format))
                metrics.encoded(crop.format, time.perf_counter() - started)
                self._with_room(self.crop_store, len(data), lambda: self.crop_store.put(crop, data))
            finally:
                self.store_fetched(info.uuid)  # pixels fetched for this crop: stored now it is made (or failed)
        return CropResult(crop, cached=False)

    def _with_room(self, store, nbytes, write):
        """Write nbytes into store within its budget; if the disk is full, free space once and try again."""
        self.pruner.make_room(store, nbytes)
        try:
            write()
        except InsufficientStorageError:
            self.pruner.free(2 * nbytes)
            write()
        self.pruner.make_room(store, 0)  # writes that ran alongside this one may have passed the budget together

    def readiness(self):
        """Check what serving needs besides this process: the cache disk and FathomNet."""
        problems = {
            "cache": self.source_store.check_writable(self.settings.min_free_bytes),
            "fathomnet": self.fathomnet.ping(self.settings.ready_timeout),
        }
        if self.crop_store.shared:
            problems["store"] = self.crop_store.readiness_problem()
        return {name: {"ok": problem is None, **({"error": problem} if problem else {})}
                for name, problem in problems.items()}

    def image_info(self, uuid):
        """The image's metadata: stored when seen before, else from FathomNet (once)."""
        info = self._stored_info(uuid)
        if info is None:
            with self.source_store.lock(uuid):
                info = self._stored_info(uuid)
                if info is None:
                    info = self.fathomnet.image(uuid)
                    self.source_store.write_info(uuid, info.to_dict())
        return info

    def image_infos(self, uuids):
        """Metadata for many images: stored, else from one FathomNet query per QUERY_CHUNK images.

        Returns uuid -> ImageInfo, or the CropperError that every crop of that image gets.
        """
        infos = {uuid: self._stored_info(uuid) for uuid in uuids}
        missing = [uuid for uuid, info in infos.items() if info is None]
        for start in range(0, len(missing), QUERY_CHUNK):
            chunk = missing[start:start + QUERY_CHUNK]
            try:
                found = self.fathomnet.images(chunk)
            except CropperError as error:
                infos.update(dict.fromkeys(chunk, error))
                continue
            for uuid in chunk:
                if uuid in found:
                    infos[uuid] = found[uuid]
                    if isinstance(found[uuid], ImageInfo):
                        self.source_store.write_info(uuid, found[uuid].to_dict())
                else:
                    infos[uuid] = ImageNotFoundError(f"FathomNet has no image with uuid {uuid}.", uuid=uuid)
        return infos

    def _stored_info(self, uuid):
        return _read_back(ImageInfo.from_dict, self.source_store.read_info(uuid))

    def _stored_box(self, box_uuid):
        return _read_back(lambda data: BoxInfo(**data), self.source_store.read_box(box_uuid))

    def bounding_box(self, box_uuid):
        """A FathomNet annotation: stored when seen before, else looked up (once) and remembered."""
        stored = self._stored_box(box_uuid)
        if stored:
            return stored
        with self.source_store.lock(box_uuid):
            stored = self._stored_box(box_uuid)
            if stored:
                return stored
            found = self.fathomnet.bounding_box(box_uuid)
            if found is None:
                raise BoxNotFoundError(f"FathomNet has no bounding box with uuid {box_uuid}.", box_uuid=box_uuid)
            self.remember_box(found)
        return found

    def remember_box(self, box):
        self.source_store.write_box(box.uuid, asdict(box))

    def image_boxes(self, uuid):
        """The image's annotations, from its metadata (asked again if it was stored before boxes were kept)."""
        info = self.image_info(uuid)
        if info.boxes is None:
            with self.source_store.lock(uuid):
                info = self.fathomnet.image(uuid)
                self.source_store.write_info(uuid, info.to_dict())
        return info, list(info.boxes)

    def concept_page(self, concept, limit, offset):
        """A page of the boxes of a concept: (boxes, total, next offset or None); each box is remembered."""
        boxes, total, received = self.fathomnet.concept_boxes(concept, limit, offset)
        if total == 0:
            raise ConceptNotFoundError(f"FathomNet has no boxes of the concept {concept!r}.", concept=concept)
        for box in boxes:
            self.remember_box(box)
        next_offset = offset + received if received and offset + received < total else None
        return boxes, total, next_offset

    def ensure_source(self, info):
        """Have the image's pixels at hand, downloading and decoding them if need be."""
        self.open_source(info).close()

    def open_source(self, info, store_later=False):
        """The image's pixels: stored (a memory-mapped RawImage), being stored (in memory), else fetched (once).

        A fresh image's crops are cut from its decoded pixels at once; storing them for later crops
        happens after, in the background, holding the image's lock until they are whole, so nothing
        half-written is read and nobody fetches the image again meanwhile. store_later: not before
        the caller calls store_fetched (which it must, come what may), so the store does not slow
        the crop that is waited for.
        """
        source = self._decoded.get(info.uuid) or self.source_store.open_pixels(info.uuid)
        if source is not None:
            return source
        with ExitStack() as held:
            held.enter_context(self.source_store.lock(info.uuid))
            source = self._decoded.get(info.uuid) or self.source_store.open_pixels(info.uuid)
            if source is None:
                image = self._fetch_source(info)
                source = self._decoded[info.uuid] = imaging.MemorySource(image)
                self._unstored[info.uuid] = (image, held.pop_all())
                if not store_later:
                    self.store_fetched(info.uuid)
        return source

    def store_fetched(self, uuid):
        """Start storing the pixels of an image this process fetched, if they wait to be."""
        unstored = self._unstored.pop(uuid, None)
        if unstored is not None:
            self._background().submit(self._store_pixels, uuid, *unstored)

    def _background(self):
        if self._writer is None:  # started at first use: the app factory starts no thread
            self._writer = ThreadPoolExecutor(2, thread_name_prefix="store-pixels")
        return self._writer

    def _store_pixels(self, uuid, image, held):
        """Store a decoded image's pixels for later crops, then let go of its lock."""
        def write():
            with self.source_store.new_pixels(uuid) as out:
                imaging.write_raw(image, out)

        try:
            # Room is made now, when this write is next: a burst of downloads cannot all count on the same room.
            self._with_room(self.source_store, imaging.raw_size(image.size), write)
        except Exception:  # the crop was made: only later crops pay, with a new download
            log.exception("could not store the pixels of image %s", uuid)
        finally:
            self._decoded.pop(uuid, None)
            held.close()

    def _fetch_source(self, info):
        """Download, verify and decode the image; metadata that led nowhere is forgotten."""
        try:
            return self._download_and_decode(info)
        except CropperError:
            self.source_store.forget_info(info.uuid)  # failures are never cached, metadata included
            raise

    def _download_and_decode(self, info):
        imaging.check_size(info.size, self.settings.max_image_pixels)
        with self.source_store.scratch_file() as download:
            sha256 = self.fathomnet.download(info.url, download)
            if info.sha256 and sha256 != info.sha256:
                raise UpstreamError(
                    "The downloaded image does not match the sha256 FathomNet lists for it.",
                    expected_sha256=info.sha256, received_sha256=sha256,
                )
            download.seek(0)
            started = time.perf_counter()
            image = imaging.decode(download, self.settings.max_image_pixels, info.size)
            metrics.decoded(time.perf_counter() - started)
        if image.size != info.size:
            log.warning("image %s is %s but FathomNet says %s", info.uuid, image.size, info.size)
        return image


def _read_back(make, data):
    """What make() builds from stored data, or None when nothing (or something damaged) is stored."""
    if not isinstance(data, dict) or not data:
        return None
    try:
        return make(data)
    except (TypeError, ValueError, AttributeError):  # not what we wrote: asked for again, as if never stored
        log.warning("ignoring damaged stored metadata: %.200r", data)
        return None
