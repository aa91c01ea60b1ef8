"""Little HTTP servers on 127.0.0.1 that answer what a test sets: for answers no real peer gives on demand."""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(handler):
    """A threaded server with handler on a free port, its `routes` and `hits` empty, its `url` set."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.routes, server.hits = {}, []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class RawHandler(BaseHTTPRequestHandler):
    """GETs answered by routes[path] = (status, headers, body bytes), as HTTP/1.0 (the body ends at close)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        status, headers, body = self.server.routes[self.path]
        self.server.hits.append(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class JSONHandler(BaseHTTPRequestHandler):
    """GETs and POSTs answered by routes[(method, path)] = JSON, or fn(JSON sent) -> (status, JSON or bytes)."""

    def log_message(self, *args):
        pass

    def _answer(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        sent = json.loads(self.rfile.read(length)) if length else None
        self.server.hits.append((method, self.path, sent))
        found = self.server.routes.get((method, self.path))
        if found is None:
            status, body = 404, {"message": "not found"}
        else:
            status, body = found(sent) if callable(found) else (200, found)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")
