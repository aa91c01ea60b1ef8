"""Gunicorn workers whose own error answers are JSON, like every other answer of the service.

Gunicorn answers requests it cannot parse (a bad request line, a URL or headers over its limits, a
malformed chunk) itself, with an HTML page, before the app sees them; no setting changes that. These
workers let Gunicorn decide the status, then send the service's JSON error body instead.
"""

import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from ..errors import NGINX_ERRORS, error_body

NGINX = {status: message for status, _, message, _ in NGINX_ERRORS}
# Said as nginx says it where nginx refuses the same requests (494 is nginx's 431).
MESSAGES = {
    400: NGINX[400],
    403: "The request is not allowed.",
    414: NGINX[414],
    417: "The expectation in the request cannot be met.",
    431: NGINX[494],
    501: "The request uses a transfer coding this server does not support.",
}


class _ErrorPage:
    """Stands in for the client socket while Gunicorn writes its error page, to learn its status."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return 0.0

    def setblocking(self, flag):
        pass

    def sendall(self, data):
        self.data += data


class JSONErrors:
    """Mix-in for a Gunicorn worker: its error pages become the service's JSON error bodies."""

    def handle_error(self, req, client, addr, exc):
        page = _ErrorPage()
        super().handle_error(req, page, addr, exc)  # logs, and picks the status
        status_line = page.data.split(b"\r\n", 1)[0].decode("latin-1")
        _, _, rest = status_line.partition(" ")
        status, _, reason = rest.partition(" ")
        status = int(status) if status.isdigit() else 500
        code = reason.strip().lower().replace(" ", "_") or "internal_error"
        message = MESSAGES.get(status, "Something went wrong on our side.")
        body = json.dumps(error_body(code, message)).encode()
        head = (f"HTTP/1.1 {status} {reason.strip() or 'Internal Server Error'}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # the client is gone: nothing more to tell it
            self.log.debug("Failed to send error message.")


class JSONThreadWorker(JSONErrors, ThreadWorker):
    """Gunicorn's gthread worker, answering its own errors in JSON."""


class JSONSyncWorker(JSONErrors, SyncWorker):
    """Gunicorn's sync worker, answering its own errors in JSON."""
