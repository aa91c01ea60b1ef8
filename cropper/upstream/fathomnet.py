"""The FathomNet client, an `upstream.ImageSource`: records from FathomNet's API, bytes from its image hosts.

It speaks in meanings (not found, upstream failed, timed out) and never in HTTP statuses, so the
routes decide what the client of our service hears. Everything that comes back is bounded: each
call has a total deadline (deadlines.py), each body a size cap (compressed and inflated), JSON a
nesting depth, redirects a count and a destination (the API's own origin; allowed image hosts).
"""

import hashlib
import json
import logging
import math
from urllib.parse import quote, urljoin, urlsplit

import requests
from urllib3.util.retry import Retry

from .. import metrics
from ..crops import canonical_uuid
from ..errors import ImageNotFoundError, ImageTooLargeError, UpstreamError, UpstreamTimeoutError
from . import BoxInfo, BoxPage, ImageInfo
from .deadlines import DeadlineAdapter, deadline

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
# What _api returns for FathomNet's 404: not None, which is an answer of JSON null (200), unusable (502).
NOT_FOUND = object()
MAX_REDIRECTS = 3
DEFAULT_PORTS = {"http": 80, "https": 443}


def box_from_api(data, image_uuid=None):
    """A BoxInfo from FathomNet's BoundingBox JSON, refusing boxes we cannot work with (UpstreamError)."""
    try:
        uuid, concept = canonical_uuid(data["uuid"]), data["concept"]
        image = canonical_uuid(image_uuid or data["imageUuid"])
        numbers = [data[name] for name in ("x", "y", "width", "height")]
        if not all(type(n) is int and abs(n) < 10**9 for n in numbers) or min(numbers[2:]) < 1:
            raise ValueError("x, y, width and height must be whole numbers, the sides more than 0")
        if not isinstance(concept, str) or not 0 < len(concept) <= 256:
            raise ValueError("concept must be a name")
    except (KeyError, TypeError, ValueError) as error:
        log.warning("unusable bounding box %r: %r", data.get("uuid") if isinstance(data, dict) else None, error)
        raise UpstreamError("FathomNet sent an unusable bounding box.") from None
    return BoxInfo(uuid, image, concept, *numbers, review=review_state(data),
                   occluded=_flag(data.get("occluded")), truncated=_flag(data.get("truncated")))


def review_state(data):
    """A box's review state as FathomNet gives it: its reviewState, else VERIFIED if it says verified."""
    state = data.get("reviewState") or ("VERIFIED" if data.get("verified") else "")
    return str(state)[:40]


def _flag(value):
    return value if isinstance(value, bool) else None


def image_from_api(uuid, data):
    """An ImageInfo from FathomNet's Image JSON, refusing answers we cannot work with (UpstreamError)."""
    try:
        if not isinstance(data, dict):
            raise ValueError("the answer is not an object")
        width, height, url = data["width"], data["height"], data["url"]
        if data.get("uuid") is not None and canonical_uuid(data["uuid"]) != uuid:
            raise ValueError("the answer is about another image")
        if not all(type(side) is int and side > 0 for side in (width, height)):
            raise ValueError("width and height must be positive integers")
        if not isinstance(url, str) or not url:
            raise ValueError("url must be a string")
        boxes = data.get("boundingBoxes") or []
        if not isinstance(boxes, list):
            raise ValueError("boundingBoxes must be a list")
    except (KeyError, TypeError, ValueError) as error:
        log.warning("unusable metadata for image %s: %r", uuid, error)
        raise UpstreamError(f"FathomNet sent unusable metadata for image {uuid}.", uuid=uuid) from None
    sha256 = data.get("sha256")
    sha256 = sha256.lower() if isinstance(sha256, str) and sha256 else None
    return ImageInfo(uuid, url, width, height, sha256, tuple(usable_boxes(boxes, image_uuid=uuid)),
                     depth=_number(data.get("depthMeters")), latitude=_number(data.get("latitude"), 90),
                     longitude=_number(data.get("longitude"), 180), timestamp=_text(data.get("timestamp")),
                     imaging_type=_text(data.get("imagingType")), contributors=_text(data.get("contributorsEmail")))


def _number(value, bound=1e6):
    """A finite number within +-bound, or None (FathomNet leaves many of these out)."""
    if type(value) in (int, float) and math.isfinite(value) and abs(value) <= bound:
        return value
    return None


def _text(value, limit=256):
    return value[:limit] if isinstance(value, str) and value else None


def usable_boxes(items, image_uuid=None):
    """The BoxInfos of the items that are usable; an unusable one is logged and left out, not fatal."""
    for item in items:
        try:
            yield box_from_api(item, image_uuid=image_uuid)
        except UpstreamError:
            continue


# BoxQuery's fields as FathomNet's box query (BoundingBoxConstraints) names them.
CONSTRAINT_NAMES = {
    "concept": "concept", "taxa_provider": "taxaProviderName", "min_depth": "minDepth", "max_depth": "maxDepth",
    "min_latitude": "minLatitude", "max_latitude": "maxLatitude", "min_longitude": "minLongitude",
    "max_longitude": "maxLongitude", "start_timestamp": "startTimestamp", "end_timestamp": "endTimestamp",
    "include_verified": "includeVerified", "include_unverified": "includeUnverified",
    "include_rejected": "includeRejected", "include_unknown": "includeUnknown",
}


def box_constraints(query):
    """The JSON body of FathomNet's box query for a BoxQuery: the constraints it sets, by FathomNet's names."""
    return {name: getattr(query, field) for field, name in CONSTRAINT_NAMES.items()
            if getattr(query, field) is not None}


def origin(url):
    """(scheme, host, port) of a URL, the port filled in from the scheme."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL at all (an unclosed IPv6 bracket, ...)
        return "", "", None
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        port = None
    return scheme, (parts.hostname or "").lower(), port


def as_sent(url):
    """The URL as requests sends it, or None if it cannot be sent.

    Its parser, not urlsplit's, picks the host it connects to: 'http://a\\@b/' goes to a, though
    urlsplit reads host b. An origin is checked on this form, so the two never disagree.
    """
    try:
        return requests.Request("GET", url).prepare().url
    except (requests.RequestException, ValueError):
        return None


def allowed_origins(hosts):
    """The (host, port) pairs images may come from: 'host' means its default ports, 'host:port' that port."""
    allowed = set()
    for entry in hosts:
        parts = urlsplit(f"//{entry}")
        host = (parts.hostname or "").lower()
        allowed |= {(host, parts.port)} if parts.port else {(host, port) for port in DEFAULT_PORTS.values()}
    return frozenset(allowed)


class FathomNetClient:
    """FathomNet's API and image hosts, within the limits the settings set."""

    def __init__(self, settings):
        self.api_url = settings.fathomnet_api_url.rstrip("/") + "/"
        self.allowed_image_origins = allowed_origins(settings.allowed_image_hosts)
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.api_timeout = settings.api_timeout
        self.download_timeout = settings.download_timeout
        self.max_download_bytes = settings.max_download_bytes
        self.max_api_bytes = settings.max_api_bytes
        self.session = requests.Session()
        # Retry only what is safe and cheap to retry: refused connections and 5xx answers.
        # A read timeout is not retried: it already cost the whole timeout once.
        retry = Retry(
            total=settings.upstream_retries, connect=settings.upstream_retries, read=False,
            status=settings.upstream_retries, status_forcelist=(500, 502, 503, 504),
            allowed_methods=frozenset({"GET", "POST"}), backoff_factor=0.1,
            raise_on_status=False, respect_retry_after_header=False, redirect=False,
        )
        adapter = DeadlineAdapter(max_retries=retry, pool_maxsize=32)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.probe = requests.Session()  # no retries: a probe must answer within its timeout
        self.probe.mount("http://", DeadlineAdapter(max_retries=0))
        self.probe.mount("https://", DeadlineAdapter(max_retries=0))

    # -- the API

    def image(self, uuid):
        """Look up one image's metadata."""
        found = self._api("GET", f"images/{quote(uuid)}", f"image {uuid}", call="image")
        if found is NOT_FOUND:
            raise ImageNotFoundError(f"FathomNet has no image with uuid {uuid}.", uuid=uuid)
        return image_from_api(uuid, found)

    def images(self, uuids):
        """Look up many images in one call: uuid -> ImageInfo, or the UpstreamError of that image alone.

        Unknown uuids are absent from the answer.
        """
        uuids = [uuid.lower() for uuid in uuids]
        answer = self._api("POST", "images/query/uuids", "images", json=uuids, call="images")
        if not isinstance(answer, list):
            raise UpstreamError("FathomNet answered an image query with something that is not a list.")
        found = {}
        for item in answer:
            try:
                uuid = canonical_uuid(item["uuid"])
            except (KeyError, TypeError, ValueError):
                continue
            if uuid in uuids and uuid not in found:
                try:
                    found[uuid] = image_from_api(uuid, item)
                except UpstreamError as error:  # one image's bad metadata is that image's problem only
                    found[uuid] = error
        return found

    def bounding_box(self, uuid):
        """Look up one annotation, or None if FathomNet has none with that uuid."""
        found = self._api("GET", f"boundingboxes/{quote(uuid)}", f"bounding box {uuid}", call="bounding_box")
        if found is NOT_FOUND:
            return None
        box = box_from_api(found)
        if box.uuid != uuid:  # neither this crop nor the other box's record may come from it
            log.warning("FathomNet answered a lookup of bounding box %s with box %s", uuid, box.uuid)
            raise UpstreamError(f"FathomNet answered a lookup of bounding box {uuid} with another box.")
        return box

    def boxes(self, query, limit, offset):
        """A page of the boxes a BoxQuery matches, in FathomNet's order, as fathomnet-py's find() asks."""
        constraints = {**box_constraints(query), "limit": limit, "offset": offset}
        what = f"boxes of {query.concept!r}"
        page = self._api("POST", "boundingboxes/query", what, json=constraints, call="concept")
        content = page.get("content") if isinstance(page, dict) else page
        if not isinstance(content, list):
            raise UpstreamError(f"FathomNet answered a query for {what} with something unusable.")
        content = content[:limit]  # a page is never longer than asked for, whatever FathomNet sends
        boxes = list(usable_boxes(content))
        total = page.get("totalSize") if isinstance(page, dict) else None
        if type(total) is not int:  # not a bool either
            counted = self._api("POST", "boundingboxes/query/count", what, json=box_constraints(query),
                                call="concept_count")
            total = counted.get("count") if isinstance(counted, dict) else None
        if type(total) is not int or total < 0:
            raise UpstreamError(f"FathomNet did not say how many {what} there are.")
        # The boxes it sent are there, whatever the count says.
        return BoxPage(boxes, max(total, offset + len(content)), len(content))

    def concepts(self):
        """Every concept name FathomNet has boxes of (fathomnet-py's boundingboxes.find_concepts)."""
        names = self._api("GET", "boundingboxes/list/concepts", "its concepts", call="concepts")
        if not isinstance(names, list):
            raise UpstreamError("FathomNet answered the list of concepts with something that is not a list.")
        return [name for name in names if isinstance(name, str) and 0 < len(name) <= 256]

    def taxa(self, concept, provider):
        """The concept and its descendants in a provider's taxonomy (fathomnet-py's taxa.find_taxa)."""
        what = f"the taxa under {concept!r}"
        found = self._api("GET", f"taxa/query/{quote(provider, safe='')}/{quote(concept, safe='')}", what,
                          call="taxa")
        if found is NOT_FOUND:
            return []
        if not isinstance(found, list):
            raise UpstreamError(f"FathomNet answered a query for {what} with something that is not a list.")
        names = [item.get("name") for item in found if isinstance(item, dict)]
        return [name for name in names if isinstance(name, str) and 0 < len(name) <= 256]

    def _api(self, method, path, what, call, **kwargs):
        """The JSON of an API answer (NOT_FOUND for a 404), within the API's deadline and size cap."""
        with metrics.upstream_call(call) as counted:
            found = self._api_json(method, urljoin(self.api_url, path), what, **kwargs)
            if found is NOT_FOUND:
                counted.outcome = "not_found"
            return found

    def _api_json(self, method, url, what, **kwargs):
        with deadline(self.api_timeout) as call:
            try:
                response = self._follow_within_origin(method, url, what, **kwargs)
                with response:
                    if response.status_code == 404:
                        return NOT_FOUND
                    if not response.ok:
                        raise UpstreamError(f"FathomNet answered {response.status_code} about {what}.",
                                            status=response.status_code)
                    body = self._read(response, self.max_api_bytes, self._api_too_big(what))
            except requests.RequestException as error:
                raise self._failure(error, call, "FathomNet", f" about {what}") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than any real answer
            message = f"FathomNet sent something that is not JSON, or nests too deep, about {what}."
            raise UpstreamError(message) from None

    def _follow_within_origin(self, method, url, what, **kwargs):
        """Send the request, following redirects only within the API's own scheme, host and port."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False,
                                            stream=True, headers={"Accept-Encoding": "gzip, deflate"}, **kwargs)
            if not response.is_redirect:
                return response
            target = as_sent(urljoin(url, response.headers.get("Location", ""))) or ""
            response.close()
            if origin(target) != origin(self.api_url):
                log.warning("FathomNet redirected %s to %s, outside its origin", url, target)
                raise UpstreamError(f"FathomNet redirected a request about {what} away from its own address.")
            url = target
        raise UpstreamError(f"FathomNet redirected a request about {what} too many times.")

    def _api_too_big(self, what):
        return UpstreamError(f"FathomNet's answer about {what} is larger than {self.max_api_bytes} bytes.")

    # -- the image host

    def download(self, url, out):
        """Stream an image into the file out, within the size and time limits; return its sha256 hex."""
        with metrics.upstream_call("download"):
            return self._download(url, out)

    def _download(self, url, out):
        digest = hashlib.sha256()
        with deadline(self.download_timeout) as call:
            try:
                with self._open_image(url) as response:
                    declared = response.headers.get("Content-Length", "")
                    if declared.isascii() and declared.isdigit() and int(declared) > self.max_download_bytes:
                        raise self._image_too_big()
                    for chunk in self._chunks(response, self.max_download_bytes, self._image_too_big()):
                        digest.update(chunk)
                        out.write(chunk)
                        metrics.downloaded(len(chunk))
            except requests.RequestException as error:
                raise self._failure(error, call, "The image host") from None
        return digest.hexdigest()

    def _open_image(self, url):
        """GET url, following redirects only to allowed hosts and ports (URLs with %20 are sent as given)."""
        for _ in range(MAX_REDIRECTS + 1):
            url = self._check_image_origin(url)
            response = self.session.get(url, stream=True, timeout=self.timeout, allow_redirects=False,
                                        headers={"Accept-Encoding": "identity"})  # images are compressed already
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location", ""))
                response.close()
                continue
            if not response.ok:
                response.close()
                raise UpstreamError(f"The image host answered {response.status_code}.", status=response.status_code)
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                response.close()  # an image needs no second compression; inflating one is only a risk
                raise UpstreamError("The image host sent a compressed answer that was not asked for.")
            content_type = response.headers.get("Content-Type", "").lower()
            if content_type and not content_type.startswith(("image/", "application/octet-stream")):
                response.close()
                raise UpstreamError("The image host sent something that is not an image.",
                                    content_type=content_type[:100])
            return response
        raise UpstreamError("The image host redirected too many times.")

    def _check_image_origin(self, url):
        """The URL to send, if it goes to an allowed host and port."""
        sent = as_sent(url)
        scheme, host, port = origin(sent or "")
        if scheme not in DEFAULT_PORTS or (host, port) not in self.allowed_image_origins:
            raise UpstreamError(
                "FathomNet pointed at an image on a host that is not an allowed image host.",
                host=host[:255] or None, port=port,
            )
        return sent

    def _image_too_big(self):
        return ImageTooLargeError(
            f"The image file is larger than the {self.max_download_bytes} bytes this server downloads.",
            max_bytes=self.max_download_bytes,
        )

    # -- shared

    @staticmethod
    def _chunks(response, cap, too_big):
        """The body in pieces, inflated if it was compressed (urllib3 inflates in bounded steps), up to cap bytes."""
        received = 0
        for chunk in response.iter_content(CHUNK_BYTES):
            received += len(chunk)
            if received > cap:
                raise too_big
            yield chunk

    def _read(self, response, cap, too_big):
        return b"".join(self._chunks(response, cap, too_big))

    @staticmethod
    def _failure(error, call, who, about=""):
        """The CropperError for a failed call, in words; the exception's own text goes to the log only."""
        log.warning("%s%s failed: %r", who, about, error)
        if call.expired or isinstance(error, requests.Timeout):
            return UpstreamTimeoutError(f"{who} did not answer in time{about}.")
        if isinstance(error, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return UpstreamError(f"{who} could not be reached, or broke off its answer{about}.")
        return UpstreamError(f"{who} sent an answer that could not be read{about}.")

    def ping(self, timeout):
        """Return None if the API answers (any status under 500) within timeout, else why not."""
        try:
            with deadline(timeout) as call, self.probe.get(self.api_url, timeout=timeout, stream=True) as response:
                status = response.status_code
        except requests.RequestException as error:
            expired = call.expired or isinstance(error, requests.Timeout)
            return f"no answer within {timeout} s" if expired else f"unreachable: {type(error).__name__}"
        return f"answered {status}" if status >= 500 else None
