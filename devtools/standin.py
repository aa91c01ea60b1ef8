"""A local stand-in for the FathomNet REST API and its image host.

The cropper's tests and benchmarks must not depend on fathomnet.org being up,
fast, or unchanged, and they need to provoke failures (timeouts, truncated
downloads, decompression bombs) that the real service never produces on
demand.  This module serves a small, deterministic catalog over real HTTP:

* ``GET  /api/images/{uuid}`` and ``POST /api/images/query/uuids`` answer with
  JSON shaped like FathomNet's (the fields fathomnet-py's ``AImageDTO`` reads);
* ``GET  /api/boundingboxes/{uuid}`` answers one box shaped like
  fathomnet-py's ``BoundingBoxDTO`` (``imageUuid`` names its image), or a JSON 404;
* ``POST /api/boundingboxes/query`` takes a JSON object of
  ``BoundingBoxConstraintsDTO`` fields and answers a page object whose
  ``content`` is the list of boxes (fathomnet-py 1.9 ``boundingboxes.find``
  reads only ``content``).  Honoured: ``concept`` (exact name), ``limit``,
  ``offset``; null fields (pydantic sends them all) and the other constraints
  are ignored.  Boxes come in ``id`` order, so paging is stable.  The other
  page fields (``totalSize``, ``totalPages``, ``size``, ``offset``,
  ``pageNumber``, ``numberOfElements``, ``empty``) follow Micronaut's Page;
* ``POST /api/boundingboxes/query/count`` (fathomnet-py ``boundingboxes.count``)
  answers ``{"objectType": "BoundingBoxEntity", "count": n}`` for the same
  constraints (limit/offset ignored), and ``GET /api/boundingboxes/query/count/{concept}``
  (``boundingboxes.count_by_concept``) answers ``{"concept": c, "count": n}``;
* ``GET /images/<path>`` serves the image bytes; like real FathomNet URLs the
  paths contain a space (``Doc%20Ricketts``);
* ``/_standin/...`` control endpoints (counts, reset, fault, latency,
  catalog) steer a stand-in running in another process.  They are neither
  counted, delayed nor faulted.

The framegrab-0..9 images carry a hand-made annotation set (see
``MULTIPAGE_CONCEPT``, ``EDGE_BOXES``): boxes of one concept over ten images,
boxes on every image edge and boxes that overhang the frame, as real
FathomNet has.  ``boxes(name)``, ``box(uuid)`` and ``concept_boxes(concept)``
give them to tests.  survey-0..9 have ten boxes each of ``SURVEY_CONCEPT``
(the bench's batches and concept pages of 100).  The ``iiif-validator`` entry is the IIIF validator's
10x10 colour-grid test image.

Faults (``set_fault(kind, target, uuid, times, **options)``, or POST
``/_standin/fault`` with the same names as JSON fields) make the next matching
answers hostile: ``404``/``500``/``503``, ``slow``, ``trickle`` (``gap``: seconds
per byte, default ``trickle_gap``; without either, 20 pieces over
``slow_seconds``), ``truncated``, ``html``, ``corrupt``, ``bomb`` (images),
``endless`` (chunked JSON-ish bytes that never end; ``gap`` between chunks,
``seconds`` until it gives up), ``gzip_bomb`` (~1 GiB of JSON in a ~1 MB gzip
body), ``deep_json`` (100000 nested lists), ``redirect`` (302 to ``location``),
and, for target ``api`` only, ``bad_metadata`` (the image's width is "abc",
height null, url missing) and ``forbidden_url`` (its url is ``url``, default the
same path on port 1 of the stand-in's host).  A fault with a ``uuid`` only hits
requests naming it: an image or box uuid in the path or uuid list, or a box on
the answered query page.

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


# The IIIF Image API validator's test image is 1000x1000, a 10x10 grid of solid
# 100-pixel squares; the validator crops, scales and rotates it through the
# server under test and checks the colours it gets back.  Copied from
# ValidationInfo.colorInfo in iiif_validator/validator.py of iiif-validator
# 1.0.5 on PyPI (github.com/IIIF/image-validator, Apache 2.0).
# IIIF_COLORS[x][y] is the square whose top-left corner is (100 * x, 100 * y):
# the first index is the column, as in the validator's do_test_square().
IIIF_COLORS = (
    ((61, 170, 126), (61, 107, 178), (82, 85, 234), (164, 122, 110), (129, 226, 88), (91, 37, 121),
     (138, 128, 42), (6, 85, 234), (121, 109, 204), (65, 246, 84)),
    ((195, 133, 120), (171, 43, 102), (118, 45, 130), (242, 105, 171), (5, 85, 105), (113, 58, 41),
     (223, 69, 3), (45, 79, 140), (35, 117, 248), (121, 156, 184)),
    ((168, 92, 163), (28, 91, 143), (86, 41, 173), (111, 230, 29), (174, 189, 7), (18, 139, 88),
     (93, 168, 128), (35, 2, 14), (204, 105, 137), (18, 86, 128)),
    ((107, 55, 178), (251, 40, 184), (47, 36, 139), (2, 127, 170), (224, 12, 114), (133, 67, 108),
     (239, 174, 209), (85, 29, 156), (8, 55, 188), (240, 125, 7)),
    ((112, 167, 30), (166, 63, 161), (232, 227, 23), (74, 80, 135), (79, 97, 47), (145, 160, 80),
     (45, 160, 79), (12, 54, 215), (203, 83, 70), (78, 28, 46)),
    ((102, 193, 63), (225, 55, 91), (107, 194, 147), (167, 24, 95), (249, 214, 96), (167, 34, 136),
     (53, 254, 209), (172, 222, 21), (153, 77, 51), (137, 39, 183)),
    ((159, 182, 192), (128, 252, 173), (148, 162, 90), (192, 165, 115), (154, 102, 2), (107, 237, 62),
     (111, 236, 219), (129, 113, 172), (239, 204, 166), (60, 96, 37)),
    ((72, 172, 227), (119, 51, 100), (209, 85, 165), (87, 172, 159), (188, 42, 162), (99, 3, 54),
     (7, 42, 37), (105, 155, 100), (38, 220, 240), (98, 46, 2)),
    ((18, 223, 145), (189, 121, 17), (88, 3, 210), (181, 16, 43), (189, 39, 244), (123, 147, 116),
     (246, 148, 214), (223, 177, 199), (77, 18, 136), (235, 36, 21)),
    ((146, 137, 176), (84, 248, 55), (61, 144, 79), (110, 251, 49), (43, 105, 132), (165, 131, 55),
     (60, 23, 225), (147, 197, 226), (80, 67, 104), (161, 119, 182)),
)


def _iiif():
    im = Image.new("RGB", (1000, 1000))
    for x, column in enumerate(IIIF_COLORS):
        for y, color in enumerate(column):
            im.paste(color, (100 * x, 100 * y, 100 * x + 100, 100 * y + 100))
    return _png(im)


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
    # Appended last: an entry's position sets its path and ids, which must not move.
    _Entry("iiif-validator", 1000, 1000, "RGB", "PNG", _iiif),
]
# The bench's survey: ten more framegrabs with ten boxes each of one concept (SURVEY_CONCEPT), for
# batches of 100 box-UUID crops over 10 images and a concept page of 100.
_ENTRIES += [_Entry(f"survey-{i}", 1920, 1080, "RGB", "PNG", _rgb_png(1920, 1080, 200 + i)) for i in range(10)]
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


def _box(name: str, i: int, concept: str, x: int, y: int, width: int, height: int, truncated: bool = False) -> dict:
    """Box i of an image, with the fields of fathomnet-py's BoundingBoxDTO.

    Both the older verified/verifier fields and fathomnet-py 1.9's
    reviewState/reviewer are filled, so readers of either version find theirs.
    """
    verified = i % 2 == 0
    return {
        "id": 5_000_000 + 10 * _ENTRIES.index(_BY_NAME[name]) + i,
        "uuid": str(uuidlib.uuid5(NAMESPACE, f"{name}/box/{i}")),
        "concept": concept, "altConcept": None,
        "x": x, "y": y, "width": width, "height": height,
        "imageUuid": CATALOG_NAMES[name], "observer": "standin",
        "verified": verified, "verifier": "standin-reviewer" if verified else None,
        "verificationTimestamp": "2021-06-03T09:00:00.000Z" if verified else None,
        "reviewState": "VERIFIED" if verified else "UNVERIFIED",
        "reviewer": "standin-reviewer" if verified else None,
        "lastReviewedTimestamp": "2021-06-03T09:00:00.000Z" if verified else None,
        "rejected": False, "occluded": False, "truncated": truncated, "groupOf": False,
        "userDefinedKey": f"standin-{name}-{i}",
        "createdTimestamp": "2021-06-01T12:00:00.000Z", "lastUpdatedTimestamp": "2021-06-02T08:30:00.000Z",
    }


def _random_boxes(name: str) -> list[dict]:
    """2-4 seeded boxes inside the image, of the stock concepts."""
    e, rng = _BY_NAME[name], random.Random(name)
    out = []
    for i in range(2 + rng.randrange(3)):
        bw, bh = rng.randint(e.width // 20, e.width // 4), rng.randint(e.height // 20, e.height // 4)
        concept = rng.choice(_CONCEPTS)
        out.append(_box(name, i, concept, rng.randrange(e.width - bw), rng.randrange(e.height - bh), bw, bh))
    return out


# -- the annotated set: framegrab-0..9 (1920x1080), for crop-by-annotation and concept tests.
# MULTIPAGE_CONCEPT has 32 boxes over all ten images, 4 pages at limit 10 (10, 10, 10, 2);
# no other image has it.  _OTHER_CONCEPT adds one box to each even-numbered image, so a
# concept query has something to leave out.
ANNOTATED_NAMES = tuple(f"framegrab-{i}" for i in range(10))
MULTIPAGE_CONCEPT = "Bathochordaeus mcnutti"
_OTHER_CONCEPT = "Chiroteuthis calyx"

# Boxes on and past the edges, label: (framegrab number, x, y, width, height).  Real
# FathomNet has boxes that overhang the frame (negative x/y, x + width > image width),
# so the service has to clip or refuse them instead of trusting them.
_EDGE_SPECS = {
    "left": (0, 0, 300, 200, 150),
    "top": (1, 500, 0, 180, 120),
    "right": (2, 1720, 640, 200, 160),          # x + width == 1920
    "bottom": (3, 900, 960, 240, 120),          # y + height == 1080
    "top-left": (4, 0, 0, 160, 90),
    "bottom-right": (5, 1760, 990, 160, 90),
    "full-frame": (6, 0, 0, 1920, 1080),
    "past-left": (7, -40, 500, 200, 100),       # x < 0
    "past-top": (8, 700, -25, 120, 150),        # y < 0
    "past-right": (9, 1850, 200, 150, 120),     # x + width == 2000 > 1920
    "past-bottom": (0, 1000, 1000, 200, 200),   # y + height == 1200 > 1080
    "past-all": (3, -30, -20, 2000, 1150),      # overhangs all four edges
}


def _annotated_boxes(name: str) -> tuple[list[dict], dict[str, str]]:
    """Two seeded inner boxes of MULTIPAGE_CONCEPT, the image's edge boxes, and on even
    images one _OTHER_CONCEPT box.  Also returns {edge label: box uuid}."""
    n, rng = int(name.rsplit("-", 1)[1]), random.Random(name)

    def inner():
        bw, bh = rng.randint(96, 480), rng.randint(54, 270)
        return rng.randrange(1, 1920 - bw), rng.randrange(1, 1080 - bh), bw, bh  # not touching an edge

    out = [_box(name, 0, MULTIPAGE_CONCEPT, *inner()), _box(name, 1, MULTIPAGE_CONCEPT, *inner())]
    labels = {}
    for label, (image, *xywh) in _EDGE_SPECS.items():
        if image == n:
            out.append(_box(name, len(out), MULTIPAGE_CONCEPT, *xywh, truncated=True))
            labels[label] = out[-1]["uuid"]
    if n % 2 == 0:
        out.append(_box(name, len(out), _OTHER_CONCEPT, *inner()))
    return out, labels


SURVEY_NAMES = tuple(f"survey-{i}" for i in range(10))
SURVEY_CONCEPT = "Benthocodon pedunculata"


def _survey_boxes(name: str) -> list[dict]:
    """Ten seeded boxes of SURVEY_CONCEPT inside the image, 120-480 by 80-320 pixels."""
    rng = random.Random(name)
    out = []
    for i in range(10):
        bw, bh = rng.randint(120, 480), rng.randint(80, 320)
        out.append(_box(name, i, SURVEY_CONCEPT, rng.randrange(1920 - bw), rng.randrange(1080 - bh), bw, bh))
    return out


def _all_boxes() -> tuple[dict[str, list[dict]], dict[str, str]]:
    by_image, edge_boxes = {}, {}
    for name in CATALOG_NAMES:
        if name in ANNOTATED_NAMES:
            by_image[name], labels = _annotated_boxes(name)
            edge_boxes.update(labels)
        elif name in SURVEY_NAMES:
            by_image[name] = _survey_boxes(name)
        else:
            by_image[name] = _random_boxes(name)
    return by_image, {label: edge_boxes[label] for label in _EDGE_SPECS}


_BOXES, EDGE_BOXES = _all_boxes()          # EDGE_BOXES: edge label (see _EDGE_SPECS) -> box uuid
EDGE_BOX = EDGE_BOXES["right"]             # on framegrab-2, x + width == image width
PAST_EDGE_BOX = EDGE_BOXES["past-left"]    # on framegrab-7, x == -40
_BOX_BY_UUID = {b["uuid"]: b for bs in _BOXES.values() for b in bs}
_ALL_BOXES = sorted(_BOX_BY_UUID.values(), key=lambda b: b["id"])  # API order


def boxes(name: str) -> list[dict]:
    """The boxes of a catalog image, as its JSON lists them (copies: tests may edit them)."""
    return [dict(b) for b in _BOXES[name]]


def box(uuid: str) -> dict:
    return dict(_BOX_BY_UUID[uuid.lower()])


def concept_boxes(concept: str) -> list[dict]:
    """All boxes of a concept, in the order POST /api/boundingboxes/query pages through them."""
    return [dict(b) for b in _ALL_BOXES if b["concept"] == concept]


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


# -- payloads of a hostile API.

GZIP_BOMB_SIZE = 1 << 30   # bytes of JSON the gzip_bomb body inflates to
DEEP_JSON_DEPTH = 100_000  # nesting of the deep_json answer; json.loads() gives up near 1000
ENDLESS_SECONDS = 120.0    # an endless answer gives up after this long, so no thread runs forever
_ENDLESS_CHUNK = b"".join(  # ~4 KiB of list items, so a client sees plausible JSON go by
    b'{"uuid": "%s", "concept": "Bathochordaeus", "x": %d, "y": %d, "width": 100, "height": 80}, '
    % (str(uuidlib.uuid5(NAMESPACE, f"endless/{i}")).encode(), i, 2 * i) for i in range(40))
_HOSTILE: dict[str, bytes] = {}
_HOSTILE_LOCK = threading.Lock()


def _once(key: str, make) -> bytes:
    """Build a hostile payload the first time it is used, and keep it (the bomb takes a while)."""
    with _HOSTILE_LOCK:
        if key not in _HOSTILE:
            _HOSTILE[key] = make()
        return _HOSTILE[key]


def _make_gzip_bomb() -> bytes:
    """~1 MB of gzip that inflates to GZIP_BOMB_SIZE bytes: one JSON string of spaces.

    Compressed piece by piece, so building it never holds the inflated GiB; Z_RLE finds
    the same maximal runs as the default strategy at twice the speed (~1.5 s).
    """
    gz = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_RLE)  # wbits 31: gzip header and trailer
    head, tail = b'{"uuid": "gzip-bomb", "padding": "', b'"}'
    piece = b" " * (1 << 20)
    left = GZIP_BOMB_SIZE - len(head) - len(tail)
    out = [gz.compress(head)]
    while left > 0:
        out.append(gz.compress(piece[:left]))
        left -= len(piece)
    out += [gz.compress(tail), gz.flush()]
    return b"".join(out)


def _gzip_bomb() -> bytes:
    return _once("gzip_bomb", _make_gzip_bomb)


def _deep_json() -> bytes:
    return _once("deep_json", lambda: b"[" * DEEP_JSON_DEPTH + b"]" * DEEP_JSON_DEPTH)


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

FAULT_KINDS = {"404", "500", "503", "slow", "trickle", "truncated", "html", "corrupt", "bomb",
               "endless", "gzip_bomb", "deep_json", "redirect", "bad_metadata", "forbidden_url", "hold"}
# These two spoil one image inside an otherwise good image JSON answer, so only the API has them.
_API_ONLY_KINDS = {"bad_metadata", "forbidden_url"}
# Keyword arguments of set_fault(), kept on the fault: location (redirect), url
# (forbidden_url), gap (trickle: seconds per byte; endless: seconds per chunk),
# seconds (endless: when to give up).
FAULT_OPTIONS = {"location", "url", "gap", "seconds"}
_REASONS = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class _Fault:
    kind: str
    target: str
    uuid: str | None
    times: int | None
    options: dict = field(default_factory=dict)


class FathomNetStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0):
        self.host, self._want_port, self.latency = host, port, latency
        self.slow_seconds = 5.0
        # Seconds between single bytes of a trickle fault without its own gap; None keeps
        # the old trickle: 20 pieces spread over slow_seconds.
        self.trickle_gap: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._held = threading.Condition(self._lock)  # answers stopped half-way by a hold fault
        self._holding = 0
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
            if hasattr(self, "_release"):
                self._release.set()  # nothing held by one test outlives its reset
            self._release = threading.Event()

    # -- hold faults: an answer stopped half-way until the test says so, so tests wait on events, not clocks
    def wait_until_held(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until `count` answers are stopped half-way by hold faults."""
        with self._held:
            return self._held.wait_for(lambda: self._holding >= count, timeout)

    def release(self) -> None:
        """Let every held answer finish."""
        with self._lock:
            self._release.set()

    def _hold(self) -> None:
        with self._held:
            self._holding += 1
            release = self._release
            self._held.notify_all()
        # Bounded, so a test that forgets to release cannot hang the stand-in's stop.
        deadline = time.monotonic() + 60
        while not release.wait(0.05) and not self._stopping.is_set() and time.monotonic() < deadline:
            pass
        with self._held:
            self._holding -= 1

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

    def set_fault(self, kind: str, target: str = "image", uuid: str | None = None, times: int | None = None,
                  **options) -> None:
        """Make the next `times` (None: all) matching answers go wrong; see FAULT_OPTIONS for options."""
        if kind not in FAULT_KINDS or target not in ("api", "image"):
            raise ValueError(f"bad fault {kind!r} / target {target!r}")
        if kind in _API_ONLY_KINDS and target != "api":
            raise ValueError(f"fault {kind!r} spoils image JSON: its target must be 'api'")
        if options.keys() - FAULT_OPTIONS:
            raise ValueError(f"unknown fault options {sorted(options.keys() - FAULT_OPTIONS)}")
        if kind == "redirect" and not options.get("location"):
            raise ValueError("a redirect fault needs location=...")
        with self._lock:
            self._faults.append(_Fault(kind, target, uuid.lower() if uuid else None, times, options))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, target: str, uuids: list[str]) -> _Fault | None:
        """First matching fault; a counted one is used up here."""
        with self._lock:
            for f in self._faults:
                if f.target == target and (f.uuid is None or f.uuid in uuids):
                    if f.times is not None:
                        f.times -= 1
                        if f.times <= 0:
                            self._faults.remove(f)
                    return f
        return None

    def _spoil(self, payload: bytes, fault: _Fault) -> bytes:
        """Image JSON (one image or a list) with the fault's image made unusable; the rest stay good."""
        doc = json.loads(payload)
        for image in doc if isinstance(doc, list) else [doc]:
            if fault.uuid not in (None, image["uuid"]):
                continue
            if fault.kind == "bad_metadata":
                image.update(width="abc", height=None)
                del image["url"]
            else:  # forbidden_url: same path, a port (or host) the service must not fetch from
                path = urlsplit(image["url"]).path
                image["url"] = fault.options.get("url") or f"http://{urlsplit(self.base_url).hostname}:1{path}"
        return json.dumps(doc).encode()

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


def _box_constraints(body: bytes) -> tuple[str | None, int, int | None]:
    """(concept, offset, limit) of a BoundingBoxConstraintsDTO body; ValueError if unusable.

    fathomnet-py sends every field, unset ones as null, so null means "not given".
    """
    args = json.loads(body or b"{}")
    if not isinstance(args, dict):
        raise ValueError("Expected a JSON object of constraints")
    concept, offset, limit = args.get("concept"), args.get("offset") or 0, args.get("limit")
    if concept is not None and not isinstance(concept, str):
        raise ValueError("concept must be a string")
    for name, value, least in (("offset", offset, 0), ("limit", limit, 1)):
        if value is not None and (type(value) is not int or value < least):
            raise ValueError(f"{name} must be an integer >= {least}")
    return concept, offset, limit


def _page(found: list[dict], offset: int, limit: int | None) -> dict:
    """One page of boxes, shaped like a Micronaut Page (fathomnet-py reads only "content")."""
    content = found[offset:] if limit is None else found[offset:offset + limit]
    size = limit or len(found) or 1
    return {"content": content, "totalSize": len(found), "totalPages": -(-len(found) // size),
            "size": size, "offset": offset, "pageNumber": offset // size,
            "numberOfElements": len(content), "empty": not content}


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
            if fault and fault.kind in _API_ONLY_KINDS and status == 200 and path.startswith("/api/images/"):
                payload = s._spoil(payload, fault)
            self._send_faulted(s, fault, target, path, status, ctype, payload)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _route(self, s, method, path, body):
        """-> (status, content type, body, fault target or None, uuids involved)."""
        json_type = "application/json"
        m = re.fullmatch(r"/api/images/([^/]+)", path)
        if method == "GET" and m:
            u = m.group(1).lower()
            if u in _NAME_BY_UUID:
                return 200, json_type, json.dumps(s.image_json(_NAME_BY_UUID[u])).encode(), "api", [u]
            return 404, json_type, _error_json(404, f"Image with uuid {m.group(1)} not found", path), "api", [u]
        if method == "POST" and path == "/api/images/query/uuids":
            try:
                wanted = json.loads(body)
                assert isinstance(wanted, list) and all(isinstance(u, str) for u in wanted)
            except (ValueError, AssertionError):
                return 400, json_type, _error_json(400, "Expected a JSON list of uuids", path), "api", []
            wanted = list(dict.fromkeys(u.lower() for u in wanted))  # dedupe, keep request order
            found = [s.image_json(_NAME_BY_UUID[u]) for u in wanted if u in _NAME_BY_UUID]
            return 200, json_type, json.dumps(found).encode(), "api", wanted
        if method == "POST" and path in ("/api/boundingboxes/query", "/api/boundingboxes/query/count"):
            try:
                concept, offset, limit = _box_constraints(body)
            except ValueError as e:
                return 400, json_type, _error_json(400, str(e), path), "api", []
            found = [b for b in _ALL_BOXES if concept in (None, b["concept"])]
            if path.endswith("/count"):
                return 200, json_type, json.dumps({"objectType": "BoundingBoxEntity", "count": len(found)}).encode(), \
                    "api", []
            page = _page(found, offset, limit)
            # A fault aimed at a box hits the query pages that hold it (e.g. "page 3 fails").
            return 200, json_type, json.dumps(page).encode(), "api", [b["uuid"] for b in page["content"]]
        m = re.fullmatch(r"/api/boundingboxes/query/count/(.+)", path)
        if method == "GET" and m:
            n = sum(1 for b in _ALL_BOXES if b["concept"] == m.group(1))
            return 200, json_type, json.dumps({"concept": m.group(1), "count": n}).encode(), "api", []
        m = re.fullmatch(r"/api/boundingboxes/([^/]+)", path)
        if method == "GET" and m:
            u = m.group(1).lower()
            if u in _BOX_BY_UUID:
                return 200, json_type, json.dumps(_BOX_BY_UUID[u]).encode(), "api", [u]
            return 404, json_type, _error_json(404, f"BoundingBox with uuid {m.group(1)} not found", path), "api", [u]
        name = _NAME_BY_PATH.get(path)
        if method == "GET" and name:
            r = s.image(name)
            return 200, r.content_type, r.data, "image", [r.uuid]
        return 404, json_type, _error_json(404, "No handler found", path), None, []

    def _send_faulted(self, s, fault, target, path, status, ctype, payload):
        kind, options = (fault.kind, fault.options) if fault else (None, {})
        if kind in ("404", "500", "503"):
            code = int(kind)
            if target == "api":
                return self._send(code, "application/json", _error_json(code, "Injected fault", path))
            return self._send(code, "text/html", _html(code, _REASONS[code]))
        if kind == "html":
            return self._send(200, "text/html; charset=utf-8", _html(200, "Welcome to FathomNet"))
        if kind == "bomb" and target == "image":
            return self._send(200, "image/png", _data("bomb"))
        if kind == "redirect":
            return self._send(302, "application/json", b"", headers={"Location": options["location"]})
        if kind == "deep_json":
            return self._send(200, "application/json", _deep_json())
        if kind == "gzip_bomb":
            # Content-Length is the small wire size; clients that inflate transparently get the GiB.
            return self._send(200, "application/json", _gzip_bomb(), headers={"Content-Encoding": "gzip"})
        if kind == "endless":
            return self._send_endless(s, float(options.get("gap", 0.05)),
                                      float(options.get("seconds", ENDLESS_SECONDS)))
        if kind == "corrupt":
            mid = len(payload) // 2
            span = slice(mid, mid + min(4096, len(payload) - mid))
            payload = payload[:span.start] + bytes(b ^ 0xA5 for b in payload[span]) + payload[span.stop:]
        if kind == "slow":
            s._sleep(s.slow_seconds)
        if kind == "truncated":
            self.close_connection = True  # announce all bytes, send half, hang up
            return self._send(status, ctype, payload, limit=len(payload) // 2)
        if kind == "hold":  # half the body, then wait for release(): mid-answer, deterministically
            half = len(payload) // 2
            return self._send(status, ctype, payload, step=half or 1, before_piece=s._hold)
        if kind == "trickle":
            gap = options.get("gap", s.trickle_gap)
            if gap is None:  # 20 pieces, each gap short: per-read timeouts never fire, only a total deadline
                return self._send(status, ctype, payload, step=-(-len(payload) // 20), gap=s.slow_seconds / 20)
            return self._send(status, ctype, payload, step=1, gap=float(gap))
        self._send(status, ctype, payload)

    def _send(self, status, ctype, payload, limit=None, step=None, gap=0.0, headers=None, before_piece=None):
        """Send an answer; with `step`, in pieces of that many bytes `gap` seconds apart (or after before_piece())."""
        s = self.server.standin
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        payload = payload if limit is None else payload[:limit]
        step = step or len(payload) or 1
        for i in range(0, len(payload), step):
            if i:
                s._sleep(gap)
                if before_piece:
                    before_piece()
                if s._stopping.is_set():  # stop() must not wait for a trickle to finish
                    self.close_connection = True
                    return
            self.wfile.write(payload[i:i + step])
            self.wfile.flush()

    def _send_endless(self, s, gap, seconds):
        """A 200 JSON answer that never ends: chunks of list items until the client hangs up,
        the stand-in stops or `seconds` pass; then hang up without the closing chunk."""
        self.close_connection = True  # the body never finishes, so the connection cannot be reused
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"1\r\n[\r\n")
        chunk = b"%x\r\n%s\r\n" % (len(_ENDLESS_CHUNK), _ENDLESS_CHUNK)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not s._stopping.is_set():
            self.wfile.write(chunk)  # raises once the client has hung up
            s._sleep(gap)

    def _control(self, s, method, path, body, query):
        ok = (200, "application/json", b'{"ok": true}')
        try:
            args = json.loads(body) if body else {}
        except ValueError:
            return 400, "application/json", _error_json(400, "Bad JSON", path)
        if method == "GET" and path == "/_standin/counts":
            if "uuid" in query:
                u = query["uuid"][0]
                counts = {"api": s.api_calls(u), "downloads": s.downloads(u)}
                return 200, "application/json", json.dumps(counts).encode()
            return 200, "application/json", json.dumps(s.counts()).encode()
        if method == "GET" and path == "/_standin/catalog":
            return 200, "application/json", json.dumps(s.catalog()).encode()
        if method == "POST" and path == "/_standin/reset":
            s.reset()
            return ok
        if method == "POST" and path == "/_standin/wait-held":
            held = s.wait_until_held(int(args.get("count", 1)), float(args.get("timeout", 10)))
            return 200, "application/json", json.dumps({"held": held}).encode()
        if method == "POST" and path == "/_standin/release":
            s.release()
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
            if "trickle_gap" in args:
                s.trickle_gap = None if args["trickle_gap"] is None else float(args["trickle_gap"])
            # Every other field is a fault option (location, url, gap, seconds); set_fault refuses typos.
            options = {k: v for k, v in args.items()
                       if k not in ("kind", "target", "uuid", "times", "slow_seconds", "trickle_gap")}
            try:
                s.set_fault(args["kind"], args.get("target", "image"), args.get("uuid"), args.get("times"), **options)
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
