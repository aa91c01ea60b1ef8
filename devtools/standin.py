"""A local stand-in for the FathomNet REST API and its image host.

The cropper's tests and benchmarks must not depend on fathomnet.org being up,
fast, or unchanged, and they need to provoke failures (timeouts, truncated
downloads, decompression bombs) that the real service never produces on
demand.  This module serves a small, deterministic catalog over real HTTP:

* ``GET  /api/images/{uuid}`` and ``POST /api/images/query/uuids`` answer with
  JSON shaped like FathomNet's (the fields fathomnet-py's ``AImageDTO`` reads,
  ``depthMeters``, ``latitude``, ``longitude``, ``timestamp``, ``imagingType``
  and ``contributorsEmail`` among them; some data-set images lack one, see below);
* ``GET  /api/boundingboxes/{uuid}`` answers one box shaped like
  fathomnet-py's ``BoundingBoxDTO`` (``imageUuid`` names its image), or a JSON 404.
  A box carries both the old ``verified``/``verifier``/``rejected`` fields and
  fathomnet-py 1.9's ``reviewState`` (VERIFIED, UNVERIFIED, REJECTED or UNKNOWN,
  ``REVIEW_STATES``)/``reviewer``, and ``occluded``, ``truncated``, ``observer``,
  ``altConcept`` (null);
* ``POST /api/boundingboxes/query`` takes a JSON object of
  ``BoundingBoxConstraintsDTO`` fields and answers a page object whose
  ``content`` is the list of boxes (fathomnet-py 1.9 ``boundingboxes.find``
  reads only ``content``).  Honoured:

  - ``concept`` (exact name); with ``taxaProviderName`` the concept and all its
    descendants in that provider's tree (a concept the tree lacks: itself only;
    an unknown provider is a 400, named or not with a concept);
  - ``minDepth``/``maxDepth`` (the image's ``depthMeters``), ``minLatitude``/
    ``maxLatitude``/``minLongitude``/``maxLongitude``, ``startTimestamp``/
    ``endTimestamp`` (ISO 8601; without a zone, UTC; the image's ``timestamp``),
    all bounds inclusive; an image lacking the field a bound tests fails it;
  - ``imagingTypes`` and ``contributorsEmails`` (lists: the image's
    ``imagingType``/``contributorsEmail`` is one of them; ``[]`` = not given);
  - ``includeVerified``, ``includeUnverified``, ``includeRejected``,
    ``includeUnknown``: true or false says whether boxes in that review state
    are answered; null or absent keeps FathomNet's default as we read it:
    verified, unverified and unknown in, rejected out (UNKNOWN arrived with the
    review states; before them every box not verified counted as unverified);
  - ``limit``, ``offset``.

  Null fields (pydantic sends them all) are "not given"; the other fields
  (``ownerInstitutionCodes``, ``tagKeys``, ``sort``) are ignored; a field of the
  wrong type is a 400.  Boxes come in ``id`` order, so paging is stable.  The
  other page fields (``totalSize``: the count under the constraints,
  ``totalPages``, ``size``, ``offset``, ``pageNumber``, ``numberOfElements``,
  ``empty``) follow Micronaut's Page.  ``find_boxes(constraints)`` gives tests
  what a query answers (all pages), ``image_fields(name)`` what a record says
  besides its url, size, hash and boxes;
* ``POST /api/boundingboxes/query/count`` (fathomnet-py ``boundingboxes.count``)
  answers ``{"objectType": "BoundingBoxEntity", "count": n}`` for the same
  constraints (limit/offset ignored), and ``GET /api/boundingboxes/query/count/{concept}``
  (``boundingboxes.count_by_concept``) answers ``{"concept": c, "count": n}``
  (every box of that exact name, whatever its review state);
* ``GET /api/boundingboxes/list/concepts`` (``boundingboxes.find_concepts``):
  every concept that has boxes, in code-point order (``concepts()``), and
  ``GET /api/boundingboxes/list/counts`` (``count_total_by_concept``): a
  ``{"concept", "count"}`` for each, in the same order;
* taxa, as fathomnet-py's ``taxa`` module asks: ``GET /api/taxa/list/providers``
  answers ``TAXA_PROVIDERS`` (``["fathomnet", "mbari"]``, the names
  fathomnet-py's tests use; real FathomNet also lists ``worms``, which recent
  fathomnet-py asks of another host); ``GET /api/taxa/query/{provider}/{concept}``
  the concept and all its descendants, depth first, as ``[{"name", "rank"}]``;
  ``GET /api/taxa/query/children/{provider}/{concept}`` its children (``[]`` for
  a leaf) and ``GET /api/taxa/query/parent/{provider}/{concept}`` its parent as
  one ``{"name", "rank"}``.  Children come in alphabetical order.  An unknown
  provider, a concept the provider does not know and the parent of the root
  (``TAXONOMY_ROOT``) are JSON 404s, as FathomNet's WoRMS server answers unknown
  names.  The tree (``_TAXONOMY``) runs Animalia > phylum > class > order >
  family > genus > species over every concept of the catalog (and a few taxa
  without boxes); the fathomnet provider spells ranks capitalised ("Genus"), the
  mbari one in lower case ("genus") and has two subphyla more (Tunicata above
  Appendicularia, Vertebrata above Actinopterygii).  ``taxon_descendants``,
  ``taxon_children``, ``taxon_parent`` and ``taxon_rank`` give it to tests;
* ``GET /images/<path>`` serves the image bytes; like real FathomNet URLs the
  paths contain a space (``Doc%20Ricketts``);
* ``/_standin/...`` control endpoints (counts, reset, fault, latency,
  catalog, and the edits below) steer a stand-in running in another process.
  They are neither counted, delayed nor faulted.

The catalog.  The framegrab-0..9 images (``ANNOTATED_NAMES``) carry a hand-made
annotation set (see ``MULTIPAGE_CONCEPT``, ``EDGE_BOXES``): boxes of one concept
over ten images, boxes on every image edge and boxes that overhang the frame, as
real FathomNet has.  ``boxes(name)``, ``box(uuid)`` and ``concept_boxes(concept)``
give them to tests.  survey-0..9 (``SURVEY_NAMES``) have ten boxes each of
``SURVEY_CONCEPT`` (the bench's batches and concept pages of 100).  The
``iiif-validator`` entry is the IIIF validator's 10x10 colour-grid test image.
dataset-0..11 (``DATASET_NAMES``) are for training-set jobs: boxes of
``DATASET_CONCEPTS`` at several ranks (``DATASET_GENUS`` Atolla with two species,
``DATASET_FAMILY`` Myctophidae with a species, ``DATASET_ORDER`` Siphonophorae
with a genus; no other image has these concepts) in all four review states, occluded
and truncated or not, over depths of 85-3100 m, Monterey Bay and the Gulf of
California, 2015-2023, ROV/AUV/Towed camera and three contributors; dataset-9 has
no position (null), dataset-10 no depth (the key is absent) and dataset-11 no
timestamp (null).  ``DATASET_BOXES`` names hand-placed ones, all VERIFIED:
``DATASET_TINY_BOXES`` (a side under 16 px; ``side-16`` is exactly 16x16),
``DATASET_PAST_EDGE_BOXES`` (reach past an edge) and ``DATASET_OUTSIDE_BOXES``
(wholly outside their image: nothing to crop).  bench-0..99 (``BENCH_NAMES``,
1280x720) have ten boxes each of ``BENCH_DATASET_CONCEPT``, 1,000 in all.  Every
image's bytes are made on first use and kept, so the stand-in starts fast.

Edits (methods, or POST the same fields as JSON to the control endpoint; each
answers the box as JSON or ``{"ok": true}``, 404 for an unknown box or image, 400
for bad fields; ``reset()`` undoes them all):
``edit_box(uuid, concept=, x=, y=, width=, height=)`` (``/_standin/edit-box``),
``delete_box(uuid)`` (``/_standin/delete-box``), ``withdraw_image(image)``
(``/_standin/withdraw-image``; name or uuid: its record and its bytes are 404, its
boxes leave every answer) and ``add_box(image, concept, x, y, width, height,
review_state="UNVERIFIED", parent=None, rank="Species")`` (``/_standin/add-box``,
``reviewState``; any concept name, hostile HTML too; with ``parent`` the concept
also joins both providers' trees under that taxon).  Every FathomNet answer
afterwards reflects them: image records' ``boundingBoxes``, box lookups, queries
(taxa included), counts, the concept list and the taxa endpoints.  The
module-level helpers (``boxes``, ``find_boxes``, ``concepts``...) describe the
catalog as it is before any edit.

Looks: ``FathomNetStandIn(look="scenes")`` (``--look scenes``, used by the demo)
draws the images of ``SCENE_NAMES`` (framegrab, the annotated, survey, data-set
and bench families) as dark-blue water with marine snow and, at each box of the
catalog, an animal of its concept's kind in a colour that stands out (a medusa,
a siphonophore chain, a fish or lanternfish, a larvacean house, a squid, a crab;
see devtools/scenes.py).  The default look, ``patterns``, is what every test's
pixels are; the two differ only in those images' bytes.

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

    python -m devtools.standin --port 8001 --latency-ms 50 [--look scenes]

Request paths are recorded *unquoted* (``/images/Doc Ricketts/...``);
``count()`` unquotes its argument, so either spelling can be passed.
"""
from __future__ import annotations

import argparse
import array
import contextlib
import hashlib
import io
import json
import math
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
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from PIL import Image, ImageChops, ImageDraw

from devtools import scenes

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
# The data set for training-set jobs: twelve images (eight 1920x1080, four 1280x720) with boxes of
# several concepts at several taxonomic ranks, spread over depths, places, times, review states and
# flags, with tiny boxes and boxes past or wholly outside their image (see DATASET_BOXES).
DATASET_NAMES = tuple(f"dataset-{i}" for i in range(12))
_ENTRIES += [_Entry(n, *((1920, 1080) if i < 8 else (1280, 720)), "RGB", "PNG",
                    _rgb_png(*((1920, 1080) if i < 8 else (1280, 720)), 300 + i)) for i, n in enumerate(DATASET_NAMES)]
# The bench's data set: 100 images of 1280x720 with ten boxes each of BENCH_DATASET_CONCEPT (1,000 boxes).
BENCH_NAMES = tuple(f"bench-{i}" for i in range(100))
_ENTRIES += [_Entry(n, 1280, 720, "RGB", "PNG", _rgb_png(1280, 720, 1000 + i)) for i, n in enumerate(BENCH_NAMES)]
_BY_NAME = {e.name: e for e in _ENTRIES}
_INDEX = {e.name: i for i, e in enumerate(_ENTRIES)}  # an entry's position sets its path and ids
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
# -- image metadata (AImageDTO fields besides url, size, sha256 and boxes).  The first 32 images keep
# the values they always had; the data-set family spreads over depths, places, times, imaging types
# and contributors, and three of its images lack a field on purpose (see _DATASET_SITES).
CONTRIBUTOR = "standin@example.org"  # contributorsEmail of every image but the data set's


def _stock_meta(i: int) -> dict:
    return {
        "imagingType": "ROV", "timestamp": f"2019-07-{1 + i % 28:02d}T02:{i:02d}:32.000Z",
        "lastValidation": "2021-06-01T00:00:00.000Z", "createdTimestamp": "2021-06-01T12:00:00.000Z",
        "lastUpdatedTimestamp": "2021-06-02T08:30:00.000Z", "depthMeters": 200.0 + 37.5 * i,
        "latitude": 36.7 + i / 1000, "longitude": -122.05 - i / 1000, "altitude": None, "oxygenMlL": 0.42,
        "pressureDbar": 201.3 + 37 * i, "salinity": 34.1, "temperatureCelsius": 8.7, "contributorsEmail": CONTRIBUTOR,
        "tags": [],
    }


# dataset-i: depth (m), latitude, longitude, timestamp, imaging type, contributor.  None is sent as
# null, except dataset-10's depth, which its JSON leaves out altogether (both happen upstream).
_DATASET_SITES = (
    (85.0, 36.80, -121.90, "2015-03-14T17:05:00.000Z", "ROV", "pilot@example.org"),
    (240.0, 36.75, -122.00, "2016-06-02T19:30:00.000Z", "ROV", "pilot@example.org"),
    (410.0, 36.70, -122.05, "2017-08-21T21:12:00.000Z", "ROV", "lab@example.org"),
    (650.0, 36.69, -122.10, "2018-02-09T16:45:00.000Z", "AUV", "lab@example.org"),
    (820.0, 36.65, -122.15, "2018-11-30T18:00:00.000Z", "AUV", "pilot@example.org"),
    (1010.0, 36.60, -122.25, "2019-05-17T20:20:00.000Z", "ROV", "survey@example.org"),
    (1500.0, 36.55, -122.40, "2020-09-05T22:10:00.000Z", "Towed camera", "survey@example.org"),
    (2200.0, 36.45, -122.60, "2021-04-12T15:55:00.000Z", "ROV", "pilot@example.org"),
    (3100.0, 27.10, -111.40, "2022-01-25T14:00:00.000Z", "ROV", "lab@example.org"),  # Gulf of California
    (520.0, None, None, "2022-07-08T10:30:00.000Z", "ROV", "survey@example.org"),      # no position
    (None, 36.72, -122.02, "2023-03-03T12:00:00.000Z", "AUV", "pilot@example.org"),   # no depth (key left out)
    (300.0, 36.78, -121.95, None, "Towed camera", "lab@example.org"),                 # no time
)


def _meta(name: str) -> dict:
    i = _INDEX[name]
    if name in DATASET_NAMES:
        n = DATASET_NAMES.index(name)
        depth, lat, lon, when, kind, email = _DATASET_SITES[n]
        meta = {**_stock_meta(0), "imagingType": kind, "timestamp": when, "depthMeters": depth, "latitude": lat,
                "longitude": lon, "pressureDbar": None if depth is None else round(depth * 1.0094, 1),
                "temperatureCelsius": round(max(1.6, 12.5 - 0.006 * (depth or 300)), 2), "contributorsEmail": email}
        if depth is None:
            del meta["depthMeters"]
        return meta
    if name in BENCH_NAMES:
        n = BENCH_NAMES.index(name)
        return {**_stock_meta(0), "timestamp": f"2023-05-{1 + n // 10:02d}T{8 + n % 10:02d}:15:00.000Z",
                "depthMeters": 300.0 + 7 * n, "latitude": 36.7 + n / 2000, "longitude": -122.1 + n / 2000,
                "pressureDbar": round((300.0 + 7 * n) * 1.0094, 1), "contributorsEmail": "bench@example.org"}
    return _stock_meta(i)


_META = {name: _meta(name) for name in CATALOG_NAMES}


def image_fields(name: str) -> dict:
    """The image record's fields besides id, uuid, url, valid, size, sha256, contentType and
    boundingBoxes (depthMeters, latitude, longitude, timestamp, imagingType, contributorsEmail...),
    without making its pixels.  A key the record leaves out is left out here too."""
    return dict(_META[name])


def _when(text: str) -> datetime:
    """An ISO 8601 time as an aware datetime (a time without a zone is UTC); ValueError if it is not one."""
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


# What the query constraints test, per image: depth, latitude, longitude, time, imaging type, contributor.
_WHERE = {name: (m.get("depthMeters"), m.get("latitude"), m.get("longitude"),
                 _when(m["timestamp"]) if m.get("timestamp") else None, m.get("imagingType"),
                 m.get("contributorsEmail"))
          for name, m in _META.items()}

# -- taxonomy: the taxa providers' trees.  One text for both: a line is "name: Rank", indented under
# its parent; "[mbari]" marks a rank only the mbari tree has (MBARI's knowledge base has subphyla;
# the fathomnet tree, from WoRMS, goes from phylum to class).  The fathomnet provider spells ranks
# capitalised ("Genus", as fathomnet-py's test_taxa expects), mbari in lower case ("species", as
# fathomnet-py's README shows).  Children are listed in alphabetical order, as FathomNet's WoRMS
# server lists them.
TAXA_PROVIDERS = ("fathomnet", "mbari")
TAXONOMY_ROOT = "Animalia"
_TAXONOMY = """
Animalia: Kingdom
  Arthropoda: Phylum
    Malacostraca: Class
      Decapoda: Order
        Oregoniidae: Family
          Chionoecetes: Genus
            Chionoecetes tanneri: Species
  Chordata: Phylum
    Tunicata: Subphylum [mbari]
      Appendicularia: Class
        Copelata: Order
          Oikopleuridae: Family
            Bathochordaeus: Genus
              Bathochordaeus charon: Species
              Bathochordaeus mcnutti: Species
              Bathochordaeus stygius: Species
    Vertebrata: Subphylum [mbari]
      Actinopterygii: Class
        Myctophiformes: Order
          Myctophidae: Family
            Stenobrachius: Genus
              Stenobrachius leucopsarus: Species
        Scorpaeniformes: Order
          Sebastidae: Family
            Sebastolobus: Genus
              Sebastolobus alascanus: Species
              Sebastolobus altivelis: Species
  Cnidaria: Phylum
    Hydrozoa: Class
      Narcomedusae: Order
        Solmarisidae: Family
          Solmissus: Genus
      Siphonophorae: Order
        Agalmatidae: Family
          Nanomia: Genus
            Nanomia bijuga: Species
        Apolemiidae: Family
          Apolemia: Genus
      Trachymedusae: Order
        Rhopalonematidae: Family
          Benthocodon: Genus
            Benthocodon pedunculata: Species
    Scyphozoa: Class
      Coronatae: Order
        Atollidae: Family
          Atolla: Genus
            Atolla vanhoeffeni: Species
            Atolla wyvillei: Species
      Semaeostomeae: Order
        Ulmaridae: Family
          Aurelia: Genus
            Aurelia aurita: Species
            Aurelia labiata: Species
  Mollusca: Phylum
    Cephalopoda: Class
      Oegopsida: Order
        Chiroteuthidae: Family
          Chiroteuthis: Genus
            Chiroteuthis calyx: Species
"""


class _Tree:
    """One provider's taxonomic tree: each name's parent (None at the root) and rank."""

    def __init__(self, parent: dict[str, str | None], rank: dict[str, str]):
        self.parent, self.rank = parent, rank
        kids: dict[str | None, list[str]] = {}
        for name, up in parent.items():
            kids.setdefault(up, []).append(name)
        self._kids = {up: sorted(names) for up, names in kids.items()}

    def __contains__(self, name) -> bool:
        return name in self.rank

    def children(self, name: str) -> list[str]:
        return self._kids.get(name, [])

    def descendants(self, name: str) -> list[str]:
        """The name and everything under it, depth first, children in alphabetical order."""
        out, todo = [], [name]
        while todo:
            out.append(todo.pop())
            todo.extend(reversed(self.children(out[-1])))
        return out

    def grown(self, added: dict[str, tuple[str, str]]) -> "_Tree":
        """This tree with more names: {name: (parent, rank)}."""
        return _Tree({**self.parent, **{n: up for n, (up, _) in added.items()}},
                     {**self.rank, **{n: rank for n, (_, rank) in added.items()}})


def _parse_taxonomy() -> dict[str, _Tree]:
    trees = {}
    for provider in TAXA_PROVIDERS:
        parent, rank, stack = {}, {}, []  # stack: (indent, name, only-in-provider)
        for line in _TAXONOMY.strip("\n").splitlines():
            indent, text = len(line) - len(line.lstrip()), line.strip()
            only = None
            if text.endswith("]"):
                text, only = text[:-1].rsplit(" [", 1)
            name, level = text.split(": ")
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, name, only))
            if only not in (None, provider):
                continue
            parent[name] = next((n for _, n, o in reversed(stack[:-1]) if o in (None, provider)), None)
            rank[name] = level if provider == "fathomnet" else level.lower()
        trees[provider] = _Tree(parent, rank)
    return trees


_TREES = _parse_taxonomy()


def _tree(provider: str) -> _Tree:
    if provider not in _TREES:
        raise KeyError(f"No taxa provider named {provider!r}")
    return _TREES[provider]


def taxon_descendants(concept: str, provider: str = "fathomnet") -> list[str]:
    """The concept and all its descendants, as GET /api/taxa/query/{provider}/{concept} lists them."""
    if concept not in _tree(provider):
        raise KeyError(f"{concept!r} is not in the {provider} taxonomy")
    return _tree(provider).descendants(concept)


def taxon_children(concept: str, provider: str = "fathomnet") -> list[str]:
    if concept not in _tree(provider):
        raise KeyError(f"{concept!r} is not in the {provider} taxonomy")
    return _tree(provider).children(concept)


def taxon_parent(concept: str, provider: str = "fathomnet") -> str | None:
    """The concept's parent; None for the root."""
    return _tree(provider).parent[concept]


def taxon_rank(concept: str, provider: str = "fathomnet") -> str:
    return _tree(provider).rank[concept]


_CONCEPTS = ["Bathochordaeus", "Sebastolobus", "Aurelia aurita", "Nanomia bijuga", "Chionoecetes tanneri"]


REVIEW_STATES = ("VERIFIED", "UNVERIFIED", "REJECTED", "UNKNOWN")  # fathomnet-py 1.9's ReviewState


def _box(name: str, i: int, concept: str, x: int, y: int, width: int, height: int, truncated: bool = False,
         review: str | None = None, occluded: bool = False, observer: str = "standin") -> dict:
    """Box i of an image, with the fields of fathomnet-py's BoundingBoxDTO (review: alternating
    VERIFIED and UNVERIFIED when not given)."""
    return _box_record(5_000_000 + 10 * _INDEX[name] + i, str(uuidlib.uuid5(NAMESPACE, f"{name}/box/{i}")), name,
                       concept, x, y, width, height, review or ("VERIFIED" if i % 2 == 0 else "UNVERIFIED"),
                       truncated, occluded, observer, f"standin-{name}-{i}")


def _box_record(box_id: int, box_uuid: str, name: str, concept: str, x: int, y: int, width: int, height: int,
                review: str, truncated: bool, occluded: bool, observer: str, key: str) -> dict:
    """A box's JSON.  Both the older verified/verifier fields and fathomnet-py 1.9's
    reviewState/reviewer are filled, so readers of either version find theirs: verified is
    true for VERIFIED only, rejected for REJECTED only; a reviewer is named for both."""
    verified, reviewed = review == "VERIFIED", review in ("VERIFIED", "REJECTED")
    return {
        "id": box_id, "uuid": box_uuid,
        "concept": concept, "altConcept": None,
        "x": x, "y": y, "width": width, "height": height,
        "imageUuid": CATALOG_NAMES[name], "observer": observer,
        "verified": verified, "verifier": "standin-reviewer" if verified else None,
        "verificationTimestamp": "2021-06-03T09:00:00.000Z" if verified else None,
        "reviewState": review,
        "reviewer": "standin-reviewer" if reviewed else None,
        "lastReviewedTimestamp": "2021-06-03T09:00:00.000Z" if reviewed else None,
        "rejected": review == "REJECTED", "occluded": occluded, "truncated": truncated, "groupOf": False,
        "userDefinedKey": key,
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


def _seeded_boxes(name: str, concept: str, image_size, widths, heights) -> list[dict]:
    """Ten boxes of one concept inside the image, their sides drawn from widths and heights (min, max),
    seeded by the image's name."""
    rng = random.Random(name)
    out = []
    for i in range(10):
        bw, bh = rng.randint(*widths), rng.randint(*heights)
        out.append(_box(name, i, concept, rng.randrange(image_size[0] - bw), rng.randrange(image_size[1] - bh),
                        bw, bh))
    return out


# -- the data set: dataset-0..11, for training-set jobs.  Six seeded boxes an image (sides 20 to 420 px,
# inside the image) cycle through the concepts (a genus with two species under it, a family with a
# species, a genus and an order of siphonophores), the four review states and the occluded/truncated
# flags; then the hand-placed boxes of _DATASET_SPECS.  None of these concepts is used outside the family.
DATASET_GENUS = "Atolla"            # with boxes of its own and of both its species
DATASET_FAMILY = "Myctophidae"      # with boxes of its own and of Stenobrachius leucopsarus
DATASET_ORDER = "Siphonophorae"     # with boxes of its own and of the genus Apolemia
DATASET_CONCEPTS = ("Atolla", "Atolla wyvillei", "Atolla vanhoeffeni", "Myctophidae", "Stenobrachius leucopsarus",
                    "Apolemia", "Siphonophorae")
_REVIEW_CYCLE = ("VERIFIED", "UNVERIFIED", "VERIFIED", "REJECTED", "VERIFIED", "UNVERIFIED", "VERIFIED", "UNKNOWN",
                 "VERIFIED", "UNVERIFIED")
# label: (dataset image, concept, x, y, width, height); all VERIFIED, so the defaults keep them.
# tiny-*: a side under 16 px; side-16: both sides exactly 16; past-*: reach past an edge (a crop
# clips them); outside-*: wholly outside the image (nothing to crop: a job lists them as failed).
_DATASET_SPECS = {
    "tiny-8x6": (1, "Stenobrachius leucopsarus", 400, 300, 8, 6),
    "tiny-12x10": (4, "Atolla wyvillei", 1500, 200, 12, 10),
    "tiny-15x30": (7, "Apolemia", 800, 900, 15, 30),
    "side-16": (2, "Atolla", 1200, 500, 16, 16),
    "past-left": (3, "Atolla vanhoeffeni", -60, 400, 220, 180),
    "past-bottom": (6, "Myctophidae", 700, 980, 260, 160),         # 1920x1080: to y 1140
    "past-right": (10, "Siphonophorae", 1180, 200, 200, 300),      # 1280x720: to x 1380
    "outside-right": (5, "Atolla", 2000, 300, 150, 150),           # starts past x 1920
    "outside-top": (9, "Myctophidae", 300, -400, 200, 200),        # ends at y -200
    "outside-far": (11, "Stenobrachius leucopsarus", -5000, -5000, 300, 200),
}


def _dataset_boxes(name: str) -> tuple[list[dict], dict[str, str]]:
    n, e, rng = DATASET_NAMES.index(name), _BY_NAME[name], random.Random(name)
    out, labels = [], {}
    for i in range(6):
        k = 6 * n + i
        concept = DATASET_CONCEPTS[k % len(DATASET_CONCEPTS)]
        side = (rng.randint(48, 80), rng.randint(80, 200), rng.randint(200, 420))[k % 3]
        if concept in ("Myctophidae", "Stenobrachius leucopsarus"):
            bw, bh = side, max(20, side * 9 // 20)       # fish: long
        elif concept in ("Apolemia", "Siphonophorae"):
            bw, bh = max(20, side * 3 // 10), side       # siphonophores: tall
        else:
            bw, bh = side * 4 // 5, side                 # medusae
        bw, bh = min(bw, e.width - 2), min(bh, e.height - 2)
        out.append(_box(name, i, concept, rng.randrange(1, e.width - bw), rng.randrange(1, e.height - bh), bw, bh,
                        truncated=k % 4 == 3, review=_REVIEW_CYCLE[k % 10], occluded=k % 3 == 1,
                        observer=("standin", "annotator@example.org")[k % 2]))
    for label, (image, concept, *xywh) in _DATASET_SPECS.items():
        if image == n:
            past = label.startswith(("past", "outside"))
            out.append(_box(name, len(out), concept, *xywh, truncated=past, review="VERIFIED"))
            labels[label] = out[-1]["uuid"]
    return out, labels


# -- the bench's data set: bench-0..99, ten seeded boxes each, all of BENCH_DATASET_CONCEPT, inside the image.
BENCH_DATASET_CONCEPT = "Solmissus"


def _all_boxes() -> tuple[dict[str, list[dict]], dict[str, str]]:
    by_image, edge_boxes, dataset_boxes = {}, {}, {}
    for name in CATALOG_NAMES:
        if name in ANNOTATED_NAMES:
            by_image[name], labels = _annotated_boxes(name)
            edge_boxes.update(labels)
        elif name in SURVEY_NAMES:
            by_image[name] = _seeded_boxes(name, SURVEY_CONCEPT, (1920, 1080), (120, 480), (80, 320))
        elif name in DATASET_NAMES:
            by_image[name], labels = _dataset_boxes(name)
            dataset_boxes.update(labels)
        elif name in BENCH_NAMES:
            by_image[name] = _seeded_boxes(name, BENCH_DATASET_CONCEPT, (1280, 720), (60, 260), (60, 220))
        else:
            by_image[name] = _random_boxes(name)
    return (by_image, {label: edge_boxes[label] for label in _EDGE_SPECS},
            {label: dataset_boxes[label] for label in _DATASET_SPECS})


# EDGE_BOXES: edge label (see _EDGE_SPECS) -> box uuid; DATASET_BOXES: likewise for _DATASET_SPECS.
_BOXES, EDGE_BOXES, DATASET_BOXES = _all_boxes()
DATASET_TINY_BOXES = tuple(u for label, u in DATASET_BOXES.items() if label.startswith("tiny"))
DATASET_PAST_EDGE_BOXES = tuple(u for label, u in DATASET_BOXES.items() if label.startswith("past"))
DATASET_OUTSIDE_BOXES = tuple(u for label, u in DATASET_BOXES.items() if label.startswith("outside"))
EDGE_BOX = EDGE_BOXES["right"]             # on framegrab-2, x + width == image width
PAST_EDGE_BOX = EDGE_BOXES["past-left"]    # on framegrab-7, x == -40
_BOX_BY_UUID = {b["uuid"]: b for bs in _BOXES.values() for b in bs}
_ALL_BOXES = sorted(_BOX_BY_UUID.values(), key=lambda b: b["id"])  # API order


# -- box queries: POST /api/boundingboxes/query and /query/count take BoundingBoxConstraintsDTO fields.
# fathomnet-py sends every field, unset ones as null, so null means "not given", as does an empty list.
# Review states: include<State> true or false says whether boxes in that state are answered; null
# or absent keeps FathomNet's default, which (as we read it) answers verified, unverified and unknown
# boxes and leaves out rejected ones -- UNKNOWN came with the review states, and before them every
# box not verified counted as unverified, so a query that names no state still gets them.
_STATE_FLAGS = {"includeVerified": ("VERIFIED", True), "includeUnverified": ("UNVERIFIED", True),
                "includeRejected": ("REJECTED", False), "includeUnknown": ("UNKNOWN", True)}
_BOUNDS = {"minDepth": 0, "maxDepth": 0, "minLatitude": 1, "maxLatitude": 1, "minLongitude": 2, "maxLongitude": 2}


@dataclass(frozen=True)
class _Query:
    concept: str | None = None
    provider: str | None = None
    bounds: tuple = ()                  # (index into _WHERE's tuple, lowest or None, highest or None)
    start: datetime | None = None
    end: datetime | None = None
    imaging_types: frozenset | None = None
    emails: frozenset | None = None
    states: frozenset = frozenset({"VERIFIED", "UNVERIFIED", "UNKNOWN"})
    offset: int = 0
    limit: int | None = None


def _query(args) -> _Query:
    """The constraints of a BoundingBoxConstraintsDTO object; ValueError (a 400) if they cannot be used."""
    if not isinstance(args, dict):
        raise ValueError("Expected a JSON object of constraints")
    for name in ("concept", "taxaProviderName", "startTimestamp", "endTimestamp"):
        if args.get(name) is not None and not isinstance(args[name], str):
            raise ValueError(f"{name} must be a string")
    offset, limit = args.get("offset") or 0, args.get("limit")
    for name, value, least in (("offset", offset, 0), ("limit", limit, 1)):
        if value is not None and (type(value) is not int or value < least):
            raise ValueError(f"{name} must be an integer >= {least}")
    provider = args.get("taxaProviderName")
    if provider is not None and provider not in _TREES:
        raise ValueError(f"No taxa provider named {provider!r}; there are {', '.join(TAXA_PROVIDERS)}")
    limits: dict[int, list] = {}
    for name, index in _BOUNDS.items():
        value = args.get(name)
        if value is None:
            continue
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f"{name} must be a number")
        limits.setdefault(index, [None, None])[name.startswith("max")] = value
    times = {}
    for name in ("startTimestamp", "endTimestamp"):
        if args.get(name) is not None:
            try:
                times[name] = _when(args[name])
            except ValueError:
                raise ValueError(f"{name} must be an ISO 8601 time, e.g. 2019-07-01T00:00:00Z") from None
    sets = {}
    for name in ("imagingTypes", "contributorsEmails"):
        value = args.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"{name} must be a list of strings")
        sets[name] = frozenset(value) if value else None
    states = set()
    for name, (state, default) in _STATE_FLAGS.items():
        value = args.get(name)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"{name} must be true, false or null")
        if default if value is None else value:
            states.add(state)
    return _Query(args.get("concept"), provider, tuple((i, lo, hi) for i, (lo, hi) in sorted(limits.items())),
                  times.get("startTimestamp"), times.get("endTimestamp"), sets["imagingTypes"],
                  sets["contributorsEmails"], frozenset(states), offset, limit)


def _review_state(b: dict) -> str:
    state = b.get("reviewState")
    if state in REVIEW_STATES:
        return state
    return "REJECTED" if b.get("rejected") else "VERIFIED" if b.get("verified") else "UNVERIFIED"


def _image_matches(name: str, q: _Query) -> bool:
    """Whether an image passes the query's image constraints; one lacking a field a constraint tests fails it."""
    where = _WHERE[name]
    for index, lowest, highest in q.bounds:
        value = where[index]
        if value is None or (lowest is not None and value < lowest) or (highest is not None and value > highest):
            return False
    if q.start or q.end:
        when = where[3]
        if when is None or (q.start and when < q.start) or (q.end and when > q.end):
            return False
    if q.imaging_types is not None and where[4] not in q.imaging_types:
        return False
    return q.emails is None or where[5] in q.emails


def _select(candidates: list[dict], q: _Query, trees: dict[str, _Tree]) -> list[dict]:
    """The boxes (in the order given) that meet the query, paging aside.  With a taxa provider, a
    concept in its tree stands for itself and all its descendants; one it lacks, for itself."""
    names = None
    if q.concept is not None:
        tree = trees[q.provider] if q.provider else None
        names = set(tree.descendants(q.concept)) if tree and q.concept in tree else {q.concept}
    images = {}
    found = []
    for b in candidates:
        if names is not None and b["concept"] not in names:
            continue
        if _review_state(b) not in q.states:
            continue
        name = _NAME_BY_UUID[b["imageUuid"]]
        if name not in images:
            images[name] = _image_matches(name, q)
        if images[name]:
            found.append(b)
    return found


def boxes(name: str) -> list[dict]:
    """The boxes of a catalog image, as its JSON lists them (copies: tests may edit them)."""
    return [dict(b) for b in _BOXES[name]]


def box(uuid: str) -> dict:
    return dict(_BOX_BY_UUID[uuid.lower()])


def concept_boxes(concept: str) -> list[dict]:
    """All boxes of a concept, in the order POST /api/boundingboxes/query pages through them."""
    return [dict(b) for b in _ALL_BOXES if b["concept"] == concept]


def find_boxes(constraints: dict | None = None, **fields) -> list[dict]:
    """The catalog's boxes that POST /api/boundingboxes/query answers for these constraints (a dict
    of BoundingBoxConstraintsDTO fields, or keyword arguments), in its order, all pages together
    (limit and offset are ignored).  Before any edit; ValueError where the stand-in answers 400."""
    q = _query({**(constraints or {}), **fields})
    return [dict(b) for b in _select(_ALL_BOXES, q, _TREES)]


def concepts() -> list[str]:
    """Every concept with boxes, as GET /api/boundingboxes/list/concepts lists them (before any edit)."""
    return sorted({b["concept"] for b in _ALL_BOXES})


# -- looks: "patterns" (the default; every test's pixels) or "scenes" (the demo's): the families of
# annotated images (SCENE_NAMES) drawn as deep-sea water with marine snow and, at each box of the
# catalog (before edits), an animal of its concept's kind (devtools/scenes.py).  Other images look
# the same either way: their formats are what they are for.
LOOKS = ("patterns", "scenes")
SCENE_NAMES = ("framegrab", *ANNOTATED_NAMES, *SURVEY_NAMES, *DATASET_NAMES, *BENCH_NAMES)
# What each taxon looks like in a scene: the nearest listed ancestor (or the taxon itself) decides.
_KIND_OF = {"Siphonophorae": "siphonophore", "Cnidaria": "medusa", "Appendicularia": "larvacean",
            "Myctophidae": "lanternfish", "Actinopterygii": "fish", "Cephalopoda": "squid", "Decapoda": "crab"}
_COLOR_OF = {"Atolla": (205, 25, 45), "Aurelia": (248, 196, 222), "Benthocodon": (250, 105, 40),
             "Solmissus": (205, 150, 255), "Nanomia": (255, 178, 60), "Siphonophorae": (255, 140, 90),
             "Bathochordaeus": (185, 235, 255), "Myctophidae": (160, 178, 210), "Sebastolobus": (240, 84, 36),
             "Chiroteuthis": (225, 55, 90), "Chionoecetes": (250, 125, 40)}


def _figure(concept: str, x: int, y: int, width: int, height: int) -> scenes.Figure:
    tree, kind, color = _TREES["fathomnet"], "blob", (120, 255, 160)
    name = concept if concept in tree else None
    while name is not None:
        if kind == "blob" and name in _KIND_OF:
            kind = _KIND_OF[name]
        if color == (120, 255, 160) and name in _COLOR_OF:
            color = _COLOR_OF[name]
        name = tree.parent[name]
    return scenes.Figure(kind, color, x, y, width, height)


def _scene(name: str) -> bytes:
    e = _BY_NAME[name]
    figures = [_figure(b["concept"], b["x"], b["y"], b["width"], b["height"]) for b in _BOXES[name]]
    return _png(scenes.render(e.width, e.height, figures, seed=name))


# Generated bytes are shared by all stand-ins in the process (they do not
# depend on the port); a lock per name stops 32 concurrent first requests
# from generating the same 4K PNG 32 times.
_DATA: dict[tuple[str, str], bytes] = {}
_LOCKS = {n: threading.Lock() for n in CATALOG_NAMES}


def _data(name: str, look: str = "patterns") -> bytes:
    key = (name, look if name in SCENE_NAMES else "patterns")
    with _LOCKS[name]:
        if key not in _DATA:
            _DATA[key] = _scene(name) if key[1] == "scenes" else _BY_NAME[name].make()
        return _DATA[key]


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


@dataclass
class _Edits:
    """What edit_box, delete_box, withdraw_image and add_box changed since the last reset."""
    changed: dict[str, dict] = field(default_factory=dict)   # box uuid -> new fields
    deleted: set[str] = field(default_factory=set)           # box uuids
    withdrawn: set[str] = field(default_factory=set)         # image names
    added: dict[str, list[dict]] = field(default_factory=dict)  # image name -> added boxes
    taxa: dict[str, tuple[str, str]] = field(default_factory=dict)  # concept -> (parent, rank) in every tree
    serial: int = 0                                            # boxes added so far

    def untouched(self) -> bool:
        return not (self.changed or self.deleted or self.withdrawn or self.added)


def _catalog_name(image: str) -> str:
    """The catalog name of an image given by name or uuid; KeyError if there is none."""
    if image in _BY_NAME:
        return image
    if str(image).lower() in _NAME_BY_UUID:
        return _NAME_BY_UUID[str(image).lower()]
    raise KeyError(f"No image {image}")


class FathomNetStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0, look: str = "patterns"):
        if look not in LOOKS:
            raise ValueError(f"look must be one of {', '.join(LOOKS)}")
        self.host, self._want_port, self.latency, self.look = host, port, latency, look
        self.slow_seconds = 5.0
        # Seconds between single bytes of a trickle fault without its own gap; None keeps
        # the old trickle: 20 pieces spread over slow_seconds.
        self.trickle_gap: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._held = threading.Condition(self._lock)  # answers stopped half-way by a hold fault
        self._holding = 0
        self._downloading = 0
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

    def draw_ahead(self) -> threading.Thread:
        """Draw every image now, in a thread of its own: a first download then answers as fast as FathomNet's
        image hosts do, where a drawing (up to half a second, more on a busy machine) could outlast a test
        service's one-second READ_TIMEOUT. An image asked for meanwhile is drawn at once (its own lock)."""
        def draw():
            for entry in _ENTRIES:
                if self._stopping.is_set():
                    return
                _data(entry.name, self.look)

        thread = threading.Thread(target=draw, name="fathomnet-standin-draw", daemon=True)
        thread.start()
        return thread

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
        e, data = _BY_NAME[name], _data(name, self.look)
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
        """The image's JSON as GET /api/images/{uuid} answers it, edits included (also once withdrawn)."""
        r = self.image(name)
        with self._lock:
            found = self._image_boxes(name)
        return {
            "id": 2_000_000 + _INDEX[name], "uuid": r.uuid, "url": r.url, "valid": True,
            "width": r.width, "height": r.height, "sha256": r.sha256, "contentType": r.content_type,
            **_META[name], "boundingBoxes": found,
        }

    # -- edits: each FathomNet answer reflects them until reset()
    def edit_box(self, uuid: str, *, concept: str | None = None, x: int | None = None, y: int | None = None,
                 width: int | None = None, height: int | None = None) -> dict:
        """Change a box's concept and/or region; returns the box as now answered. KeyError: no such box."""
        changes = {k: v for k, v in (("concept", concept), ("x", x), ("y", y), ("width", width), ("height", height))
                   if v is not None}
        if concept is not None and not isinstance(concept, str):
            raise ValueError("concept must be a string")
        if any(type(changes[k]) is not int for k in changes.keys() - {"concept"}):
            raise ValueError("x, y, width and height must be integers")
        u = str(uuid).lower()
        with self._lock:
            if self._current_box(u) is None:
                raise KeyError(f"No box {uuid}")
            self._edits.changed[u] = {**self._edits.changed.get(u, {}), **changes}
            return dict(self._current_box(u))

    def delete_box(self, uuid: str) -> None:
        """Delete a box: lookups of it are 404 and it leaves its image, queries, counts and the concept list."""
        u = str(uuid).lower()
        with self._lock:
            if self._current_box(u) is None:
                raise KeyError(f"No box {uuid}")
            self._edits.deleted.add(u)

    def withdraw_image(self, image: str) -> None:
        """Withdraw an image (name or uuid): its record and its bytes are 404, its boxes leave every answer."""
        name = _catalog_name(image)
        with self._lock:
            self._edits.withdrawn.add(name)

    def add_box(self, image: str, concept: str, x: int, y: int, width: int, height: int, *,
                review_state: str = "UNVERIFIED", parent: str | None = None, rank: str = "Species") -> dict:
        """Add a box of any concept (hostile names too) to an image (name or uuid); returns its JSON.

        With `parent` (a taxon both providers know), the concept also joins every provider's tree
        under it, with `rank` (lower case in the mbari tree), unless it is already there."""
        name = _catalog_name(image)
        if not isinstance(concept, str):
            raise ValueError("concept must be a string")
        if any(type(v) is not int for v in (x, y, width, height)):
            raise ValueError("x, y, width and height must be integers")
        if review_state not in REVIEW_STATES:
            raise ValueError(f"reviewState must be one of {', '.join(REVIEW_STATES)}")
        if parent is not None and not isinstance(rank, str):
            raise ValueError("rank must be a string")
        with self._lock:
            trees = self._trees()
            if parent is not None and not all(parent in tree for tree in trees.values()):
                raise KeyError(f"No taxon {parent!r} to put {concept!r} under")
            if parent is not None and concept not in trees["fathomnet"]:
                self._edits.taxa[concept] = (parent, rank)
            self._edits.serial += 1
            serial = self._edits.serial
            added = _box_record(9_000_000 + serial, str(uuidlib.uuid5(NAMESPACE, f"{name}/added/{serial}")), name,
                                concept, x, y, width, height, review_state, False, False, "standin-edit",
                                f"standin-added-{serial}")
            self._edits.added.setdefault(name, []).append(added)
            return dict(added)

    # Views of the catalog with the edits applied; call with self._lock held.
    def _edited(self, found: list[dict]) -> list[dict]:
        e = self._edits
        return [{**b, **e.changed[b["uuid"]]} if b["uuid"] in e.changed else b
                for b in found if b["uuid"] not in e.deleted and _NAME_BY_UUID[b["imageUuid"]] not in e.withdrawn]

    def _all_boxes(self) -> list[dict]:
        e = self._edits
        if e.untouched():
            return _ALL_BOXES
        found = self._edited(_ALL_BOXES + [b for added in e.added.values() for b in added])
        return sorted(found, key=lambda b: b["id"]) if e.added else found

    def _image_boxes(self, name: str) -> list[dict]:
        e = self._edits
        if e.untouched():
            return _BOXES[name]
        return self._edited(_BOXES[name] + e.added.get(name, []))

    def _current_box(self, uuid: str) -> dict | None:
        found = _BOX_BY_UUID.get(uuid)
        if found is None:
            found = next((b for added in self._edits.added.values() for b in added if b["uuid"] == uuid), None)
        edited = self._edited([found]) if found else []
        return edited[0] if edited else None

    def _trees(self) -> dict[str, _Tree]:
        taxa = self._edits.taxa
        if not taxa:
            return _TREES
        return {p: t.grown({n: (up, rank if p == "fathomnet" else rank.lower()) for n, (up, rank) in taxa.items()})
                for p, t in _TREES.items()}

    def _withdrawn(self, name: str) -> bool:
        with self._lock:
            return name in self._edits.withdrawn

    # -- counters and faults
    def reset(self) -> None:
        """Zero the counters, drop faults and holds, and undo every edit."""
        with self._lock:
            self._log: list[tuple[str, str, str, str | None]] = []  # method, path, text, image uuid
            self._faults: list[_Fault] = []
            self._edits = _Edits()
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

    @contextlib.contextmanager
    def _in_flight(self, download: bool):
        if download:
            with self._lock:
                self._downloading += 1
        try:
            yield
        finally:
            if download:
                with self._lock:
                    self._downloading -= 1

    def downloads_in_flight(self) -> int:
        """Image downloads asked for and not yet answered in full (a test can stop a client between two)."""
        with self._lock:
            return self._downloading

    def downloads(self, uuid: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, path, _, u in self._log
                       if m == "GET" and path.startswith("/images/") and (uuid is None or u == uuid.lower()))

    def counts(self) -> dict:
        with self._lock:
            by_path: dict[str, int] = {}
            for m, path, _, _ in self._log:
                by_path[f"{m} {path}"] = by_path.get(f"{m} {path}", 0) + 1
        return {"api": self.api_calls(), "downloads": self.downloads(),
                "downloads_in_flight": self.downloads_in_flight(), "by_path": by_path}

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
            with s._in_flight(target == "image"):
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

        def answer(doc, uuids=()):
            return 200, json_type, json.dumps(doc).encode(), "api", list(uuids)

        def not_found(message, uuids=()):
            return 404, json_type, _error_json(404, message, path), "api", list(uuids)

        m = re.fullmatch(r"/api/images/([^/]+)", path)
        if method == "GET" and m:
            u = m.group(1).lower()
            if u in _NAME_BY_UUID and not s._withdrawn(_NAME_BY_UUID[u]):
                return answer(s.image_json(_NAME_BY_UUID[u]), [u])
            return not_found(f"Image with uuid {m.group(1)} not found", [u])
        if method == "POST" and path == "/api/images/query/uuids":
            try:
                wanted = json.loads(body)
                assert isinstance(wanted, list) and all(isinstance(u, str) for u in wanted)
            except (ValueError, AssertionError):
                return 400, json_type, _error_json(400, "Expected a JSON list of uuids", path), "api", []
            wanted = list(dict.fromkeys(u.lower() for u in wanted))  # dedupe, keep request order
            found = [s.image_json(_NAME_BY_UUID[u]) for u in wanted
                     if u in _NAME_BY_UUID and not s._withdrawn(_NAME_BY_UUID[u])]
            return answer(found, wanted)
        if method == "POST" and path in ("/api/boundingboxes/query", "/api/boundingboxes/query/count"):
            try:
                q = _query(json.loads(body or b"{}"))
            except ValueError as e:  # JSONDecodeError is one too
                return 400, json_type, _error_json(400, str(e), path), "api", []
            with s._lock:
                found = _select(s._all_boxes(), q, s._trees())
            if path.endswith("/count"):
                return answer({"objectType": "BoundingBoxEntity", "count": len(found)})
            page = _page(found, q.offset, q.limit)
            # A fault aimed at a box hits the query pages that hold it (e.g. "page 3 fails").
            return answer(page, [b["uuid"] for b in page["content"]])
        m = re.fullmatch(r"/api/boundingboxes/query/count/(.+)", path)
        if method == "GET" and m:
            with s._lock:
                n = sum(1 for b in s._all_boxes() if b["concept"] == m.group(1))
            return answer({"concept": m.group(1), "count": n})
        if method == "GET" and path in ("/api/boundingboxes/list/concepts", "/api/boundingboxes/list/counts"):
            with s._lock:
                counts: dict[str, int] = {}
                for b in s._all_boxes():
                    counts[b["concept"]] = counts.get(b["concept"], 0) + 1
            if path.endswith("/concepts"):
                return answer(sorted(counts))
            return answer([{"concept": c, "count": counts[c]} for c in sorted(counts)])
        m = re.fullmatch(r"/api/boundingboxes/([^/]+)", path)
        if method == "GET" and m:
            u = m.group(1).lower()
            with s._lock:
                found = s._current_box(u)
            if found is not None:
                return answer(found, [u])
            return not_found(f"BoundingBox with uuid {m.group(1)} not found", [u])
        if method == "GET" and path == "/api/taxa/list/providers":
            return answer(list(TAXA_PROVIDERS))
        m = (re.fullmatch(r"/api/taxa/query/(children|parent)/([^/]+)/(.+)", path)
             or re.fullmatch(r"/api/taxa/query/()([^/]+)/(.+)", path))
        if method == "GET" and m:
            what, provider, concept = m.groups()
            with s._lock:
                tree = s._trees().get(provider)
            if tree is None:
                return not_found(f"No taxa provider named {provider}")
            if concept not in tree:
                return not_found(f"{concept} was not found by the {provider} taxa provider")
            if what == "parent":
                up = tree.parent[concept]
                if up is None:
                    return not_found(f"{concept} has no parent in the {provider} taxa provider")
                return answer({"name": up, "rank": tree.rank[up]})
            names = tree.children(concept) if what == "children" else tree.descendants(concept)
            return answer([{"name": n, "rank": tree.rank[n]} for n in names])
        name = _NAME_BY_PATH.get(path)
        if method == "GET" and name:
            if s._withdrawn(name):  # the image host no longer has it
                return 404, "text/html", _html(404, "Not Found"), "image", [CATALOG_NAMES[name]]
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
        if method == "POST" and path in _EDIT_ENDPOINTS:
            try:
                if not isinstance(args, dict):
                    raise ValueError("Expected a JSON object")
                done = _EDIT_ENDPOINTS[path](s, args)
            except KeyError as e:
                return 404, "application/json", _error_json(404, str(e.args[0] if e.args else e), path)
            except (ValueError, TypeError) as e:
                return 400, "application/json", _error_json(400, str(e), path)
            return 200, "application/json", json.dumps(done if done is not None else {"ok": True}).encode()
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


def _fields(args: dict, required: tuple, optional: tuple) -> dict:
    """The JSON fields an edit endpoint takes, as keyword arguments; TypeError names what is missing or unknown."""
    missing, unknown = [k for k in required if k not in args], sorted(args.keys() - set(required) - set(optional))
    if missing or unknown:
        raise TypeError(f"missing fields {missing}" if missing else f"unknown fields {unknown}")
    return args


_SNAKE = {"reviewState": "review_state"}
_EDIT_ENDPOINTS = {
    "/_standin/edit-box": lambda s, a: s.edit_box(**_fields(a, ("uuid",), ("concept", "x", "y", "width", "height"))),
    "/_standin/delete-box": lambda s, a: s.delete_box(**_fields(a, ("uuid",), ())),
    "/_standin/withdraw-image": lambda s, a: s.withdraw_image(**_fields(a, ("image",), ())),
    "/_standin/add-box": lambda s, a: s.add_box(**{_SNAKE.get(k, k): v for k, v in _fields(
        a, ("image", "concept", "x", "y", "width", "height"), ("reviewState", "parent", "rank")).items()}),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Serve a stand-in FathomNet API and image host.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay before every response")
    ap.add_argument("--look", choices=LOOKS, default="patterns",
                    help="scenes: annotated images drawn as deep-sea scenes with animals at their boxes (the demo's)")
    ap.add_argument("--draw-ahead", action="store_true",
                    help="draw every image now, in the background, so no first download waits for its drawing")
    opts = ap.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    s = FathomNetStandIn(opts.host, opts.port, latency=opts.latency_ms / 1000, look=opts.look).start()
    print(f"FathomNet stand-in at {s.api_url}", flush=True)
    if opts.draw_ahead:
        s.draw_ahead()
    for e in s.catalog():
        if e["name"] in BENCH_NAMES[1:]:
            continue
        print(f"  {e['name']:<20} {e['uuid']}  {e['width']}x{e['height']:<6} {e['mode']:<5} {e['format']}")
        if e["name"] == BENCH_NAMES[0]:
            print(f"  ... and {BENCH_NAMES[1]} to {BENCH_NAMES[-1]} alike (GET /_standin/catalog lists them all)")
    sys.stdout.flush()
    while not done.wait(0.5):
        pass
    s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
