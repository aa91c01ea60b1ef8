"""IIIF Image API 3.0, compliance level 2: image requests read, their canonical paths, info.json and tiles.

Pure rules, no Flask and no I/O. An image request's four path segments are read with
`parse_image_request` into an `ImageRequest`, whose `canonical` path names the one file its
image is stored in; `info_json` is the image information document and `tile_regions` lists the
tiles a viewer asks for. Sources: the spec (https://iiif.io/api/image/3.0/), its implementation
notes, and the official validator (iiif-validator 1.0.5), which must pass at level 2; where the
validator and the spec differ, the comment says which one is followed.

An image request becomes a crops.Crop of the "iiif" family, made by imaging.render's steps in the
spec's order (4.6): region, size, mirror, rotation, quality, then the format. What IIIF calls a
"quality" (default, color, gray, bitonal) is called `colour` here, as in the Crop: "quality" in this
service is the encoder's.

Numbers are read by strict patterns, never by float() or int() alone: those accept "1_00",
"nan", "0e12", " 5" and non-ASCII digits. Integers have no sign and no leading zeros (one
spelling per number); decimals are digits with an optional "." and digits (0.5, not .5 or 5.).
"""

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from .. import crops, formats
from ..crops import Box
from ..errors import CropperError

CONTEXT = "http://iiif.io/api/image/3/context.json"
PATH = "/iiif/3"  # an image's base URI is PATH/<uuid> below the service's base URL
# The Link header of every image answer, the app's and the files nginx serves itself (info.json lists it).
PROFILE_LINK = '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
PROTOCOL = "http://iiif.io/api/image"

INTEGER = crops.NUMBER  # at most MAX_DIGITS digits, so int() stays cheap
DECIMAL = rf"{INTEGER}(?:\.[0-9]{{1,{crops.MAX_DIGITS}}})?"

REGION_PIXELS = re.compile(rf"({INTEGER}),({INTEGER}),({INTEGER}),({INTEGER})")
REGION_PERCENT = re.compile(rf"pct:({DECIMAL}),({DECIMAL}),({DECIMAL}),({DECIMAL})")
SIZE = re.compile(rf"(?P<up>\^?)(?:(?P<max>max)|pct:(?P<pct>{DECIMAL})"
                  rf"|(?P<confined>!?)(?P<w>{INTEGER})?,(?P<h>{INTEGER})?)")
ROTATION = re.compile(rf"(!?)({DECIMAL})")

QUALITIES = crops.IIIF_COLOURS  # "default" is the source's own colours
LEVEL2_FORMATS = ("jpg", "png")  # what level 2 already promises; others go in extraFormats
EXTRA_FEATURES = ("mirroring", "sizeUpscaling")  # beyond level 2 (level2.json lists the rest)
SIZES_DOWN_TO = 200  # info.json's `sizes` halve the image until its long side is at most this


class IIIFError(CropperError):
    """A request the IIIF syntax or this image refuses."""

    status = 400
    code = "bad_request"


class IIIFNotImplementedError(IIIFError):
    """A valid IIIF request for something this service does not do (rotation by other than 90s)."""

    status = 501
    code = "not_implemented"


class Limits(NamedTuple):
    """The full image's size and the largest output the service makes of it (info.json's max*)."""

    width: int
    height: int
    max_width: int
    max_height: int
    max_area: int | None  # None: no area limit


@dataclass(frozen=True)
class ImageRequest:
    """One image request, resolved against its image: what to cut, how large to make it, and how."""

    region: Box  # in source pixels, within the image
    size: tuple[int, int]  # output width, height after scaling, before rotation
    mirror: bool  # flip left-right, before rotating
    rotation: int  # clockwise degrees: 0, 90, 180 or 270
    colour: str  # IIIF's quality, as asked: "default" stays "default" and "color" stays "color"
    format: str  # the format table's name ("jpeg" for the extension jpg)
    limits: Limits  # what the request was read against; "full" and "max" depend on it

    @property
    def canonical_segments(self):
        """(region, size, rotation, quality.format) in the spec's canonical syntax (4.8)."""
        return (self._canonical_region(), self._canonical_size(), f"{'!' if self.mirror else ''}{self.rotation}",
                f"{self.colour}.{extension_of(self.format)}")

    @property
    def canonical(self):
        """The canonical path below the image's base URI: the one name of this image."""
        return "/".join(self.canonical_segments)

    def _canonical_region(self):
        x1, y1, x2, y2 = self.region
        if self.region == Box(0, 0, self.limits.width, self.limits.height):
            return "full"
        return f"{x1},{y1},{x2 - x1},{y2 - y1}"

    def _canonical_size(self):
        # 4.8: max, else w,h when it does not upscale, else ^max, else ^w,h. Checked on the output
        # size, whatever form was asked, so equal outputs share one path (and one stored file).
        width, height = self.size
        if self.size == max_size(self.region, self.limits):
            return "max"
        if width <= self.region.width and height <= self.region.height:
            return f"{width},{height}"
        if self.size == max_size(self.region, self.limits, upscale=True):
            return "^max"
        return f"^{width},{height}"


def parse_image_request(region, size, rotation, quality_format, image_width, image_height, max_width,
                        max_height, max_area):
    """The ImageRequest four path segments ask of an image, or IIIFError (400, or 501 for what we do not do).

    max_height None means max_width (as in info.json); max_area None means no area limit.
    """
    limits = Limits(image_width, image_height, max_width, max_width if max_height is None else max_height, max_area)
    box = parse_region(region, image_width, image_height)
    output_size = parse_size(size, box, limits)
    mirror, degrees = parse_rotation(rotation)
    colour, format_name = parse_quality_format(quality_format)
    # Syntax errors first (400); only a well-formed request learns that its angle is not done. 501 is
    # 7.3's "valid IIIF request that is not implemented"; 4.3 would allow 400 too, and no level 2
    # validator test asks for an arbitrary angle.
    if degrees % 90:
        raise IIIFNotImplementedError(f"Rotation {rotation!r} is not supported; use 0, 90, 180 or 270.")
    return ImageRequest(box, output_size, mirror, int(degrees) % 360, colour, format_name, limits)


def parse_region(text, image_width, image_height):
    """The Box a region segment names, cropped at the image's edges."""
    if text == "full":
        return Box(0, 0, image_width, image_height)
    if text == "square":
        side = min(image_width, image_height)
        x, y = (image_width - side) // 2, (image_height - side) // 2  # centred, as the spec suggests
        return Box(x, y, x + side, y + side)
    if match := REGION_PIXELS.fullmatch(text):
        x, y, w, h = map(int, match.groups())
    elif match := REGION_PERCENT.fullmatch(text):
        # Each number rounded on its own, half up, as the reference implementation does.
        px, py, pw, ph = map(Fraction, match.groups())
        x, w = (crops.half_up(p * image_width / 100) for p in (px, pw))
        y, h = (crops.half_up(p * image_height / 100) for p in (py, ph))
    else:
        raise IIIFError(f"Region {text!r} is not full, square, x,y,w,h or pct:x,y,w,h.")
    if w == 0 or h == 0:
        raise IIIFError(f"Region {text!r} has no width or no height.")
    if x >= image_width or y >= image_height:
        raise IIIFError(f"Region {text!r} is entirely outside the {image_width}x{image_height} image.")
    return Box(x, y, min(x + w, image_width), min(y + h, image_height))


def parse_size(text, region, limits):
    """The output (width, height) a size segment asks of a region, within the limits."""
    match = SIZE.fullmatch(text)
    if match is None:
        raise IIIFError(f"Size {text!r} is not max, w,, ,h, pct:n, w,h or !w,h (each may start with ^).")
    upscale = bool(match["up"])
    rw, rh = region.width, region.height
    if match["max"]:
        size = max_size(region, limits, upscale)
    elif match["pct"] is not None:
        percent = Fraction(match["pct"])
        if percent > 100 and not upscale:
            raise IIIFError(f"Size {text!r} is over 100%; prefix it with ^ to upscale.")
        size = (crops.half_up(rw * percent / 100), crops.half_up(rh * percent / 100))
    elif match["confined"]:
        if match["w"] is None or match["h"] is None:
            raise IIIFError(f"Size {text!r} needs both a width and a height.")
        box_w, box_h = int(match["w"]), int(match["h"])
        # The spec answers !w,h with at most the region's size, but the validator (size_noup) wants a
        # 400 for !2000,3000 on its 1000x1000 image: without ^, a box that would scale up is refused.
        asked_w, asked_h = _confine(rw, rh, box_w, box_h)
        if not upscale and (asked_w > rw or asked_h > rh):
            raise IIIFError(f"Size {text!r} would scale the {rw}x{rh} region up; prefix it with ^ to upscale.")
        # "As large as possible but not larger than w, h or server-imposed limits": fitted, not refused.
        size = _largest(rw, rh, min(box_w, limits.max_width), min(box_h, limits.max_height), limits.max_area)
    elif match["w"] is not None and match["h"] is not None:
        size = (int(match["w"]), int(match["h"]))  # may distort, as asked
    elif match["w"] is not None:
        size = (int(match["w"]), crops.half_up(Fraction(rh * int(match["w"]), rw)))
    elif match["h"] is not None:
        size = (crops.half_up(Fraction(rw * int(match["h"]), rh)), int(match["h"]))
    else:
        raise IIIFError(f"Size {text!r} gives neither a width nor a height.")
    return _checked_size(text, size, region, upscale, limits)


def _checked_size(text, size, region, upscale, limits):
    width, height = size
    if width < 1 or height < 1:
        raise IIIFError(f"Size {text!r} makes an image of {width}x{height} pixels; it must be at least 1x1.")
    if not upscale and (width > region.width or height > region.height):
        raise IIIFError(f"Size {text!r} is larger than the {region.width}x{region.height} region; "
                        "prefix it with ^ to upscale.")
    if not fits_limits(size, limits):
        area = "" if limits.max_area is None else f", {limits.max_area} pixels in all"
        raise IIIFError(f"Size {text!r} makes a {width}x{height} image; the limit is "
                        f"{limits.max_width}x{limits.max_height}{area}.")
    return size


def fits_limits(size, limits):
    """Whether an output (width, height) is within maxWidth, maxHeight and maxArea."""
    width, height = size
    return (width <= limits.max_width and height <= limits.max_height
            and (limits.max_area is None or width * height <= limits.max_area))


def max_size(region, limits, upscale=False):
    """What `max` (or `^max`) makes of a region: its own size, or the largest within the limits."""
    if upscale:
        return _largest(region.width, region.height, limits.max_width, limits.max_height, limits.max_area)
    return _largest(region.width, region.height, min(region.width, limits.max_width),
                    min(region.height, limits.max_height), limits.max_area)


def _largest(width, height, box_width, box_height, max_area):
    """The largest size of a width x height region's shape within a box and an area."""
    w, h = _confine(width, height, box_width, box_height)
    if max_area is not None and w * h > max_area:
        # floor(sqrt(x)) == isqrt(floor(x)): the exact largest sides whose product stays within the area.
        w = min(w, math.isqrt(max_area * width // height))
        h = min(h, math.isqrt(max_area * height // width))
    return w, h


def _confine(width, height, box_width, box_height):
    """The !w,h rule: a width x height region scaled to just fit the box, keeping its shape."""
    if box_width * height <= box_height * width:  # the box's width binds
        return box_width, crops.half_up(Fraction(height * box_width, width))
    return crops.half_up(Fraction(width * box_height, height)), box_height


def parse_rotation(text):
    """(mirror, degrees as a Fraction) of a rotation segment; any angle in 0..360 is valid syntax."""
    match = ROTATION.fullmatch(text)
    if match is None:
        raise IIIFError(f"Rotation {text!r} is not a number of degrees, optionally after !.")
    degrees = Fraction(match[2])
    # 360 is in the spec's range and is the same picture as 0: served, with 0 in its canonical path.
    if degrees > 360:
        raise IIIFError(f"Rotation {text!r} is over 360 degrees.")
    return bool(match[1]), degrees


def parse_quality_format(text):
    """(colour, format table name) of the last segment, IIIF's quality.format: "default.jpg" -> ("default", "jpeg")."""
    colour, dot, extension = text.rpartition(".")
    if not dot:
        raise IIIFError(f"{text!r} is not quality.format, e.g. default.jpg.")
    if colour not in QUALITIES:  # "gray" only: the spec's spelling, not "grey"
        raise IIIFError(f"Quality {colour!r} is not one of {', '.join(QUALITIES)}.")
    names = format_extensions()
    if extension not in names:
        # 400, not 501: the validator accepts only 400, 415 or 503 for formats we do not make.
        raise IIIFError(f"Format {extension!r} is not supported; use one of {', '.join(sorted(names))}.")
    return colour, names[extension]


def format_extensions():
    """{IIIF extension: format table name} for each format in the table that the spec has a name for."""
    return {extension: fmt.name for extension, fmt in formats.iiif_names().items()}


def extension_of(format_name):
    """The IIIF extension of a format table name, e.g. "jpg" for "jpeg"."""
    return formats.get(format_name).iiif


def base_uri(base_url, uuid):
    """An image's base URI on the service at base_url: its info.json and images are below it."""
    return f"{base_url}{PATH}/{uuid}"


def info_json(base_uri, image_width, image_height, max_width, max_height, max_area, tile_size=512,
              extra_features=()):
    """The image information document (spec 5) of one image.

    extra_features: HTTP features the caller provides beyond level 2, e.g. "canonicalLinkHeader"
    or "profileLinkHeader". Level 2 itself promises baseUriRedirect, cors and jsonldMediaType.
    """
    limits = Limits(image_width, image_height, max_width, max_width if max_height is None else max_height, max_area)
    if not fits_limits((tile_size, tile_size), limits):
        raise ValueError(f"{tile_size}px tiles are over the size limits {limits}")  # the spec forbids it (5.2)
    info = {
        "@context": CONTEXT,
        "id": base_uri.rstrip("/"),
        "type": "ImageService3",
        "protocol": PROTOCOL,
        "profile": "level2",
        "width": image_width,
        "height": image_height,
        "maxWidth": limits.max_width,
        "maxHeight": limits.max_height,
    }
    if max_area is not None:
        info["maxArea"] = max_area
    info.update({
        "sizes": [{"width": w, "height": h} for w, h in preferred_sizes(limits)],
        "tiles": [{"width": tile_size, "height": tile_size,
                   "scaleFactors": scale_factors(image_width, image_height, tile_size)}],
        "extraFormats": [extension for extension in format_extensions() if extension not in LEVEL2_FORMATS],
        # level2.json lists only "default", so the other qualities are named here.
        "extraQualities": [quality for quality in QUALITIES if quality != "default"],
        "extraFeatures": [*EXTRA_FEATURES, *extra_features],
    })
    return info


def preferred_sizes(limits):
    """info.json's sizes, smallest first: the full image halved until its long side is at most
    SIZES_DOWN_TO, each rounded up as tiles are, leaving out those over the limits."""
    sizes, factor = [], 1
    while True:
        size = (_ceil_div(limits.width, factor), _ceil_div(limits.height, factor))
        if fits_limits(size, limits):
            sizes.append(size)
        if max(size) <= SIZES_DOWN_TO:
            return sizes[::-1]
        factor *= 2


def scale_factors(image_width, image_height, tile_size):
    """1, 2, 4, ... up to the first factor at which the whole image fits in one tile."""
    factors = [1]
    while _ceil_div(image_width, factors[-1]) > tile_size or _ceil_div(image_height, factors[-1]) > tile_size:
        factors.append(factors[-1] * 2)
    return factors


def tile_regions(image_width, image_height, tile_size, scale_factor):
    """(region Box, output size) of each tile at a scale factor, row by row (implementation notes 3).

    Tiles are a grid of tile_size * scale_factor source pixels cut at the image's edges, each made
    ceil(region / scale_factor) pixels large, as OpenSeadragon asks for them.
    """
    step = tile_size * scale_factor
    for y in range(0, image_height, step):
        for x in range(0, image_width, step):
            region = Box(x, y, min(x + step, image_width), min(y + step, image_height))
            yield region, (_ceil_div(region.width, scale_factor), _ceil_div(region.height, scale_factor))


def _ceil_div(a, b):
    return -(-a // b)
