"""The service's errors and the one place that turns them into JSON responses.

Modules below the routes raise these with a meaning (not found, upstream down, ...);
only this module decides which HTTP status each meaning gets.
"""

import logging

from flask import jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class CropperError(Exception):
    """An expected failure that the client should hear about as JSON."""

    status = 500
    code = "internal_error"

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class ImageNotFoundError(CropperError):
    status = 404
    code = "image_not_found"


class CropNotFoundError(CropperError):
    status = 404
    code = "crop_not_found"


class BoxOutsideImageError(CropperError):
    status = 422
    code = "box_outside_image"


class ImageTooLargeError(CropperError):
    status = 422
    code = "image_too_large"


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


class BusyError(CropperError):
    """Another request is still making the same file and we gave up waiting for it."""

    status = 503
    code = "busy"

    def __init__(self, message, retry_after=1, **details):
        super().__init__(message, **details)
        self.retry_after = retry_after


def error_body(code, message, details=None):
    """Build the one error shape every failure uses."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status, code, message, details=None):
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    return response


def register_error_handlers(app):
    """Answer every failure, expected or not, with JSON and never a stack trace."""

    @app.errorhandler(CropperError)
    def handle_cropper_error(error):
        response = error_response(error.status, error.code, error.message, error.details)
        if isinstance(error, BusyError):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(ValidationError)
    def handle_validation_error(error):
        return error_response(422, "validation_error", "The request body is not valid.", error.messages)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error):
        code = error.name.lower().replace(" ", "_")
        response = error_response(error.code, code, error.description)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected_error(error):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
