"""CropService: the one place that orders lookup, download, decode, crop and store."""

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import imaging
from .cache import FileCache, crop_relpath
from .errors import UpstreamError
from .fathomnet import FathomNetClient, ImageInfo
from .schemas import CropRequest

log = logging.getLogger(__name__)


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


class CropService:
    def __init__(self, settings, cache=None, fathomnet=None):
        self.settings = settings
        self.cache = cache or FileCache(settings.cache_dir, settings.lock_timeout)
        self.fathomnet = fathomnet or FathomNetClient(settings)

    def get_or_create(self, req):
        """Return the cached crop for req, making it on a miss; identical work runs once across workers."""
        path = self.cache.crop_path(req)
        if path.exists():  # a hit costs one stat and no network
            return CropResult(req, path, cached=True)
        with self.cache.lock("crop", str(path)):
            if path.exists():  # made by the request we waited for
                return CropResult(req, path, cached=True)
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

    def _cached_info(self, uuid):
        data = self.cache.read_json(self.cache.source_path(uuid, ".json"))
        return ImageInfo(**data) if data else None

    def open_source(self, info):
        """The image's pixels as a RawImage: from disk, else downloaded and decoded (once)."""
        path = self.cache.source_path(info.uuid, ".pix")
        source = _open_raw(path)
        if source is None:
            with self.cache.lock("source", info.uuid):
                source = _open_raw(path)
                if source is None:
                    self._fetch_source(info, path)
                    source = imaging.RawImage(path)
        return source

    def _fetch_source(self, info, path):
        """Download, verify and decode the image, and store its pixels at path."""
        imaging.check_size(info.size, self.settings.max_image_pixels)
        # An anonymous temp file: nothing is left behind even if this worker is killed.
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


def _open_raw(path):
    try:
        return imaging.RawImage(path)
    except FileNotFoundError:
        return None
    except ValueError:
        log.warning("%s is damaged; fetching the image again", path)
        return None
