"""Upstream: where images and their annotations come from, behind one written interface.

An `ImageSource` answers what the service asks of an image database (an image's record, many at
once, an annotation, a page of annotations under constraints, the concept names, a taxonomy) and
downloads an image's bytes. It speaks in the records below and in error meanings (ImageNotFoundError,
UpstreamError, UpstreamTimeoutError), never in HTTP. `FathomNetClient` (fathomnet.py) is one; a test,
or a lab's own folder of images, can be another: `create_app(settings, source=...)`.
"""

from dataclasses import asdict, dataclass, fields
from typing import BinaryIO, NamedTuple, Protocol

from ..crops import Box


@dataclass(frozen=True)
class BoxInfo:
    """An annotation: a box on an image, with its concept (the taxon's name)."""

    uuid: str
    image_uuid: str
    concept: str
    x: int  # the box as the source has it; some reach past the image's edges
    y: int
    width: int
    height: int
    review: str = ""  # the review state (VERIFIED, UNVERIFIED, REJECTED, ...), as the source says
    occluded: bool | None = None  # None: the source does not say
    truncated: bool | None = None

    @property
    def box(self):
        """The box as x1, y1, x2, y2."""
        return Box(self.x, self.y, self.x + self.width, self.y + self.height)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Read back what to_dict() stored (fields an older version did not keep take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class ImageInfo:
    """What is known of an image: where its bytes are, its size, its annotations, where and when it was taken."""

    uuid: str
    url: str
    width: int
    height: int
    sha256: str | None = None
    boxes: tuple | None = None  # its BoxInfos; None when not known (metadata stored before they were kept)
    depth: float | None = None  # metres below the surface
    latitude: float | None = None
    longitude: float | None = None
    timestamp: str | None = None  # ISO 8601, as the source gives it
    imaging_type: str | None = None  # e.g. "ROV", as the source names it
    contributors: str | None = None  # the contributors' e-mail addresses, as the source lists them

    @property
    def size(self):
        return self.width, self.height

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Read back what to_dict() stored (fields an older version did not keep take their defaults)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        boxes = values.get("boxes")
        values["boxes"] = None if boxes is None else tuple(BoxInfo.from_dict(box) for box in boxes)
        return cls(**values)


@dataclass(frozen=True)
class BoxQuery:
    """Which annotations to list: a concept, and the constraints the source's box query takes.

    None leaves a constraint to the source's default (for the review states: verified and
    unverified in, rejected out, as FathomNet does).
    """

    concept: str
    taxa_provider: str | None = None  # set: the concept's descendants in this provider's taxonomy too
    min_depth: float | None = None
    max_depth: float | None = None
    min_latitude: float | None = None
    max_latitude: float | None = None
    min_longitude: float | None = None
    max_longitude: float | None = None
    start_timestamp: str | None = None
    end_timestamp: str | None = None
    include_verified: bool | None = None
    include_unverified: bool | None = None
    include_rejected: bool | None = None
    include_unknown: bool | None = None


class BoxPage(NamedTuple):
    """A page of annotations: the usable ones, how many match in all, and how many the page held."""

    boxes: list
    total: int
    received: int


class ImageSource(Protocol):
    """An image database: records of images and annotations, and the images' bytes."""

    def image(self, uuid: str) -> ImageInfo:
        """One image's record; ImageNotFoundError if there is none."""

    def images(self, uuids: list) -> dict:
        """Many images' records at once: uuid -> ImageInfo, or the CropperError of that image alone;
        unknown uuids are left out."""

    def bounding_box(self, uuid: str) -> BoxInfo | None:
        """One annotation, or None if there is none with that uuid."""

    def boxes(self, query: BoxQuery, limit: int, offset: int) -> BoxPage:
        """A page of the annotations a query matches, in a stable order."""

    def concepts(self) -> list:
        """Every concept name that has annotations."""

    def taxa(self, concept: str, provider: str) -> list:
        """The concept and every concept below it in the provider's taxonomy ([] if the concept is unknown)."""

    def download(self, url: str, out: BinaryIO) -> str:
        """Write the bytes of an image's url into out, within the size and time limits; return their sha256."""

    def ping(self, timeout: float) -> str | None:
        """None if the source answers within timeout, else why not (for /readyz)."""
