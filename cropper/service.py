"""CropService: the one place that orders lookup, download, decode, crop and store."""

import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from . import imaging
from .cache import FileCache, crop_relpath
from .errors import CropperError, ImageNotFoundError, UpstreamError
from .fathomnet import FathomNetClient, ImageInfo
from .schemas import CropRequest

log = logging.getLogger(__name__)

QUERY_CHUNK = 100  # uuids per FathomNet query, keeping each request and answer modest
# Pillow releases the GIL while it encodes, so one thread per core keeps every core cutting.
CROP_THREADS = os.cpu_count() or 1


@dataclass(frozen=True)
class CropResult:
    request: CropRequest
    path: Path
    cached: bool  # True when the file was already on disk (made earlier, or by a request we waited on)

    @property
    def relpath(self):
        return crop_relpath(self.request)

    def to_json(self, url):
        req = self.request
        return {
            "url": url, "uuid": req.uuid, "box": list(req.box), "width": req.box.width,
            "height": req.box.height, "format": req.format, "cached": self.cached,
        }


@dataclass(frozen=True)
class CropFailure:
    """A batch item that could not be made, and why."""

    request: CropRequest
    error: CropperError


class CropService:
    def __init__(self, settings, cache=None, fathomnet=None):
        self.settings = settings
        self.cache = cache or FileCache(settings.cache_dir, settings.lock_timeout)
        self.fathomnet = fathomnet or FathomNetClient(settings)

    def get_or_create(self, req):
        """Return the cached crop for req, making it on a miss; identical work runs once across workers."""
        path = self.cache.existing_crop(req)
        if path is not None:  # a hit costs one stat and no network
            return CropResult(req, path, cached=True)
        return self._make_crop(req)

    def get_or_create_many(self, reqs):
        """Crops for many requests, in order: a CropResult, or a CropFailure saying why not.

        Work is grouped by image: one metadata query for every image not seen before, each source
        downloaded and decoded at most once, and all its boxes cut from those pixels, with
        `batch_concurrency` of these running at once. The locks are the single requests' own.
        """
        results = [None] * len(reqs)
        pending = {}  # uuid -> [(index, req)] of crops not on disk yet
        for index, req in enumerate(reqs):
            path = self.cache.existing_crop(req)
            if path is not None:
                results[index] = CropResult(req, path, cached=True)
            else:
                pending.setdefault(req.uuid, []).append((index, req))
        if not pending:
            return results
        infos = self._image_infos(list(pending))
        # Two pools, so an image's crops start as soon as its pixels are ready, while other
        # downloads are still waiting on the network.
        with ThreadPoolExecutor(min(self.settings.batch_concurrency, len(pending))) as fetch_pool, \
                ThreadPoolExecutor(CROP_THREADS) as crop_pool:
            fetches = {}
            for uuid, items in pending.items():
                fitting = []
                for index, req in items:
                    results[index] = problem_before_download(req, infos[uuid])
                    if results[index] is None:
                        fitting.append((index, req))
                if fitting:
                    fetches[fetch_pool.submit(self._ensure_source, infos[uuid])] = fitting
            crops = []
            for fetch in as_completed(fetches):
                for index, req in fetches[fetch]:
                    if fetch.exception() is None:
                        crops.append((index, crop_pool.submit(self._make_crop, req, infos[req.uuid])))
                    else:
                        results[index] = item_error(fetch.exception())
            for index, crop in crops:
                results[index] = crop.result() if crop.exception() is None else item_error(crop.exception())
        return [result if isinstance(result, CropResult) else CropFailure(req, result)
                for req, result in zip(reqs, results)]

    def _make_crop(self, req, info=None):
        """Make the crop for req under its lock, unless the request we waited for already did."""
        path = self.cache.crop_path(req)
        with self.cache.lock("crop", str(path)):
            if path.exists():
                return CropResult(req, path, cached=True)
            if info is None:
                info = self.image_info(req.uuid)
                imaging.check_box(req.box, info.size)
            with self.open_source(info) as source:
                data = imaging.encode(source.crop(req.box), req.format, self.settings.quality)
            self.cache.write_bytes(path, data)
        return CropResult(req, path, cached=False)

    def readiness(self):
        """Check what serving needs besides this process: the cache disk and FathomNet."""
        problems = {
            "cache": self.cache.check_writable(self.settings.min_free_bytes),
            "fathomnet": self.fathomnet.ping(self.settings.ready_timeout),
        }
        return {name: {"ok": problem is None, **({"error": problem} if problem else {})}
                for name, problem in problems.items()}

    def image_info(self, uuid):
        """The image's metadata: from disk when seen before, else from FathomNet (once)."""
        info = self._cached_info(uuid)
        if info is None:
            with self.cache.lock("source", uuid):
                info = self._cached_info(uuid)
                if info is None:
                    info = self.fathomnet.image(uuid)
                    self.cache.write_json(self.cache.source_path(uuid, ".json"), info.to_dict())
        return info

    def _image_infos(self, uuids):
        """Metadata for many images: from disk, else from one FathomNet query per QUERY_CHUNK images.

        Returns uuid -> ImageInfo, or the CropperError that every crop of that image gets.
        """
        infos = {uuid: self._cached_info(uuid) for uuid in uuids}
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
                    self.cache.write_json(self.cache.source_path(uuid, ".json"), found[uuid].to_dict())
                else:
                    infos[uuid] = ImageNotFoundError(f"FathomNet has no image with uuid {uuid}.", uuid=uuid)
        return infos

    def _ensure_source(self, info):
        self.open_source(info).close()

    def _cached_info(self, uuid):
        data = self.cache.read_json(self.cache.source_path(uuid, ".json"))
        return ImageInfo(**data) if data else None

    def open_source(self, info):
        """The image's pixels as a RawImage: from disk, else downloaded and decoded (once)."""
        source = self.cache.open_pixels(info.uuid)
        if source is None:
            with self.cache.lock("source", info.uuid):
                source = self.cache.open_pixels(info.uuid)
                if source is None:
                    self._fetch_source(info, self.cache.source_path(info.uuid, ".pix"))
                    source = self.cache.open_pixels(info.uuid)
        return source

    def _fetch_source(self, info, path):
        """Download, verify and decode the image, and store its pixels at path."""
        imaging.check_size(info.size, self.settings.max_image_pixels)
        # An anonymous temp file: nothing is left behind even if this worker is killed.
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent) as download:
            sha256 = self.fathomnet.download(info.url, download)
            if info.sha256 and sha256 != info.sha256:
                raise UpstreamError(
                    "The downloaded image does not match the sha256 FathomNet lists for it.",
                    expected_sha256=info.sha256, received_sha256=sha256,
                )
            download.seek(0)
            image = imaging.decode(download, self.settings.max_image_pixels, info.size)
        if image.size != info.size:
            log.warning("image %s is %s but FathomNet says %s", info.uuid, image.size, info.size)
        with self.cache.atomic_writer(path) as out:
            imaging.write_raw(image, out)


def item_error(error):
    """What one batch item reports: its CropperError, or a generic one for a bug (logged)."""
    if isinstance(error, CropperError):
        return error
    log.error("batch item failed", exc_info=error)
    return CropperError("Something went wrong on our side.")


def problem_before_download(req, info):
    """The error a batch item meets before anything is downloaded (no image, box outside), or None."""
    if isinstance(info, CropperError):
        return info
    try:
        imaging.check_box(req.box, info.size)
    except CropperError as error:
        return error
    return None
