"""The service's errors as exceptions: one class per meaning, picked by an error answer's HTTP status."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import requests


class CropperError(Exception):
    """An error answer of the service ({"error": {"code", "message", "details"}}), or no answer at all.

    status is the HTTP status (None when no answer came); retry_after the seconds the service asked to
    wait (Retry-After), if any.
    """

    def __init__(self, status: int | None, code: str, message: str, details: Mapping[str, Any] | None = None,
                 retry_after: float | None = None):
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.retry_after = retry_after


class InvalidRequestError(CropperError):
    """400, 413, 415, 422: the request cannot succeed as it is (details names the fields for 422)."""


class NotFoundError(CropperError):
    """404: image_not_found, box_not_found, concept_not_found, crop_not_found, not_found."""


class GoneError(CropperError):
    """410 dataset_gone: a data set that was cancelled, removed or expired (details: status, removed)."""


class BusyError(CropperError):
    """429 (rate limit) or 503 (busy), still so after the client's retries."""


class UpstreamError(CropperError):
    """502, 504: FathomNet, the image host or the service behind nginx failed or was too slow; retry later."""


class InsufficientStorageError(CropperError):
    """507: the service's disk is full; crops already made are still served. Not worth retrying at once."""


class DatasetFileError(CropperError):
    """A data set's file whose download does not have the size or sha256 the service lists (no HTTP status)."""


class ConnectionFailedError(CropperError):
    """The service could not be reached (after the retries)."""


class RequestTimeoutError(CropperError):
    """The service did not answer within the client's timeout."""


_BY_STATUS: dict[int, type[CropperError]] = {
    400: InvalidRequestError, 413: InvalidRequestError, 414: InvalidRequestError, 415: InvalidRequestError,
    422: InvalidRequestError, 431: InvalidRequestError, 404: NotFoundError, 410: GoneError, 429: BusyError,
    503: BusyError, 502: UpstreamError, 504: UpstreamError, 507: InsufficientStorageError,
}


def error_of(response: requests.Response) -> CropperError:
    """The exception an error answer stands for; a body not in the service's shape is reported as text."""
    try:
        error = response.json()["error"]
        code, message, details = str(error["code"]), str(error["message"]), error.get("details") or {}
    except (ValueError, KeyError, TypeError):
        code, message, details = f"http_{response.status_code}", response.text.strip()[:200] or response.reason, {}
    kind = _BY_STATUS.get(response.status_code, CropperError)
    return kind(response.status_code, code, message, details, retry_after_of(response))


def retry_after_of(response: requests.Response) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
