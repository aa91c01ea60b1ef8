"""Request bodies: read within MAX_CONTENT_LENGTH however they are sent, and parsed as strict JSON."""

import json

from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.wsgi import get_input_stream


class JSONRequest(Request):
    """A request whose body is read within MAX_CONTENT_LENGTH however it is sent, and parsed as strict JSON."""

    def json_body(self):
        return parse_json(self.json_bytes())

    def json_bytes(self):
        """The body, unparsed: a JSON body read within the limit."""
        if not self.is_json:
            raise UnsupportedMediaType("Send the body as JSON, with Content-Type: application/json.")
        return self._body_within_limit()

    def _body_within_limit(self):
        limit = self.max_content_length
        if self.content_length is not None and self.content_length > limit:
            raise RequestEntityTooLarge()
        # The raw stream: Werkzeug's own would quietly cut a chunked body at the limit.
        stream = get_input_stream(self.environ, safe_fallback=False, max_content_length=None)
        try:
            data = stream.read(limit + 1)
        except Exception:  # the server's parse error for a malformed chunked body, or a client gone
            raise BadRequest("The request body could not be read: its chunked encoding is malformed.") from None
        if len(data) > limit:
            raise RequestEntityTooLarge()
        return data


def parse_json(data):
    """Strict JSON: no NaN or Infinity (they are not JSON), and no nesting deeper than Python can follow."""
    try:
        return json.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise BadRequest("The body is not valid JSON: it nests too deeply.") from None
    except ValueError as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None


def _not_json(constant):
    raise ValueError(f"{constant} is not a JSON value")
