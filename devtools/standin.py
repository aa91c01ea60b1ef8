"""A local stand-in for the FathomNet REST API and its image host.

The cropper's tests and benchmarks must not depend on fathomnet.org being up,
fast, or unchanged, and they need to provoke failures (timeouts, truncated
downloads, decompression bombs) that the real service never produces on
demand.  This module serves a small, deterministic catalog over real HTTP:

* ``GET  /api/images/{uuid}``, ``GET /api/boundingboxes/{uuid}`` and
  ``POST /api/images/query/uuids`` answer with JSON shaped like FathomNet's
  (the fields fathomnet-py's ``AImageDTO`` / ``ABoundingBoxDTO`` read);
* ``GET /images/<path>`` serves the image bytes; like real FathomNet URLs the
  paths contain a space (``Doc%20Ricketts``);
* ``/_standin/...`` control endpoints (counts, reset, fault, latency,
  catalog) steer a stand-in running in another process.  They are neither
  counted, delayed nor faulted.

In pytest::

    with FathomNetStandIn(latency=0.0) as s:
        rec = s.image("framegrab")           # uuid, url, width, height, data...
        s.set_fault("500", target="image", uuid=rec.uuid, times=1)
        ...
        assert s.downloads(rec.uuid) == 2

As a process (bench, README demo)::

    python -m devtools.standin --port 8001 --latency-ms 50

Request paths are recorded *unquoted* (``/images/Doc Ricketts/...``);
``count()`` unquotes its argument, so either spelling can be passed.
"""
from __future__ import annotations

import argparse
import array
import hashlib
import io
import json
import random
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid as uuidlib
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image, ImageChops, ImageDraw

# Fixed namespace: catalog uuids are uuid5(NAMESPACE, name), identical on every run.
NAMESPACE = uuidlib.UUID("6f1b3c2e-5d7a-4e8b-9c0d-fa7000f00d00")

# ---------------------------------------------------------------- images --


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    # compress_level=1: big noisy PNGs at the default level take seconds each.
    im.save(buf, "PNG", compress_level=1)  # also writes im.info["transparency"]
    return buf.getvalue()


def _pattern(w: int, h: int, seed: int) -> Image.Image:
    """Position-dependent RGB content: a wrongly placed crop looks different.

    R/G are vertical/horizontal gradients (they encode the position), B is a
    shifted radial gradient plus seeded block noise (mod 256) (it differs per seed and
    gives every small region a unique texture).  random.Random(seed) is
    stable across runs and platforms, unlike Image.effect_noise.
    """
    rng = random.Random(seed)
    noise = Image.frombytes("L", (w // 4 + 1, h // 4 + 1), rng.randbytes((w // 4 + 1) * (h // 4 + 1)))
    noise = noise.resize((w // 4 * 4 + 4, h // 4 * 4 + 4), Image.Resampling.NEAREST).crop((0, 0, w, h))
    faint = noise.point(lambda v: v // 8)
    vert = Image.linear_gradient("L").resize((w, h))
    horiz = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h))
    dx, dy = rng.randrange(w), rng.randrange(h)
    radial = Image.radial_gradient("L").resize((2 * w, 2 * h)).crop((dx, dy, dx + w, dy + h))
    return Image.merge("RGB", (
        ImageChops.add_modulo(vert, faint),
        ImageChops.add_modulo(horiz, faint),
        ImageChops.add_modulo(radial, noise),
    ))


def _rgb_png(w, h, seed):
    return lambda: _png(_pattern(w, h, seed))


def _jpeg():
    buf = io.BytesIO()
    _pattern(1920, 1080, 7).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _rgba():
    im = _pattern(800, 600, 11).convert("RGBA")
    alpha = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((800, 600))
    draw = ImageDraw.Draw(alpha)
    draw.rectangle((0, 0, 199, 299), fill=0)        # fully transparent
    draw.rectangle((200, 0, 399, 299), fill=128)    # half
    draw.rectangle((400, 0, 799, 299), fill=255)    # opaque
    im.putalpha(alpha)                              # bottom half: gradient
    return _png(im)


def _gray():
    return _png(_pattern(640, 480, 13).convert("L"))


def _palette(transparent: bool):
    def make():
        im = _pattern(640, 480, 17 + transparent).convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
        pal = im.getpalette()
        im.putpalette(pal + [0, 0, 0] * (256 - len(pal) // 3))  # full 256 entries
        if transparent:
            ImageDraw.Draw(im).rectangle((100, 100, 299, 249), fill=255)
            im.info["transparency"] = 255
        return _png(im)
    return make


def _gray16():
    # Full 0..65535 range: an 8-bit clip of this is almost all white.
    w, h = 640, 480
    px = array.array("H", [(x * 65535 // (w - 1)) ^ ((y * 37) & 0x0FFF) for y in range(h) for x in range(w)])
    if sys.byteorder == "big":
        px.byteswap()  # "I;16" is little-endian
    return _png(Image.frombytes("I;16", (w, h), px.tobytes()))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb():
    """A few-KB PNG whose header declares 30000x30000 8-bit grayscale."""
    rows = b"".join(b"\x00" + bytes((x * 7 + y) & 0xFF for x in range(30000)) for y in range(4))
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(rows, 9)) + _chunk(b"IEND", b""))


@dataclass(frozen=True)
class _Entry:
    name: str
    width: int      # as the API reports it (may lie: huge, bomb)
    height: int
    mode: str       # of the served bytes
    format: str
    make: object = field(repr=False)


_ENTRIES = [_Entry("framegrab", 1920, 1080, "RGB", "PNG", _rgb_png(1920, 1080, 1))]
_ENTRIES += [_Entry(f"framegrab-{i}", 1920, 1080, "RGB", "PNG", _rgb_png(1920, 1080, 100 + i)) for i in range(10)]
_ENTRIES += [
    _Entry("jpeg", 1920, 1080, "RGB", "JPEG", _jpeg),
    _Entry("rgba", 800, 600, "RGBA", "PNG", _rgba),
    _Entry("gray", 640, 480, "L", "PNG", _gray),
    _Entry("palette", 640, 480, "P", "PNG", _palette(False)),
    _Entry("palette-transparent", 640, 480, "P", "PNG", _palette(True)),
    _Entry("gray16", 640, 480, "I;16", "PNG", _gray16),
    _Entry("large", 3840, 2160, "RGB", "PNG", _rgb_png(3840, 2160, 3)),
    _Entry("huge", 40000, 30000, "RGB", "PNG", _rgb_png(320, 240, 5)),  # host serves 320x240
    _Entry("bomb", 1920, 1080, "L", "PNG", _bomb),                      # host serves the bomb
    _Entry("offhost", 320, 240, "RGB", "PNG", _rgb_png(320, 240, 9)),   # url host: localhost
]
_BY_NAME = {e.name: e for e in _ENTRIES}
CATALOG_NAMES = {e.name: str(uuidlib.uuid5(NAMESPACE, e.name)) for e in _ENTRIES}
_NAME_BY_UUID = {u: n for n, u in CATALOG_NAMES.items()}
_CAMERAS = ["Doc Ricketts", "Mini ROV", "Tiburon ROV"]  # spaces on purpose -> %20


def uuid_for(name: str) -> str:
    return CATALOG_NAMES[name]


def _path_for(i: int, e: _Entry) -> str:
    ext = "jpg" if e.format == "JPEG" else "png"
    return f"/images/{_CAMERAS[i % 3]}/images/{970 + i:04d}/02_{i:02d}_{(7 * i) % 60:02d}_{(3 * i) % 30:02d}.{ext}"


_PATHS = {e.name: _path_for(i, e) for i, e in enumerate(_ENTRIES)}
_NAME_BY_PATH = {p: n for n, p in _PATHS.items()}
_CONCEPTS = ["Bathochordaeus", "Sebastolobus", "Aurelia aurita", "Nanomia bijuga", "Chionoecetes tanneri"]


def _boxes(name: str) -> list[dict]:
    e, rng = _BY_NAME[name], random.Random(name)
    out = []
    for i in range(2 + rng.randrange(3)):
        bw, bh = rng.randint(e.width // 20, e.width // 4), rng.randint(e.height // 20, e.height // 4)
        out.append({
            "id": 5_000_000 + 10 * _ENTRIES.index(e) + i,
            "uuid": str(uuidlib.uuid5(NAMESPACE, f"{name}/box/{i}")),
            "concept": rng.choice(_CONCEPTS), "altConcept": None,
            "x": rng.randrange(e.width - bw), "y": rng.randrange(e.height - bh), "width": bw, "height": bh,
            "image": CATALOG_NAMES[name], "observer": "standin", "verified": i % 2 == 0,
            "verifier": None, "rejected": False, "occluded": False, "truncated": False, "groupOf": False,
            "userDefinedKey": f"standin-{name}-{i}",
            "createdTimestamp": "2021-06-01T12:00:00.000Z", "lastUpdatedTimestamp": "2021-06-02T08:30:00.000Z",
        })
    return out


_BOXES = {n: _boxes(n) for n in CATALOG_NAMES}
_BOX_BY_UUID = {b["uuid"]: b for bs in _BOXES.values() for b in bs}

# Generated bytes are shared by all stand-ins in the process (they do not
# depend on the port); a lock per name stops 32 concurrent first requests
# from generating the same 4K PNG 32 times.
_DATA: dict[str, bytes] = {}
_LOCKS = {n: threading.Lock() for n in CATALOG_NAMES}


def _data(name: str) -> bytes:
    with _LOCKS[name]:
        if name not in _DATA:
            _DATA[name] = _BY_NAME[name].make()
        return _DATA[name]


@dataclass(frozen=True)
class ImageRecord:
    name: str
    uuid: str
    url: str
    path: str           # unquoted host path, e.g. "/images/Doc Ricketts/..."
    width: int          # what the API claims
    height: int
    mode: str           # of the served bytes
    format: str
    content_type: str
    data: bytes = field(repr=False)
    sha256: str = ""

# ---------------------------------------------------------------- server --

FAULT_KINDS = {"404", "500", "503", "slow", "trickle", "truncated", "html", "corrupt", "bomb"}
_REASONS = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class _Fault:
    kind: str
    target: str
    uuid: str | None
    times: int | None


class FathomNetStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0):
        self.host, self._want_port, self.latency = host, port, latency
        self.slow_seconds = 5.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = self._thread = None
        self.reset()

    # -- lifecycle
    def start(self) -> "FathomNetStandIn":
        self._stopping.clear()
        self._server = _Server((self.host, self._want_port), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fathomnet-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._stopping.set()  # wakes handlers sleeping for latency/slow/trickle
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    # -- catalog
    def image(self, name: str) -> ImageRecord:
        e, data = _BY_NAME[name], _data(name)
        base = f"http://localhost:{self.port}" if name == "offhost" else self.base_url
        return ImageRecord(name, CATALOG_NAMES[name], base + quote(_PATHS[name]), _PATHS[name], e.width, e.height,
                           e.mode, e.format, "image/jpeg" if e.format == "JPEG" else "image/png",
                           data, hashlib.sha256(data).hexdigest())

    def catalog(self) -> list[dict]:
        base = self.base_url
        return [{"name": e.name, "uuid": CATALOG_NAMES[e.name], "width": e.width, "height": e.height,
                 "mode": e.mode, "format": e.format,
                 "url": (f"http://localhost:{self.port}" if e.name == "offhost" else base) + quote(_PATHS[e.name])}
                for e in _ENTRIES]

    def image_json(self, name: str) -> dict:
        r, i = self.image(name), _ENTRIES.index(_BY_NAME[name])
        return {
            "id": 2_000_000 + i, "uuid": r.uuid, "url": r.url, "valid": True, "imagingType": "ROV",
            "width": r.width, "height": r.height, "sha256": r.sha256, "contentType": r.content_type,
            "timestamp": f"2019-07-{1 + i % 28:02d}T02:{i:02d}:32.000Z", "lastValidation": "2021-06-01T00:00:00.000Z",
            "createdTimestamp": "2021-06-01T12:00:00.000Z", "lastUpdatedTimestamp": "2021-06-02T08:30:00.000Z",
            "depthMeters": 200.0 + 37.5 * i, "latitude": 36.7 + i / 1000, "longitude": -122.05 - i / 1000,
            "altitude": None, "oxygenMlL": 0.42, "pressureDbar": 201.3 + 37 * i, "salinity": 34.1,
            "temperatureCelsius": 8.7, "tags": [], "boundingBoxes": _BOXES[name],
        }

    # -- counters and faults
    def reset(self) -> None:
        with self._lock:
            self._log: list[tuple[str, str, str, str | None]] = []  # method, path, text, image uuid
            self._faults: list[_Fault] = []

    def _record(self, method: str, path: str, body: bytes, image_uuid: str | None) -> None:
        text = (path + " " + body.decode("utf-8", "replace")).lower()
        with self._lock:
            self._log.append((method, path, text, image_uuid))

    def count(self, path_prefix_or_exact: str, method: str | None = None) -> int:
        p = unquote(path_prefix_or_exact)
        with self._lock:
            return sum(1 for m, path, _, _ in self._log if path.startswith(p) and method in (None, m))

    def api_calls(self, uuid: str | None = None) -> int:
        with self._lock:
            return sum(1 for _, path, text, _ in self._log
                       if path.startswith("/api/") and (uuid is None or uuid.lower() in text))

    def downloads(self, uuid: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, path, _, u in self._log
                       if m == "GET" and path.startswith("/images/") and (uuid is None or u == uuid.lower()))

    def counts(self) -> dict:
        with self._lock:
            by_path: dict[str, int] = {}
            for m, path, _, _ in self._log:
                by_path[f"{m} {path}"] = by_path.get(f"{m} {path}", 0) + 1
        return {"api": self.api_calls(), "downloads": self.downloads(), "by_path": by_path}

    def set_fault(self, kind: str, target: str = "image", uuid: str | None = None, times: int | None = None) -> None:
        if kind not in FAULT_KINDS or target not in ("api", "image"):
            raise ValueError(f"bad fault {kind!r} / target {target!r}")
        with self._lock:
            self._faults.append(_Fault(kind, target, uuid.lower() if uuid else None, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, target: str, uuids: list[str]) -> str | None:
        """First matching fault; a counted one is used up here."""
        with self._lock:
            for f in self._faults:
                if f.target == target and (f.uuid is None or f.uuid in uuids):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f.kind
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def __init__(self, *args):
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args)

    # Track open connections so stop() can hang up on idle keep-alive clients;
    # otherwise their pooled connections would still be served after stop().
    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # clients hanging up are normal here


def _error_json(status: int, message: str, path: str) -> bytes:
    return json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()), "status": status,
                       "error": _REASONS.get(status, "Error"), "message": message, "path": path}).encode()


def _html(status: int, text: str) -> bytes:
    return f"<html><head><title>{status} {text}</title></head><body><h1>{status} {text}</h1></body></html>\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its proxy
    server_version = "FathomNetStandIn/1.0"
    timeout = 30                   # drop idle keep-alive connections eventually
    # Headers and body go out in two writes; with Nagle on, the second waits for the
    # client's delayed ACK (40 ms), which real servers do not add.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        s: FathomNetStandIn = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""  # always drain, or keep-alive desyncs
        split = urlsplit(self.path)
        path = unquote(split.path)
        try:
            if path.startswith("/_standin/"):
                return self._send(*self._control(s, method, path, body, parse_qs(split.query)))
            status, ctype, payload, target, uuids = self._route(s, method, path, body)
            s._record(method, path, body, uuids[0] if target == "image" and uuids else None)
            fault = s._take_fault(target, uuids) if target else None
            s._sleep(s.latency)
            self._send_faulted(s, fault, target, path, status, ctype, payload)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _route(self, s, method, path, body):
        """-> (status, content type, body, fault target or None, uuids involved)."""
        m = re.fullmatch(r"/api/images/([^/]+)", path)
        if method == "GET" and m:
            u = m.group(1).lower()
            if u in _NAME_BY_UUID:
                return 200, "application/json", json.dumps(s.image_json(_NAME_BY_UUID[u])).encode(), "api", [u]
            return 404, "application/json", _error_json(404, f"Image with uuid {m.group(1)} not found", path), "api", [u]
        if method == "POST" and path == "/api/images/query/uuids":
            try:
                wanted = json.loads(body)
                assert isinstance(wanted, list) and all(isinstance(u, str) for u in wanted)
            except (ValueError, AssertionError):
                return 400, "application/json", _error_json(400, "Expected a JSON list of uuids", path), "api", []
            wanted = list(dict.fromkeys(u.lower() for u in wanted))  # dedupe, keep request order
            found = [s.image_json(_NAME_BY_UUID[u]) for u in wanted if u in _NAME_BY_UUID]
            return 200, "application/json", json.dumps(found).encode(), "api", wanted
        m = re.fullmatch(r"/api/boundingboxes/([^/]+)", path)
        if method == "GET" and m:
            box = _BOX_BY_UUID.get(m.group(1).lower())
            if box:
                return 200, "application/json", json.dumps(box).encode(), None, []
        name = _NAME_BY_PATH.get(path)
        if method == "GET" and name:
            r = s.image(name)
            return 200, r.content_type, r.data, "image", [r.uuid]
        return 404, "application/json", _error_json(404, "No handler found", path), None, []

    def _send_faulted(self, s, fault, target, path, status, ctype, payload):
        if fault in ("404", "500", "503"):
            code = int(fault)
            if target == "api":
                return self._send(code, "application/json", _error_json(code, "Injected fault", path))
            return self._send(code, "text/html", _html(code, _REASONS[code]))
        if fault == "html":
            return self._send(200, "text/html; charset=utf-8", _html(200, "Welcome to FathomNet"))
        if fault == "bomb" and target == "image":
            return self._send(200, "image/png", _data("bomb"))
        if fault == "corrupt":
            mid = len(payload) // 2
            span = slice(mid, mid + min(4096, len(payload) - mid))
            payload = payload[:span.start] + bytes(b ^ 0xA5 for b in payload[span]) + payload[span.stop:]
        if fault == "slow":
            s._sleep(s.slow_seconds)
        if fault == "truncated":
            self.close_connection = True  # announce all bytes, send half, hang up
            return self._send(status, ctype, payload, limit=len(payload) // 2)
        if fault == "trickle":
            return self._send(status, ctype, payload, pieces=20, spread=s.slow_seconds)
        self._send(status, ctype, payload)

    def _send(self, status, ctype, payload, limit=None, pieces=1, spread=0.0):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        payload = payload if limit is None else payload[:limit]
        step = -(-len(payload) // pieces) or 1
        for i in range(0, len(payload), step):
            if i:
                self.server.standin._sleep(spread / pieces)  # each gap is short, so read timeouts never fire
            self.wfile.write(payload[i:i + step])
            self.wfile.flush()

    def _control(self, s, method, path, body, query):
        ok = (200, "application/json", b'{"ok": true}')
        try:
            args = json.loads(body) if body else {}
        except ValueError:
            return 400, "application/json", _error_json(400, "Bad JSON", path)
        if method == "GET" and path == "/_standin/counts":
            if "uuid" in query:
                u = query["uuid"][0]
                return 200, "application/json", json.dumps({"api": s.api_calls(u), "downloads": s.downloads(u)}).encode()
            return 200, "application/json", json.dumps(s.counts()).encode()
        if method == "GET" and path == "/_standin/catalog":
            return 200, "application/json", json.dumps(s.catalog()).encode()
        if method == "POST" and path == "/_standin/reset":
            s.reset()
            return ok
        if method == "POST" and path == "/_standin/latency":
            s.latency = float(args.get("ms", 0)) / 1000
            return ok
        if method == "POST" and path == "/_standin/fault":
            if not args.get("kind"):  # {"kind": null} clears all faults
                s.clear_faults()
                return ok
            if "slow_seconds" in args:
                s.slow_seconds = float(args["slow_seconds"])
            try:
                s.set_fault(args["kind"], args.get("target", "image"), args.get("uuid"), args.get("times"))
            except ValueError as e:
                return 400, "application/json", _error_json(400, str(e), path)
            return ok
        return 404, "application/json", _error_json(404, "Unknown control endpoint", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Serve a stand-in FathomNet API and image host.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before every response")
    opts = ap.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    s = FathomNetStandIn(opts.host, opts.port, latency=opts.latency_ms / 1000).start()
    print(f"FathomNet stand-in at {s.api_url}", flush=True)
    for e in s.catalog():
        print(f"  {e['name']:<20} {e['uuid']}  {e['width']}x{e['height']:<6} {e['mode']:<5} {e['format']}")
    sys.stdout.flush()
    while not done.wait(0.5):
        pass
    s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
