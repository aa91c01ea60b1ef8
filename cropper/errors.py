"""The service's error meanings, the status and code each one gets, and the one error body.

Modules below the routes raise these with a meaning (not found, upstream down, ...); this module
says which HTTP status and code each meaning gets and how its body looks, in plain Python (the
HTTP layer, cropper/http/errors.py, only sends them). A single request, a batch item and nginx's
own error pages (rendered from `NGINX_ERRORS`) all use `error_body`.
"""

import json
import logging

from marshmallow import ValidationError

log = logging.getLogger(__name__)


class CropperError(Exception):
    """An expected failure that the client should hear about as JSON."""

    status = 500
    code = "internal_error"
    retry_after = None  # seconds, for a Retry-After header, when trying again later may work
    challenge = None  # a WWW-Authenticate value, for a 401

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequestError(CropperError):
    """A body (or a batch item) that the schemas refused; details holds marshmallow's messages."""

    status = 422
    code = "validation_error"

    @classmethod
    def from_validation_error(cls, error, message="The request body is not valid."):
        invalid = cls(message)
        invalid.details = error.messages if isinstance(error.messages, dict) else {"_schema": error.messages}
        return invalid


class ImageNotFoundError(CropperError):
    status = 404
    code = "image_not_found"


class ImageWithdrawnError(CropperError):
    """FathomNet no longer has an image it had: what was made of it is purged, and its URLs are gone."""

    status = 410
    code = "image_withdrawn"


class NotFoundError(CropperError):
    status = 404
    code = "not_found"


class UnauthorizedError(CropperError):
    """An operator endpoint asked without ADMIN_TOKEN (or with another)."""

    status = 401
    code = "unauthorized"
    challenge = "Bearer"


class ForbiddenError(CropperError):
    """This URL is not open to this client (e.g. /metrics outside METRICS_ALLOW)."""

    status = 403
    code = "forbidden"


class BoxNotFoundError(CropperError):
    status = 404
    code = "box_not_found"


class ConceptNotFoundError(CropperError):
    status = 404
    code = "concept_not_found"


class CropNotFoundError(CropperError):
    status = 404
    code = "crop_not_found"


class BoxOutsideImageError(CropperError):
    status = 422
    code = "box_outside_image"


class ImageTooLargeError(CropperError):
    status = 422
    code = "image_too_large"


class UnknownConceptError(CropperError):
    """A concept name FathomNet does not know (names are exact); details suggest close ones."""

    status = 422
    code = "unknown_concept"


class DatasetNotFoundError(CropperError):
    status = 404
    code = "dataset_not_found"


class DatasetGoneError(CropperError):
    """A data set that was cancelled, removed or expired: it existed, and is no more."""

    status = 410
    code = "dataset_gone"


class DatasetsUnavailableError(CropperError):
    """This deployment cannot take data-set jobs as configured (several hosts without a shared queue)."""

    status = 503
    code = "datasets_unavailable"


class QueueUnavailableError(CropperError):
    """The data-set queue (Redis) cannot be reached: new jobs wait for it; crops never need it."""

    status = 503
    code = "queue_unavailable"
    retry_after = 5


class TooManyJobsError(CropperError):
    """More data-set jobs wait than DATASET_QUEUE_MAX: come back once some have run."""

    status = 429
    code = "too_many_jobs"

    def __init__(self, message, retry_after=60, **details):
        super().__init__(message, **details)
        self.retry_after = retry_after


class TooManyCropsError(CropperError):
    status = 413
    code = "too_many_crops"


class UpstreamError(CropperError):
    """FathomNet or the image host failed, or sent something that is not what was asked for."""

    status = 502
    code = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"


class InsufficientStorageError(CropperError):
    """The cache's disk is full or read-only: new files cannot be stored, cached ones are still served.

    507, not 503: clients retry a 503 at once, and a full disk is no reason to.
    """

    status = 507
    code = "insufficient_storage"


class BusyError(CropperError):
    """Another request is still making the same file and we gave up waiting for it."""

    status = 503
    code = "busy"

    def __init__(self, message, retry_after=1, **details):
        super().__init__(message, **details)
        self.retry_after = retry_after


class StoreUnavailableError(CropperError):
    """The shared crop store (CACHE_BACKEND=s3) cannot be reached or fails: nothing new can be made
    or read from it until it is back (nginx still serves what its local cache holds)."""

    status = 503
    code = "store_unavailable"
    retry_after = 5


class ClusterUnavailableError(CropperError):
    """The host that owns an image could not be asked to make its crops, or failed to."""

    status = 503
    code = "cluster_unavailable"
    retry_after = 5


# Errors nginx answers by itself, before or instead of the app: (status, code, message, Retry-After).
NGINX_ERRORS = (
    (400, "bad_request", "The request is not valid HTTP.", None),
    (403, "forbidden", "This URL is not open to this client.", None),
    (404, "not_found", "The requested URL was not found on the server.", None),
    (405, "method_not_allowed", "This method is not allowed for this URL.", None),
    (413, "request_entity_too_large", "The request body is too large.", None),
    (414, "uri_too_long", "The request line (the URL) is too long.", None),
    (429, "too_many_requests", "Too many requests from this client; slow down.", 1),
    (494, "request_header_too_large", "The request's headers are too large.", None),
    (502, "service_unavailable", "The crop service is not answering.", 1),
    (504, "service_timeout", "The crop service took too long.", 1),
)


def error_body(code, message, details=None):
    """The one error shape every failure uses."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def as_cropper_error(error):
    """What a failure is reported as: its own CropperError, a validation error, or a logged internal error."""
    if isinstance(error, CropperError):
        return error
    if isinstance(error, ValidationError):
        return InvalidRequestError.from_validation_error(error)
    log.error("unhandled error", exc_info=error)
    return CropperError("Something went wrong on our side.")


def or_error(call, *args):
    """call(*args), or the CropperError it raised: an answer for one item of many, which must not stop the rest."""
    try:
        return call(*args)
    except CropperError as error:
        return error


def body_of(error):
    """The JSON body that reports a CropperError."""
    return error_body(error.code, error.message, error.details)


def nginx_error_pages():
    """(status, JSON body, Retry-After) of each error nginx answers itself, in the service's shape."""
    return [(status, json.dumps(error_body(code, message)), retry) for status, code, message, retry in NGINX_ERRORS]
