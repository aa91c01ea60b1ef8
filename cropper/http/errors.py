"""Every failure answered as JSON: the error meanings (cropper/errors.py) and Werkzeug's, sent."""

from flask import g, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ..errors import CropperError, as_cropper_error, error_body


def error_response(status, code, message, details=None):
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    return response


def register_error_handlers(app):
    """Answer every failure, expected or not, with JSON and never a stack trace."""

    @app.errorhandler(CropperError)
    @app.errorhandler(ValidationError)
    @app.errorhandler(Exception)  # anything else: logged, and a plain internal_error
    def handle_cropper_error(error):
        error = as_cropper_error(error)
        g.error_code = error.code  # for the metrics of the request
        response = error_response(error.status, error.code, error.message, error.details)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        if error.challenge:
            response.headers["WWW-Authenticate"] = error.challenge
        return response

    @app.errorhandler(HTTPException)
    def handle_http_exception(error):
        code = error.name.lower().replace(" ", "_")
        g.error_code = code  # for the metrics of the request
        response = error_response(error.code, code, error.description)
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response
