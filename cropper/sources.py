"""ImageSources: the one owner, on this host, of what is known of an image and of its pixels.

An image's record (with its annotations) and an annotation's box are asked of the image source
(FathomNet) once and remembered in the source store; the image's bytes are downloaded once,
decoded, and kept as raw pixels that later crops memory-map. Each is fetched under the image's
(or box's) lock, so concurrent requests and workers wait for one fetch instead of repeating it.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

from . import imaging, metrics
from .errors import BoxNotFoundError, ConceptNotFoundError, CropperError, ImageNotFoundError, UpstreamError
from .upstream import BoxInfo, BoxQuery, ImageInfo

log = logging.getLogger(__name__)

QUERY_CHUNK = 100  # uuids per query for many images, keeping each request and answer modest
CONCEPTS_KEPT = 3600  # seconds the list of concept names is used before it is asked for again


class ImageSources:
    """Image records, annotations and pixels: remembered in a SourceStore, fetched from an ImageSource."""

    def __init__(self, source, store, pruner, max_image_pixels):
        self.source = source  # an upstream.ImageSource
        self.store = store  # a storage.SourceStore
        self.pruner = pruner  # keeps the store within its budget as pixels are written
        self.max_image_pixels = max_image_pixels
        self._fresh = {}  # uuid -> MemorySource: pixels just decoded, cropped from while they are stored
        self._fresh_lock = threading.Lock()
        self._writer = None
        self.fetches = 0  # images this process downloaded (a data-set job reports its share)

    # -- records

    def info(self, uuid):
        """The image's record: remembered when seen before, else asked of the source (once)."""
        info = self._remembered_info(uuid)
        if info is None:
            with self.store.lock(uuid):
                info = self._remembered_info(uuid)
                if info is None:
                    info = self.source.image(uuid)
                    self.store.write_info(uuid, info.to_dict())
        return info

    def infos(self, uuids):
        """Records of many images: remembered, else from one query per QUERY_CHUNK images.

        Returns uuid -> ImageInfo, or the CropperError that every crop of that image gets.
        """
        infos = {uuid: self._remembered_info(uuid) for uuid in uuids}
        missing = [uuid for uuid, info in infos.items() if info is None]
        for start in range(0, len(missing), QUERY_CHUNK):
            chunk = missing[start:start + QUERY_CHUNK]
            try:
                found = self.source.images(chunk)
            except CropperError as error:
                infos.update(dict.fromkeys(chunk, error))
                continue
            for uuid in chunk:
                if uuid in found:
                    infos[uuid] = found[uuid]
                    if isinstance(found[uuid], ImageInfo):
                        self.store.write_info(uuid, found[uuid].to_dict())
                else:
                    infos[uuid] = ImageNotFoundError(f"FathomNet has no image with uuid {uuid}.", uuid=uuid)
        return infos

    def info_with_boxes(self, uuid):
        """The image's record with its annotations (asked again if it was remembered before they were kept)."""
        info = self.info(uuid)
        if info.boxes is None:
            with self.store.lock(uuid):
                info = self.source.image(uuid)
                self.store.write_info(uuid, info.to_dict())
        return info

    def box(self, box_uuid):
        """An annotation: remembered when seen before, else looked up (once) and remembered."""
        remembered = self._remembered_box(box_uuid)
        if remembered:
            return remembered
        with self.store.lock(box_uuid):
            remembered = self._remembered_box(box_uuid)
            if remembered:
                return remembered
            found = self.source.bounding_box(box_uuid)
            if found is None:
                raise BoxNotFoundError(f"FathomNet has no bounding box with uuid {box_uuid}.", box_uuid=box_uuid)
            self.remember_box(found)
        return found

    def remember_box(self, box):
        self.store.write_box(box.uuid, box.to_dict())

    def concept_page(self, concept, limit, offset):
        """A page of the boxes of a concept: (boxes, total, next offset or None); each box is remembered."""
        boxes, total, received = self.source.boxes(BoxQuery(concept), limit, offset)
        if total == 0:
            raise ConceptNotFoundError(f"FathomNet has no boxes of the concept {concept!r}.", concept=concept)
        for box in boxes:
            self.remember_box(box)
        next_offset = offset + received if received and offset + received < total else None
        return boxes, total, next_offset

    def concepts(self):
        """Every concept name the source has boxes of: remembered for CONCEPTS_KEPT seconds, else asked again
        (while the source cannot be reached, the list remembered serves on)."""
        remembered = self.store.read_document("concepts") or {}
        names, fetched = remembered.get("concepts"), remembered.get("fetched", 0)
        if isinstance(names, list) and time.time() - fetched < CONCEPTS_KEPT:
            return names
        try:
            names = self.source.concepts()
        except CropperError:
            if isinstance(names, list):
                log.warning("the source's concept list could not be fetched; using the one remembered")
                return names
            raise
        self.store.write_document("concepts", {"fetched": time.time(), "concepts": names})
        return names

    def _remembered_info(self, uuid):
        return _read_back(ImageInfo.from_dict, self.store.read_info(uuid))

    def _remembered_box(self, box_uuid):
        return _read_back(BoxInfo.from_dict, self.store.read_box(box_uuid))

    def readiness_problem(self, timeout):
        """None if the image source answers within timeout, else why not."""
        return self.source.ping(timeout)

    # -- pixels

    @contextmanager
    def pixels(self, info):
        """The image's pixels for the block: stored (memory-mapped), just fetched (in memory), else fetched now.

        The whole life of a fetch is here. A fresh image is downloaded and decoded under its lock,
        and its crops are cut from the decoded image at once; when the block ends, its pixels are
        written to the store in the background, the lock still held until they are whole (so nothing
        half-written is read and nobody fetches it again meanwhile), and then released. The answer
        waited for does not wait for that write.
        """
        fetched = None
        source = self._at_hand(info.uuid)
        if source is None:
            with ExitStack() as held:
                held.enter_context(self.store.lock(info.uuid))
                source = self._at_hand(info.uuid)
                if source is None:
                    image = self._fetch(info)
                    with self._fresh_lock:
                        source = self._fresh[info.uuid] = imaging.MemorySource(image)
                    fetched = (image, held.pop_all())  # the lock now lives until the pixels are stored
        try:
            with source:
                yield source
        finally:
            if fetched:
                self._background().submit(self._keep, info.uuid, *fetched)

    def _at_hand(self, uuid):
        with self._fresh_lock:
            fresh = self._fresh.get(uuid)
        return fresh or self.store.open_pixels(uuid)

    def _background(self):
        if self._writer is None:  # started at first use: the app factory starts no thread
            self._writer = ThreadPoolExecutor(2, thread_name_prefix="store-pixels")
        return self._writer

    def _keep(self, uuid, image, held):
        """Store a fetched image's pixels for later crops, then let go of its lock."""
        def write():
            with self.store.new_pixels(uuid) as out:
                imaging.write_raw(image, out)

        try:
            # Room is made now, when this write is next: a burst of downloads cannot all count on the same room.
            self.pruner.within_budget(self.store, imaging.raw_size(image.size), write)
        except Exception:  # the crop was made: only later crops pay, with a new download
            log.exception("could not store the pixels of image %s", uuid)
        finally:
            with self._fresh_lock:
                self._fresh.pop(uuid, None)
            held.close()

    def _fetch(self, info):
        """Download, verify and decode the image; a record that led to no usable image is forgotten."""
        with self._fresh_lock:
            self.fetches += 1
        try:
            return self._download_and_decode(info)
        except CropperError:
            self.store.forget_info(info.uuid)  # failures are never remembered, records included
            raise

    def _download_and_decode(self, info):
        imaging.check_size(info.size, self.max_image_pixels)
        with self.store.scratch_file() as download:
            sha256 = self.source.download(info.url, download)
            if info.sha256 and sha256 != info.sha256:
                raise UpstreamError(
                    "The downloaded image does not match the sha256 FathomNet lists for it.",
                    expected_sha256=info.sha256, received_sha256=sha256,
                )
            download.seek(0)
            started = time.perf_counter()
            image = imaging.decode(download, self.max_image_pixels, info.size)
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
