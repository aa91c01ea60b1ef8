"""Data-set jobs (docs/datasets.md): follow one to its end, then fetch its files, checked, and unpack them.

A file is fetched into `<name>.<sha256 prefix>.part` beside its place and renamed once its size and
sha256 are the service's. A part left by a download cut short (a dropped connection, Ctrl-C, a host
that went down) is resumed with an HTTP Range where it stopped; its name holds the file's sha256,
so a part of another data set's file of the same name is never taken for this one's.
"""

from __future__ import annotations

import hashlib
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from .errors import ConnectionFailedError, CropperError, DatasetFileError, GoneError, RequestTimeoutError, error_of
from .progress import progress

if TYPE_CHECKING:
    from .client import Cropper

ENDED = ("done", "failed", "cancelled")
WAIT_TIMEOUT = 24 * 3600  # far past a 10,000-box job; a bound all the same, so a stuck job cannot hang a script
CHUNK = 1 << 20  # bytes read from disk at once
# Bytes read from the network at once: a read cut short by a dropped connection is lost whole, so a
# small one loses little of what came.
NETWORK_CHUNK = 1 << 16


@dataclass(frozen=True)
class DatasetFile:
    """A finished data set's file: imagefolder.zip, or a WebDataset shard (split, samples) kept as it is."""

    name: str
    format: str
    url: str
    size: int
    sha256: str
    split: str | None = None
    samples: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetFile:
        return cls(name=data["name"], format=data["format"], url=data["url"], size=data["size"],
                   sha256=data["sha256"], split=data.get("split"), samples=data.get("samples"))

    @property
    def part_name(self) -> str:
        """The name it has while it is being fetched."""
        return f"{self.name}.{self.sha256[:12]}.part"


class DatasetJob:
    """A data-set job, as the service last answered about it; refresh() asks again."""

    def __init__(self, client: Cropper, answer: Mapping[str, Any]):
        self._client = client
        self._take(answer)

    def __repr__(self) -> str:
        return f"<DatasetJob {self.id} {self.status}>"

    def _take(self, answer: Mapping[str, Any]) -> None:
        # A new job's answer (202) has only id, url and status; the rest comes with the first refresh.
        self.answer = dict(answer)
        self.id: str = answer["id"]
        self.url: str = answer["url"]
        self.status: str = answer["status"]
        self.progress: dict[str, Any] = answer.get("progress") or {}
        self.request: dict[str, Any] = answer.get("request") or {}
        self.created: str | None = answer.get("created")
        self.started: str | None = answer.get("started")
        self.finished: str | None = answer.get("finished")
        self.error: dict[str, Any] | None = answer.get("error")
        self.files = tuple(DatasetFile.from_json(file) for file in answer.get("files") or ())
        self.counts: dict[str, dict[str, int]] = answer.get("counts") or {}

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def refresh(self) -> DatasetJob:
        """Ask the service how the job is; once cancelled (its answer a 410 since), its status is "cancelled"."""
        try:
            self._take(self._client._json("GET", f"/datasets/{self.id}"))
        except GoneError as gone:
            if gone.details.get("status") != "cancelled":
                raise  # a finished data set removed or expired: its files are gone, which is not "done"
            self.status = "cancelled"
        return self

    def cancel(self) -> DatasetJob:
        """Cancel the job if it is queued or running, or remove its files if it is finished."""
        self._take(self._client._json("DELETE", f"/datasets/{self.id}"))
        return self

    def wait(self, timeout: float = WAIT_TIMEOUT, poll: float = 1.0, progress_bar: bool = True) -> DatasetJob:
        """Follow the job until it is done, failed or cancelled (a tqdm bar of its crops when progress_bar and
        tqdm is installed); RequestTimeoutError after timeout seconds, the job going on regardless."""
        deadline = time.monotonic() + timeout
        with progress(progress_bar, "crop") as bar:
            while True:
                self.refresh()
                bar.total(self.progress.get("boxes_total"))  # None while FathomNet's boxes are listed
                bar.show(self.progress.get("crops_done", 0) + self.progress.get("crops_failed", 0), self.status)
                if self.ended:
                    return self
                if time.monotonic() >= deadline:
                    raise RequestTimeoutError(None, "wait_timeout", f"Data set {self.id} is still {self.status} "
                                              f"after {timeout:g} s; it goes on (GET {self.url}).")
                time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def download(self, folder: str | Path, unpack: bool = True, progress_bar: bool = True) -> Path:
        """Fetch every file of the finished data set into folder, each checked against its sha256, and unpack
        imagefolder.zip there (the zip stays, so fetching again finds it whole). Returns folder."""
        if self.status != "done":
            why = f": {self.error['code']}: {self.error['message']}" if self.error else ""
            raise CropperError(None, "dataset_not_done", f"Data set {self.id} is {self.status}{why}; only a done "
                                                         "one has files.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for file in self.files:
            path = fetch(self._client, file, folder / file.name, progress_bar)
            if unpack and file.format == "imagefolder":
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(folder)  # files created as open() creates them: the umask applies
        return folder


def fetch(client: Cropper, file: DatasetFile, path: Path, progress_bar: bool = True) -> Path:
    """Save file at path, its size and sha256 checked; resume the part a download cut short left.

    A dropped connection is resumed where it stopped, at most client.retries times; a file whose size or
    sha256 is not the one the service lists is a DatasetFileError, and its part is removed.
    """
    if path.is_file() and path.stat().st_size == file.size and sha256_of(path) == file.sha256:
        return path  # fetched whole before
    part = path.with_name(file.part_name)
    with progress(progress_bar, "B", file.size) as bar:
        for attempt in range(client.retries + 1):
            have = part.stat().st_size if part.exists() else 0
            bar.show(have, file.name)
            if have >= file.size:
                break
            try:
                _fetch_rest(client, file, part, have, bar)
                break
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
                if attempt == client.retries:
                    raise ConnectionFailedError(None, "connection_error", f"GET {file.url} failed: {error}; "
                                                f"{part} holds what came, and fetching again resumes it.") from error
            except requests.Timeout as error:
                raise RequestTimeoutError(None, "timeout", f"GET {file.url}: nothing came within {client.timeout} s; "
                                          f"{part} holds what came, and fetching again resumes it.") from error
            time.sleep(min(client.backoff * 2**attempt, client.max_wait))
    size = part.stat().st_size
    digest = sha256_of(part) if size == file.size else None
    if digest != file.sha256:
        part.unlink()  # what came is wrong: fetching again starts over
        found = f"sha256 {digest}" if digest else f"{size} bytes"
        raise DatasetFileError(None, "sha256_mismatch", f"{file.name}: the download has {found}; the service lists "
                               f"{file.size} bytes of sha256 {file.sha256}. It was not kept.",
                               {"file": file.name, "url": file.url})
    part.replace(path)
    return path


def _fetch_rest(client: Cropper, file: DatasetFile, part: Path, have: int, bar: Any) -> None:
    """Append file's bytes from offset have to part (or write them all, if the server sends the whole file)."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.session.get(file.url, headers=headers, stream=True, timeout=client.timeout) as response:
        if response.status_code == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            mode = "ab"
        elif response.status_code == 200:  # the whole file: a server that ignores Range starts it over
            mode, have = "wb", 0
            bar.show(0, file.name)
        else:
            raise error_of(response)
        with open(part, mode) as out:  # created as open() creates any file: the umask applies
            for chunk in response.iter_content(NETWORK_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
