"""The FathomNet client: image metadata from the API and image bytes from the image host.

It speaks in meanings (not found, upstream failed, timed out) and never in HTTP statuses,
so the routes decide what the client of our service hears.
"""

import hashlib
import time
from dataclasses import asdict, dataclass
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import ImageNotFoundError, ImageTooLargeError, UpstreamError, UpstreamTimeoutError

CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class ImageInfo:
    """What we need to know about a FathomNet image before downloading it."""

    uuid: str
    url: str
    width: int
    height: int
    sha256: str | None = None

    @classmethod
    def from_api(cls, uuid, data):
        """Build from FathomNet's Image JSON, refusing answers we cannot work with."""
        try:
            width, height, url = data["width"], data["height"], data["url"]
            if not all(type(side) is int and side > 0 for side in (width, height)):
                raise ValueError("width and height must be positive integers")
            if not isinstance(url, str) or not url:
                raise ValueError("url must be a string")
        except (KeyError, TypeError, ValueError) as error:
            raise UpstreamError(f"FathomNet sent unusable metadata for image {uuid}: {error}") from None
        sha256 = data.get("sha256")
        return cls(uuid, url, width, height, sha256.lower() if isinstance(sha256, str) and sha256 else None)

    @property
    def size(self):
        return self.width, self.height

    def to_dict(self):
        return asdict(self)


class FathomNetClient:
    def __init__(self, settings):
        self.api_url = settings.fathomnet_api_url.rstrip("/") + "/"
        self.allowed_hosts = frozenset(settings.allowed_image_hosts)
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.download_timeout = settings.download_timeout
        self.max_download_bytes = settings.max_download_bytes
        self.session = requests.Session()
        # Retry only what is safe and cheap to retry: refused connections and 5xx answers.
        # A read timeout is not retried: it already cost the whole timeout once.
        retry = Retry(
            total=settings.upstream_retries, connect=settings.upstream_retries, read=False,
            status=settings.upstream_retries, status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}), backoff_factor=0.1,
            raise_on_status=False, respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def image(self, uuid):
        """Look up one image's metadata."""
        response = self._call("GET", f"images/{quote(uuid)}", what=f"image {uuid}")
        if response.status_code == 404:
            raise ImageNotFoundError(f"FathomNet has no image with uuid {uuid}.", uuid=uuid)
        return ImageInfo.from_api(uuid, self._json(response, f"image {uuid}"))

    def images(self, uuids):
        """Look up many images in one call; unknown uuids are absent from the answer."""
        uuids = [uuid.lower() for uuid in uuids]
        response = self._call("POST", "images/query/uuids", what="images", json=uuids)
        found = {}
        for item in self._json(response, "images"):
            uuid = str(item.get("uuid", "")).lower() if isinstance(item, dict) else ""
            if uuid in uuids:
                found[uuid] = ImageInfo.from_api(uuid, item)
        return found

    def _call(self, method, path, what, **kwargs):
        try:
            response = self.session.request(method, urljoin(self.api_url, path), timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise UpstreamTimeoutError(f"FathomNet did not answer in time about {what}.") from None
        except requests.RequestException as error:
            raise UpstreamError(f"FathomNet could not be reached about {what}: {error}") from None
        if response.status_code != 404 and not response.ok:
            raise UpstreamError(f"FathomNet answered {response.status_code} about {what}.", status=response.status_code)
        return response

    @staticmethod
    def _json(response, what):
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"FathomNet sent something that is not JSON about {what}.") from None

    def download(self, url, out):
        """Stream an image into the file out, within the size and time limits; return its sha256 hex."""
        deadline = time.monotonic() + self.download_timeout
        digest = hashlib.sha256()
        try:
            with self._open_image(url) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > self.max_download_bytes:
                    raise self._too_big()
                received = 0
                for chunk in response.iter_content(CHUNK_BYTES):
                    received += len(chunk)
                    if received > self.max_download_bytes:
                        raise self._too_big()
                    if time.monotonic() > deadline:
                        raise UpstreamTimeoutError(f"The image download took over {self.download_timeout} s.")
                    digest.update(chunk)
                    out.write(chunk)
        except requests.Timeout:
            raise UpstreamTimeoutError("The image host did not answer in time.") from None
        except requests.RequestException as error:
            raise UpstreamError(f"The image download failed: {error}") from None
        return digest.hexdigest()

    def _open_image(self, url):
        """GET url, following redirects only to allowed hosts (URLs with %20 are sent as given)."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_host(url)
            response = self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=False)
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                response.close()
                continue
            if not response.ok:
                response.close()
                raise UpstreamError(f"The image host answered {response.status_code}.", status=response.status_code)
            content_type = response.headers.get("Content-Type", "").lower()
            if content_type and not content_type.startswith(("image/", "application/octet-stream")):
                response.close()
                raise UpstreamError(f"The image host sent {content_type}, not an image.")
            return response
        raise UpstreamError("The image host redirected too many times.")

    def _check_host(self, url):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in self.allowed_hosts:
            raise UpstreamError(
                f"FathomNet pointed at an image on {parts.hostname!r}, which is not an allowed image host.",
                host=parts.hostname,
            )

    def _too_big(self):
        return ImageTooLargeError(
            f"The image file is larger than the {self.max_download_bytes} bytes this server downloads.",
            max_bytes=self.max_download_bytes,
        )

    def ping(self, timeout):
        """Return None if the API answers (any status under 500) within timeout, else why not."""
        try:
            # Plain requests, not the retrying session: a probe must answer within its timeout.
            response = requests.get(self.api_url, timeout=timeout)
        except requests.Timeout:
            return f"no answer within {timeout} s"
        except requests.RequestException as error:
            return f"unreachable: {type(error).__name__}"
        response.close()
        return f"answered {response.status_code}" if response.status_code >= 500 else None
