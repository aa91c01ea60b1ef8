"""ImageSources: the one owner, on this host, of what is known of an image and of its pixels.

An image's record (with its annotations) and an annotation's box are asked of the image source
(FathomNet) and remembered in the source store with the time they were fetched; the image's bytes
are downloaded once, decoded, and kept as raw pixels that later crops memory-map. Each is fetched
under the image's (or box's) lock, so concurrent requests and workers wait for one fetch instead
of repeating it.

Freshness (docs/freshness.md). Images are stable, annotations are not. A crop named by its pixel
region uses the image's record whatever its age (its size and bytes do not change) and never asks
again. What is remembered of annotations (an image's box list, a box) is used for METADATA_TTL
seconds; then the next request that needs it asks FathomNet again (a box through its image's record,
many images in one query). An image FathomNet no longer has is withdrawn: purged (everywhere, by
`on_withdrawn`) and answered 410 from then on. While FathomNet cannot be asked, the remembered
answer is used, and `stale_noted()` tells the answer being made that it was.
"""

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from . import imaging, metrics
from .errors import (
    BoxNotFoundError,
    ConceptNotFoundError,
    CropperError,
    ImageNotFoundError,
    ImageWithdrawnError,
    UpstreamError,
    or_error,
)
from .storage import Removed
from .upstream import BoxInfo, BoxQuery, ImageInfo

log = logging.getLogger(__name__)

QUERY_CHUNK = 100  # uuids per query for many images, keeping each request and answer modest
CONCEPTS_KEPT = 3600  # seconds the list of concept names is used before it is asked for again
FETCHED = "fetched_at"  # the key a record's fetch time (seconds since the epoch) is stored under, beside its fields
# After FathomNet failed to confirm a record, this process serves remembered ones for this long (at most
# METADATA_TTL) before asking again: an outage must not cost every request FathomNet's timeouts.
ASK_AGAIN_AFTER = 30.0

_stale = ContextVar("cropper_stale", default=False)  # this thread's, for the answer it makes now


def stale_noted():
    """Whether the answer this thread is making used remembered metadata FathomNet could not confirm; noting
    starts afresh for its next answer."""
    if not _stale.get():
        return False
    _stale.set(False)
    return True


def _note_stale():
    metrics.revalidated("stale")
    _stale.set(True)


class Remembered(NamedTuple):
    """A record as known: an ImageInfo or BoxInfo (None: FathomNet no longer has the image), when it was
    fetched, and whether FathomNet could not confirm it when asked just now."""

    value: object
    fetched_at: float
    stale: bool = False

    def unconfirmed(self):
        """The same record, marked as one FathomNet could not confirm just now."""
        return self._replace(stale=True)


class ImageSources:
    """Image records, annotations and pixels: remembered in a SourceStore, fetched from an ImageSource."""

    def __init__(self, source, store, pruner, max_image_pixels, metadata_ttl=3600.0, clock=time.time):
        self.source = source  # an upstream.ImageSource
        self.store = store  # a storage.SourceStore
        self.pruner = pruner  # keeps the store within its budget as pixels are written
        self.max_image_pixels = max_image_pixels
        self.metadata_ttl = metadata_ttl
        self.clock = clock  # wall time: fetch times are compared across processes and restarts
        # Called (in the background) with the uuid of an image FathomNet no longer has; the wiring makes it a
        # purge on every host (purges.Purges.withdrawn). None: what this host remembers of it is removed.
        self.on_withdrawn = None
        self._fresh = {}  # uuid -> MemorySource: pixels just decoded, cropped from while they are stored
        self._fresh_lock = threading.Lock()
        self.fetches = 0  # images this process downloaded (a data-set job reports its share)
        self._writer = self._purging = None  # thread pools, started at first use (_started)
        self._pools_lock = threading.Lock()
        self._ask_again_at = 0.0  # clock(): until then, remembered records are not asked about

    # -- image records

    def info(self, uuid):
        """The image's record for cutting its pixels: remembered whatever its age, else asked of the source (once)."""
        return self._one(uuid, math.inf)

    def info_with_boxes(self, uuid):
        """The image's record with its annotations as FathomNet had them within METADATA_TTL."""
        return self._one(uuid, self.metadata_ttl)

    def infos(self, uuids):
        """Records of many images for cutting their pixels: remembered, else from one query per QUERY_CHUNK images.

        Returns uuid -> ImageInfo, or the CropperError that every crop of that image gets.
        """
        return {uuid: _value_of(uuid, known) for uuid, known in self._known(uuids, math.inf).items()}

    def _one(self, uuid, max_age):
        known = self._usable(self._remembered_info(uuid), max_age)
        if known is None:
            with self.store.lock(uuid):  # concurrent requests wait for one answer
                remembered = self._remembered_info(uuid)
                known = self._usable(remembered, max_age) or self._asked([uuid], {uuid: remembered}, alone=True)[uuid]
        value = _value_of(uuid, known)
        if isinstance(value, CropperError):
            raise value
        return value

    def _known(self, uuids, max_age):
        """uuid -> Remembered (used as remembered, or as the source answers now) or CropperError, for many images."""
        remembered = {uuid: self._remembered_info(uuid) for uuid in dict.fromkeys(uuids)}
        known = {uuid: self._usable(found, max_age) for uuid, found in remembered.items()}
        known.update(self._asked([uuid for uuid, found in known.items() if found is None], remembered))
        return known

    def _usable(self, remembered, max_age):
        """remembered, if young enough to use; a withdrawn image is asked about again as annotations are."""
        if remembered is None:
            return None
        if remembered.value is None:
            max_age = self.metadata_ttl
        return remembered if self.clock() - remembered.fetched_at < max_age else None

    def _asked(self, uuids, remembered, alone=False):
        """What the source says now of each image, remembered: uuid -> Remembered or CropperError.

        One it no longer has but we had is withdrawn; one it cannot be asked about now is answered as
        remembered, if it was, marked stale. alone: one image's record, asked for alone.
        """
        answers = {}
        if self.clock() < self._ask_again_at:  # a pause after a failure: remembered records are not asked about
            answers = {uuid: remembered[uuid].unconfirmed() for uuid in uuids if remembered.get(uuid)}
            for uuid in answers:
                _note_stale()
        asking = [uuid for uuid in uuids if uuid not in answers]
        for start in range(0, len(asking), QUERY_CHUNK):
            chunk = asking[start:start + QUERY_CHUNK]
            try:
                found = self._query(chunk[0]) if alone else self.source.images(chunk)
            except CropperError as error:
                found = dict.fromkeys(chunk, error)
                self._ask_again_at = self.clock() + min(ASK_AGAIN_AFTER, self.metadata_ttl)
            for uuid in chunk:
                answers[uuid] = self._settled(uuid, found.get(uuid), remembered.get(uuid))
        return answers

    def _query(self, uuid):
        """{uuid: ImageInfo}, or {} if the source does not have the image."""
        try:
            return {uuid: self.source.image(uuid)}
        except ImageNotFoundError:
            return {}

    def _settled(self, uuid, answer, remembered):
        """What the source's answer about an image (an ImageInfo, None for none, or an error) makes known."""
        now = self.clock()
        if isinstance(answer, ImageInfo):
            self._remember_info(answer, now)
            if remembered is not None and remembered.value is None:
                self.store.forget_withdrawn(uuid)  # FathomNet has it again
            if remembered is not None:
                metrics.revalidated("confirmed" if answer == remembered.value else "changed")
            return Remembered(answer, now)
        if answer is None:
            if remembered is None:
                return ImageNotFoundError(f"FathomNet has no image with uuid {uuid}.", uuid=uuid)
            self._forget_records(uuid, remembered, withdrawn=False)
            self.store.write_withdrawn(uuid, now)  # from now on its URLs answer 410, here at once, until asked again
            self.store.forget_info(uuid)
            if remembered.value is not None:
                metrics.revalidated("withdrawn")
                self._withdraw(uuid)
            return Remembered(None, now)
        if remembered is None:
            return answer
        _note_stale()
        log.warning("serving what is remembered of image %s: FathomNet could not confirm it (%s)", uuid, answer.message)
        return remembered.unconfirmed()

    def _withdraw(self, uuid):
        """Purge an image FathomNet no longer has (everywhere, with on_withdrawn), in the background."""
        log.warning("FathomNet no longer has image %s: it is withdrawn, and purged", uuid)
        purge = self.on_withdrawn or (lambda image: self.forget_image(image, withdrawn=True))

        def run():
            try:
                purge(uuid)
            except Exception:  # the 410 stands; the purge is in the purge list for another try
                log.exception("purging withdrawn image %s failed", uuid)

        # its own thread: a slow purge (hosts to reach) never holds up pixel writes
        self._started("_purging", 1, "purge-withdrawn").submit(run)

    def _remembered_info(self, uuid):
        data = self.store.read_info(uuid)
        info = _read_back(ImageInfo.from_dict, data)
        if info is not None:
            return Remembered(info, _fetched_at(data))
        withdrawn_at = self.store.read_withdrawn(uuid)
        return None if withdrawn_at is None else Remembered(None, withdrawn_at)

    def _remember_info(self, info, fetched_at):
        self.store.write_info(info.uuid, {**info.to_dict(), FETCHED: fetched_at})

    # -- annotations

    def box(self, box_uuid):
        """An annotation as FathomNet had it within METADATA_TTL (see boxes)."""
        found = self.boxes([box_uuid])[box_uuid]
        if isinstance(found, CropperError):
            raise found
        return found

    def boxes(self, box_uuids, concurrency=1):
        """Annotations as FathomNet had them within METADATA_TTL: box uuid -> BoxInfo, or the CropperError it meets.

        Older ones are asked about again through their images' records, which list every box of an
        image (one query for many images): a box corrected is answered corrected, one deleted is not
        found. Boxes never seen are looked up one by one, `concurrency` at a time.
        """
        answers, older, unknown = {}, {}, []
        for box_uuid in dict.fromkeys(box_uuids):
            remembered = self._remembered_box(box_uuid)
            if remembered is None:
                unknown.append(box_uuid)
            elif self._usable(remembered, self.metadata_ttl):
                answers[box_uuid] = remembered.value
            elif self.clock() < self._ask_again_at:  # FathomNet failed moments ago: not asked again yet
                _note_stale()
                answers[box_uuid] = remembered.value
            else:
                older[box_uuid] = remembered
        images = self._known(sorted({remembered.value.image_uuid for remembered in older.values()}),
                             self.metadata_ttl)
        for box_uuid, remembered in older.items():
            answers[box_uuid] = self._box_in(images[remembered.value.image_uuid], remembered)
        if len(unknown) < 2 or concurrency < 2:
            answers.update((box_uuid, or_error(self._looked_up_box, box_uuid)) for box_uuid in unknown)
        else:
            with ThreadPoolExecutor(min(concurrency, len(unknown))) as pool:
                answers.update(zip(unknown, pool.map(lambda box_uuid: or_error(self._looked_up_box, box_uuid),
                                                     unknown)))
        return answers

    def _box_in(self, image, remembered):
        """A remembered box as its image's record (as known now: a Remembered or a CropperError) has it."""
        box_uuid = remembered.value.uuid
        if isinstance(image, Remembered) and image.value is not None and not image.stale:
            current = next((box for box in image.value.boxes or () if box.uuid == box_uuid), None)
            if current is not None:
                self.remember_box(current, image.fetched_at)
                return current
        elif not (isinstance(image, ImageNotFoundError) or (isinstance(image, Remembered) and image.value is None)):
            _note_stale()  # its image's record could not be confirmed (and may be older than the box)
            return remembered.value
        self.store.forget_box(box_uuid)  # no longer in its image's boxes, or its image is gone
        return BoxNotFoundError(f"FathomNet has no bounding box with uuid {box_uuid}.", box_uuid=box_uuid)

    def _looked_up_box(self, box_uuid):
        with self.store.lock(box_uuid):
            remembered = self._remembered_box(box_uuid)
            if remembered is not None:  # looked up meanwhile by another request
                return remembered.value
            found = self.source.bounding_box(box_uuid)
            if found is None:
                raise BoxNotFoundError(f"FathomNet has no bounding box with uuid {box_uuid}.", box_uuid=box_uuid)
            self.remember_box(found)
        return found

    def remember_box(self, box, fetched_at=None):
        self.store.write_box(box.uuid, {**box.to_dict(), FETCHED: self.clock() if fetched_at is None else fetched_at})

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

    def _remembered_box(self, box_uuid):
        data = self.store.read_box(box_uuid)
        box = _read_back(BoxInfo.from_dict, data)
        return None if box is None else Remembered(box, _fetched_at(data))

    # -- purges (cropper/purges.py runs them on every host)

    def forget_image(self, uuid, withdrawn=False):
        """Remove what this host remembers of an image: its record, its boxes' records and its pixels; withdrawn:
        and remember that FathomNet no longer has it. Returns what was removed."""
        with self.store.lock(uuid):  # a fetch under way finishes storing first
            removed = self._forget_records(uuid, self._remembered_info(uuid), withdrawn)
            return removed + self.store.remove_image(uuid)

    def _forget_records(self, uuid, remembered, withdrawn):
        """Forget the records of the boxes an image's record lists; withdrawn: remember that it is gone."""
        removed = Removed()
        for box in (remembered.value.boxes if remembered and remembered.value else None) or ():
            removed += self.store.forget_box(box.uuid)
        if withdrawn and self.store.read_withdrawn(uuid) is None:  # since when it is known: kept
            self.store.write_withdrawn(uuid, self.clock())
        return removed

    def forget_boxes(self, matches):
        """Remove the records of the boxes matches(box) picks, and have the records of images listing one asked
        for again at their next use. Returns (what was removed, how many image records will be asked for)."""
        removed = Removed()
        for box_uuid, data in self.store.records("box"):
            box = _read_back(BoxInfo.from_dict, data)
            if box is not None and matches(box):
                removed += self.store.forget_box(box_uuid)
        asked_again = 0
        for uuid, data in self.store.records("info"):
            info = _read_back(ImageInfo.from_dict, data)
            if info is not None and any(matches(box) for box in info.boxes or ()):
                self.store.write_info(uuid, {**data, FETCHED: 0})
                asked_again += 1
        return removed, asked_again

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
        return self._started("_writer", 2, "store-pixels")

    def _started(self, name, workers, prefix):
        """The thread pool kept as attribute name, started at its first use (the app factory starts no thread);
        once, whichever threads ask first."""
        with self._pools_lock:
            if getattr(self, name) is None:
                setattr(self, name, ThreadPoolExecutor(workers, thread_name_prefix=prefix))
            return getattr(self, name)

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


def _value_of(uuid, known):
    """What a Remembered image record (or error) answers: its ImageInfo, or the CropperError to raise."""
    if isinstance(known, CropperError):
        return known
    if known.value is None:
        return ImageWithdrawnError(f"FathomNet has withdrawn image {uuid}: its crops are gone.", uuid=uuid)
    return known.value


def _fetched_at(data):
    """When a stored record was fetched: 0 (long ago) for one stored before fetch times were kept."""
    fetched_at = data.get(FETCHED)
    return fetched_at if type(fetched_at) in (int, float) and math.isfinite(fetched_at) else 0.0


def _read_back(make, data):
    """What make() builds from stored data, or None when nothing (or something damaged) is stored."""
    if not isinstance(data, dict) or not data:
        return None
    try:
        return make(data)
    except (TypeError, ValueError, AttributeError):  # not what we wrote: asked for again, as if never stored
        log.warning("ignoring damaged stored metadata: %.200r", data)
        return None
