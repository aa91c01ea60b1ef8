"""The HTTP client: one method per endpoint, typed answers, the service's errors as exceptions, retries."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack
from urllib.parse import quote

import requests

from .datasets import DatasetJob
from .errors import ConnectionFailedError, CropperError, RequestTimeoutError, error_of, retry_after_of
from .files import written_aside

__version__ = "0.1.0"
DEFAULT_URL = "http://127.0.0.1:8080"
# 429 (nginx's rate limit) and 503 (busy) say "come back after Retry-After". nginx's 502
# service_unavailable means Gunicorn dropped the request (a worker died): docs/operations.md's advice is to
# retry, which is safe because every call here is idempotent (the same body names the same crop).
RETRY_STATUSES = frozenset({429, 503})
RETRY_CODES = frozenset({"service_unavailable"})


class CropOptions(TypedDict, total=False):
    """Every crop option, by the service's names; an option left out takes the service's default."""

    pad: int | str  # pixels on each side, or a percentage of the box ("10%")
    square: bool
    width: int
    height: int
    fit: str  # contain (default), cover, fill, letterbox; needs width and height
    enlarge: bool
    background: str  # "#rrggbb", with fit letterbox
    quality: int  # 1-100, webp and jpeg
    format: str  # webp (default), jpeg (jpg), png


OPTIONS = frozenset(CropOptions.__annotations__)


def _names(names: str | Iterable[str]) -> list[str]:
    """A list of names, from one name or many (a lone string is one name, not its letters)."""
    return [names] if isinstance(names, str) else list(names)


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options to send: known names only (a typo is a TypeError here, not a 422 later), None left out."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(f"unknown crop option(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(OPTIONS))}")
    return {name: value for name, value in options.items() if value is not None}


# -- answers

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class CropResult:
    """A crop made (or found made): where it is, what was asked (box), what was cut (region), the output."""

    url: str
    uuid: str
    box: Box
    region: Box
    width: int
    height: int
    format: str
    cached: bool
    box_uuid: str | None = None  # for a crop of a FathomNet annotation
    concept: str | None = None
    ok = True  # so a batch's results can be split without isinstance

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CropResult:
        return cls(url=data["url"], uuid=data["uuid"], box=tuple(data["box"]), region=tuple(data["region"]),
                   width=data["width"], height=data["height"], format=data["format"], cached=data["cached"],
                   box_uuid=data.get("box_uuid"), concept=data.get("concept"))

    @property
    def filename(self) -> str:
        """The file name in the crop's URL (unique within its image)."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CropFailure:
    """An item of a batch or a concept page that failed, and why; the other items are not affected."""

    uuid: str | None
    box: tuple[int | None, ...] | None  # as the service echoes it (None where a value was not valid)
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    box_uuid: str | None = None
    ok = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CropFailure:
        error = data["error"]
        box = data.get("box")
        return cls(uuid=data.get("uuid"), box=tuple(box) if box is not None else None, code=error["code"],
                   message=error["message"], details=error.get("details") or {}, box_uuid=data.get("box_uuid"))


def _result(data: Mapping[str, Any]) -> CropResult | CropFailure:
    return CropFailure.from_json(data) if "error" in data else CropResult.from_json(data)


@dataclass(frozen=True)
class ConceptPage:
    crops: tuple[CropResult | CropFailure, ...]
    next_offset: int | None  # None: this was the last page
    total: int  # boxes of the concept in FathomNet


@dataclass(frozen=True)
class Annotation:
    """One of an image's FathomNet boxes, with the region and URL of its default crop."""

    box_uuid: str
    concept: str
    review: str
    box: Box  # as FathomNet has it (it may reach past the image's edges)
    region: Box | None  # clamped to the image; None when the box lies entirely outside it
    request: dict[str, Any]  # the body that crops it
    url: str | None


@dataclass(frozen=True)
class ImageBoxes:
    uuid: str
    width: int
    height: int
    boxes: tuple[Annotation, ...]


@dataclass(frozen=True)
class CropRequest:
    """One crop of a batch: an image and a box, or a FathomNet annotation (box_uuid); with its own options."""

    uuid: str | None = None
    box: Box | None = None
    box_uuid: str | None = None
    options: CropOptions = field(default_factory=CropOptions)

    @classmethod
    def of(cls, uuid: str, x1: int, y1: int, x2: int, y2: int, **options: Unpack[CropOptions]) -> CropRequest:
        return cls(uuid=uuid, box=(x1, y1, x2, y2), options=options)

    @classmethod
    def of_box(cls, box_uuid: str, **options: Unpack[CropOptions]) -> CropRequest:
        return cls(box_uuid=box_uuid, options=options)

    def to_json(self) -> dict[str, Any]:
        if self.box_uuid is not None:
            body: dict[str, Any] = {"box_uuid": self.box_uuid}
        else:
            if self.uuid is None or self.box is None:
                raise ValueError("A CropRequest names a box_uuid, or a uuid and a box.")
            body = {"uuid": self.uuid, **dict(zip(("x1", "y1", "x2", "y2"), self.box, strict=True))}
        return {**body, **_options(self.options)}


# -- the client


class Cropper:
    """A client of one FathomNet Cropper service.

    Every request has a timeout (seconds, or (connect, read) as requests takes it). 429 and 503 are
    retried after their Retry-After (at most max_wait seconds each), connection failures after a
    backoff (backoff, 2 x backoff, ...), at most `retries` times; then the error is raised.
    """

    def __init__(self, base_url: str = DEFAULT_URL, timeout: float | tuple[float, float] = 30, retries: int = 3,
                 session: requests.Session | None = None, backoff: float = 0.5, max_wait: float = 30):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._own_session = session is None  # a session given is the caller's: to configure, and to close
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"fathomnet-cropper-client/{__version__}"
        self.session = session

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Cropper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints

    def crop(self, uuid: str, x1: int, y1: int, x2: int, y2: int, **options: Unpack[CropOptions]) -> CropResult:
        """Crop a box of an image (pixels in the image's grid: x1, y1 inclusive, x2, y2 exclusive)."""
        return self._crop(CropRequest.of(uuid, x1, y1, x2, y2, **options).to_json())

    def crop_box(self, box_uuid: str, **options: Unpack[CropOptions]) -> CropResult:
        """Crop a FathomNet annotation by its bounding box uuid (a box past the image's edges is clamped)."""
        return self._crop(CropRequest.of_box(box_uuid, **options).to_json())

    def _crop(self, body: dict[str, Any]) -> CropResult:
        return CropResult.from_json(self._json("POST", "/cropper/", body))

    def crop_many(self, items: Iterable[CropRequest | Mapping[str, Any]], batch_size: int = 1000,
                  **options: Unpack[CropOptions]) -> list[CropResult | CropFailure]:
        """Crop many boxes: one result per item, in order; a failed item is a CropFailure, never raised.

        options apply to the items that name none. Items go in batches of batch_size (the service's
        BATCH_MAX_CROPS is 1000 by default); any other item (a dict, or a null from a JSON file) is sent
        as it is, for the service to check and answer in place.
        """
        bodies = [item.to_json() if isinstance(item, CropRequest) else dict(item) if isinstance(item, Mapping) else item
                  for item in items]
        shared = _options(options)
        results: list[CropResult | CropFailure] = []
        for start in range(0, len(bodies), batch_size):
            answer = self._json("POST", "/cropper-list/", {"crops": bodies[start:start + batch_size], **shared})
            results += [_result(data) for data in answer]
        return results

    def crop_concept(self, concept: str, limit: int | None = None, offset: int = 0,
                     **options: Unpack[CropOptions]) -> ConceptPage:
        """Crop one page of a concept's FathomNet boxes (limit: the service's page size when None, at most 100)."""
        body: dict[str, Any] = {"concept": concept, "offset": offset, **_options(options)}
        if limit is not None:
            body["limit"] = limit
        answer = self._json("POST", "/cropper-concept/", body)
        return ConceptPage(tuple(_result(data) for data in answer["crops"]), answer["next_offset"], answer["total"])

    def iter_concept(self, concept: str, page_size: int = 100, offset: int = 0, limit: int | None = None,
                     **options: Unpack[CropOptions]) -> Iterator[ConceptPage]:
        """Every page of a concept from offset on, or the pages holding its first `limit` boxes from offset."""
        left = limit
        while left is None or left > 0:
            page = self.crop_concept(concept, page_size if left is None else min(page_size, left), offset, **options)
            yield page
            if page.next_offset is None or not page.crops:
                return
            offset = page.next_offset
            if left is not None:
                left -= len(page.crops)

    def image_boxes(self, uuid: str) -> ImageBoxes:
        """An image's FathomNet annotations, each with the region and URL of its default crop."""
        answer = self._json("GET", f"/images/{quote(uuid, safe='')}/boxes")
        boxes = tuple(Annotation(box_uuid=b["box_uuid"], concept=b["concept"], review=b["review"], box=tuple(b["box"]),
                                 region=tuple(b["region"]) if b["region"] is not None else None,
                                 request=b["request"], url=b["url"]) for b in answer["boxes"])
        return ImageBoxes(answer["uuid"], answer["width"], answer["height"], boxes)

    def dataset(self, concepts: str | Iterable[str], *, descendants: bool | None = None,
                taxa_provider: str | None = None, label: str | None = None, filters: Mapping[str, Any] | None = None,
                split: Mapping[str, float] | None = None, seed: int | None = None, max_boxes: int | None = None,
                include_contributors: bool | None = None, formats: str | Iterable[str] | None = None,
                **crop: Unpack[CropOptions]) -> DatasetJob:
        """Start a data-set job (docs/datasets.md has every field), or join the identical one queued, running or
        done; crop options go as keywords. An argument left None takes the service's default."""
        fields = {"descendants": descendants, "taxa_provider": taxa_provider, "label": label,
                  "filters": None if filters is None else dict(filters),
                  "split": None if split is None else dict(split), "seed": seed, "max_boxes": max_boxes,
                  "include_contributors": include_contributors,
                  "formats": None if formats is None else _names(formats), "crop": _options(crop) or None}
        body = {"concepts": _names(concepts), **{name: value for name, value in fields.items() if value is not None}}
        return DatasetJob(self, self._json("POST", "/datasets", body))

    def dataset_job(self, job_id: str) -> DatasetJob:
        """A data-set job by its id (GoneError once it is cancelled or its files removed)."""
        return DatasetJob(self, self._json("GET", f"/datasets/{quote(job_id, safe='')}"))

    def download(self, crop: CropResult | str, path: str | os.PathLike[str]) -> Path:
        """Save a crop's file (a result or a URL) at path; written aside first, so path is never half a file."""
        url = crop.url if isinstance(crop, CropResult) else crop
        path = Path(path)
        response = self._request("GET", url)
        if response.status_code != 200:
            raise error_of(response)
        with written_aside(path) as out:
            out.write(response.content)
        return path

    # -- HTTP

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._request(method, f"{self.base_url}{path}", body)
        if response.status_code >= 400:
            raise error_of(response)
        try:
            return response.json()
        except ValueError:
            raise CropperError(response.status_code, "bad_answer",
                               f"The service's answer to {method} {path} is not JSON.") from None

    def _request(self, method: str, url: str, body: Any = None) -> requests.Response:
        """One call, tried again while it may succeed later; the last answer (error or not) is returned."""
        attempt = 0
        while True:
            try:
                response = self.session.request(method, url, json=body, timeout=self.timeout)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                # refused, reset, a connect timeout; or dropped mid-answer (the body cut short: requests
                # raises ChunkedEncodingError for that, whatever the encoding)
                if attempt >= self.retries:
                    raise ConnectionFailedError(None, "connection_error", f"{method} {url} failed: {error}") from error
                wait = None
            except requests.Timeout as error:
                # A read timeout is not retried: the service may still be making the crop, and asking
                # again would only wait as long once more.
                raise RequestTimeoutError(None, "timeout", f"{method} {url}: no answer within {self.timeout} s.") \
                    from error
            else:
                if attempt >= self.retries or not self._retryable(response):
                    return response
                wait = retry_after_of(response)
            time.sleep(min(self.backoff * 2**attempt if wait is None else wait, self.max_wait))
            attempt += 1

    @staticmethod
    def _retryable(response: requests.Response) -> bool:
        if response.status_code in RETRY_STATUSES:
            return True
        if response.status_code == 502:
            try:
                return response.json()["error"]["code"] in RETRY_CODES
            except (ValueError, KeyError, TypeError):
                return False
        return False
