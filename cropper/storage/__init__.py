"""Storage: where crops and what makes them are kept, behind two written interfaces.

- A `CropStore` keeps finished crops, write-once, named by `Crop.store_path`: `FileCropStore`
  (this host's folder, which nginx serves) or `S3CropStore` (a bucket every host shares).
- A `SourceStore` keeps what one host needs per FathomNet image to make crops: the image's
  metadata, its annotations, its decoded pixels. `FileSourceStore`, always local.
- A `DatasetStore` keeps the files of finished data sets (zips, shards), served as crops are:
  `FileDatasetStore` (this host's folder, which nginx serves).

Both also purge what they hold of one image (or box) at an operator's word or FathomNet's
(cropper/purges.py), and the crop store keeps the list of purges every host applies.

Both are `Evictable`: eviction (eviction.py) keeps either within its budget through the same few
methods, and the contract tests (tests/storage/test_contract.py) run every implementation through
the same expectations. A new backend is a module in this folder implementing the interface, and
one line in `cropper/wiring.py`'s table of backends.
"""

import json
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from .. import crops
from ..crops import UUID, Crop

PURGE_ID = re.compile(r"[0-9a-z-]{1,64}")  # what a purge's id may be: it names a file or an object
PURGE_BYTES = 64 * 1024  # a recorded purge is far smaller: more is not one of ours


def checked_purge_id(purge):
    """The id of a purge to record, refused unless it may name a file or an object."""
    if not PURGE_ID.fullmatch(str(purge.get("id", ""))):
        raise ValueError(f"not a purge's id: {purge.get('id')!r}")
    return purge["id"]


def read_purge(file):
    """The purge a recorded file holds (read at most PURGE_BYTES), or None if it is larger or not one."""
    data = file.read(PURGE_BYTES + 1)
    try:
        purge = json.loads(data) if len(data) <= PURGE_BYTES else None
    except ValueError:
        return None
    return purge if isinstance(purge, dict) else None


def check_uuid(uuid):
    """Refuse anything but an image's canonical uuid where it names what to remove (a path, a key prefix)."""
    if not isinstance(uuid, str) or not re.fullmatch(UUID, uuid):
        raise ValueError(f"not an image's uuid: {uuid!r}")


@dataclass
class Entry:
    """One evictable unit: a crop, or an image's metadata and pixels together."""

    key: object  # the Crop, or the image's uuid
    paths: list  # where its parts are: file paths, or object keys
    size: int  # bytes it takes (on disk: allocated blocks, which is what fills a disk)
    last_used: float


@dataclass
class TempFile:
    """A temp file a killed writer left behind."""

    path: str
    modified: float


@dataclass
class Listing:
    """Everything a store holds, measured."""

    entries: list = field(default_factory=list)
    temp_files: list = field(default_factory=list)
    superseded: list = field(default_factory=list)  # Entries under names an earlier version used (crops.py)

    @property
    def size(self):
        return sum(entry.size for entry in self.entries)

    def add_crop(self, store_path, paths, size, last_used):
        """Count a stored file by its store path: a crop, one an earlier version named otherwise, or neither."""
        if crop := crops.parse_store_path(store_path):
            self.entries.append(Entry(crop, paths, size, last_used))
        elif crop := crops.superseded_store_path(store_path):
            self.superseded.append(Entry(crop, paths, size, last_used))


@dataclass(frozen=True)
class Removed:
    """What a purge removed from one place: files (or objects) and their bytes."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other):
        return Removed(self.files + other.files, self.bytes + other.bytes)

    def to_dict(self):
        return {"files": self.files, "bytes": self.bytes}


@dataclass(frozen=True)
class OpenedCrop:
    """A stored crop opened for sending: its bytes as a file, and what HTTP caching needs."""

    file: BinaryIO
    size: int
    modified: float
    etag: str | None = None  # the store's own, when it has one (S3): what nginx passes on when it serves the crop


class Evictable(Protocol):
    """What eviction needs of a store."""

    name: str  # in logs, metrics and errors: "crop cache", "crop store", "image source cache"
    shared: bool  # kept by every host together: only one designated host's pruner evicts it

    def count(self, nbytes: int) -> int:
        """Add nbytes (or take away, or 0 to read) to the bytes the store counts it holds; return the total.

        A store shared by every host counts nothing here (0): one pruner measures it by listing.
        """

    def listing(self) -> Listing:
        """Every entry, left-over temp file and file an earlier version named otherwise, measured."""

    def remove(self, entry: Entry) -> bool:
        """Remove an entry unless it is in use (being made, or read); True if it is gone."""

    def remove_temp_file(self, temp: TempFile) -> None:
        """Remove a temp file a killed writer left."""

    def evicting(self) -> AbstractContextManager:
        """Held while evicting: one evictor at a time per store; BusyError at once if another holds it."""


class CropStore(Evictable, Protocol):
    """Finished crops, write-once: a crop's name names its bytes, which never change."""

    def find(self, crop: Crop) -> bool:
        """True if the crop is stored (and mark it used, where the store ranks by use)."""

    def open(self, crop: Crop) -> OpenedCrop | None:
        """The stored crop opened for reading, or None."""

    def put(self, crop: Crop, data: bytes) -> None:
        """Store the crop's bytes, whole or not at all; a crop already stored stays as it is."""

    def lock(self, crop: Crop, timeout: float | None = None) -> AbstractContextManager:
        """Held while the crop is made (or removed), so identical work runs once; BusyError after timeout."""

    def readiness_problem(self) -> str | None:
        """None if the store can be used now, else why not (for /readyz), within READY_TIMEOUT."""

    def unreachable(self, why: str) -> None:
        """This host's nginx could not reach the store (why): fail at once from now on, as a call that
        timed out here would have made it. A store on this host's own disk has nothing to do."""
    def remove_image(self, uuid: str) -> Removed:
        """Remove every crop of an image, in every family, size and format; nothing stored is no error."""

    def record_purge(self, purge: dict) -> None:
        """Add a purge to the list every host applies (purge["id"] orders and names it)."""

    def purges(self, known: frozenset = frozenset()) -> list:
        """Every purge recorded but those whose id is in known, oldest first (an unreadable one is left out)."""


class SourceStore(Evictable, Protocol):
    """Per image: FathomNet's metadata and the decoded pixels; per annotation: its box. This host's only."""

    def lock(self, uuid: str, timeout: float | None = None) -> AbstractContextManager:
        """Held while an image's (or a box's) metadata or pixels are fetched, or removed."""

    def read_info(self, uuid: str) -> dict | None:
        """The image's stored metadata, or None (also when what is stored is damaged)."""

    def write_info(self, uuid: str, info: dict) -> None: ...

    def forget_info(self, uuid: str) -> None:
        """Drop the image's metadata, so the next use asks FathomNet again."""

    def records(self, kind: str):
        """(uuid, dict) of every stored record of a kind: "info" (images) or "box" (annotations)."""

    def remove_image(self, uuid: str) -> Removed:
        """Remove the image's metadata and pixels, after a while for readers of its pixels to finish."""

    def forget_box(self, box_uuid: str) -> Removed: ...

    def read_withdrawn(self, uuid: str) -> float | None:
        """When FathomNet was last found not to have the image any more, or None. Never evicted."""

    def write_withdrawn(self, uuid: str, when: float) -> None: ...

    def forget_withdrawn(self, uuid: str) -> None: ...

    def purges_applied(self) -> set:
        """The ids of the purges this host has applied."""

    def note_purge_applied(self, purge_id: str) -> None: ...

    def read_box(self, box_uuid: str) -> dict | None: ...

    def read_document(self, name: str) -> dict | None:
        """A document remembered under a name (e.g. the list of concepts), or None."""

    def write_document(self, name: str, document: dict) -> None: ...

    def write_box(self, box_uuid: str, box: dict) -> None: ...

    def open_pixels(self, uuid: str):
        """The image's decoded pixels (an imaging.RawImage, closed by the caller), or None."""

    def new_pixels(self, uuid: str) -> AbstractContextManager:
        """A file to write the image's raw pixels into; stored once the block ends without error."""

    def scratch_file(self) -> AbstractContextManager:
        """A temp file for a download, gone when the block ends."""

    def readiness_problem(self, min_free_bytes: int) -> str | None:
        """None if files can be written with min_free_bytes to spare, else why not."""

    def sole_pruner(self) -> AbstractContextManager:
        """Held by the one process that prunes this host's cache folder; BusyError at once if another does."""


@dataclass
class NewFile:
    """A file being written into a store: write to .file; once stored, its size and sha256."""

    file: BinaryIO
    size: int = 0
    sha256: str = ""


class DatasetStore(Protocol):
    """The files of finished data sets, each stored whole, named by its job and its name."""

    shared: bool

    def new_file(self, job_id: str, name: str) -> AbstractContextManager:
        """A NewFile to write the job's file into; stored whole (and measured) when the block ends without error,
        never seen half-written."""

    def remove(self, job_id: str) -> int:
        """Remove every file of a job (whatever is half-made); return the bytes freed."""

    def url_path(self, job_id: str, name: str) -> str:
        """The path of the file's public URL."""

    def open_file(self, job_id: str, name: str):
        """(the stored file opened for reading, its size), or None: for the app, when nginx does not serve it."""


class JobStore(Protocol):
    """Data-set job records (dicts), by job id, with an index of requests' fingerprints to their latest job."""

    def get(self, job_id: str) -> dict | None: ...

    def put(self, job_id: str, record: dict) -> None:
        """Store a record whole (a reader sees the old one or the new one)."""

    def delete(self, job_id: str) -> None: ...

    def all(self):
        """Every record."""

    def lock(self, name: str) -> AbstractContextManager:
        """Held while a job's record (or a fingerprint's) is read, changed and written back."""

    def job_of(self, key: str) -> str | None: ...

    def remember(self, key: str, job_id: str) -> None: ...

    def beat(self) -> None:
        """Say this host's data-set worker is alive."""

    def heartbeat_age(self) -> float | None:
        """Seconds since this host's worker said it is alive, or None if it never did."""

    def readiness_problem(self) -> str | None:
        """None if the records can be reached (a shared store: Redis), else why not."""
