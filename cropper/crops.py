"""What a crop is: what a client may ask for, the one output it resolves to, and the path that names it.

This module owns "what a crop is". A `CropRequest` is what a client asked for (a box, or a
FathomNet annotation; padding, a square, an output size, a fit, a quality, a format). `resolve`
turns it, with the image's size, into a `Crop`: the canonical description of one output (the
region of the image actually cut, the size it is scaled to, the canvas it is centred on). Equal
outputs are equal Crops, so equivalent requests share one file.

The service names stored crops by `Crop.relpath`, the routes read request paths back with
`parse_relpath`, nginx's location pattern is rendered from `nginx_location_pattern()` and logstats
matches log lines with `url_path_pattern()`. Only the one canonical spelling of each crop parses,
so every link handed out names exactly one file:

    crops/9e/9e140d51-.../100_100_405_400.webp                          a box, as cut
    crops/9e/9e140d51-.../80_40_428_460_224x224_q80.webp                a region scaled to 224x224, quality 80
    crops/9e/9e140d51-.../100_100_405_400_224x220_lb224x224_ffffff.png  scaled into a 224x224 white canvas
          ^^ shard: the uuid's first two hex digits, keeping folders small at FathomNet's scale
"""

import functools
import math
import re
import uuid as uuidlib
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from . import formats
from .errors import BoxOutsideImageError

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def canonical_uuid(text):
    """A uuid in its one spelling (lower case, dashed), as paths and records hold it; ValueError if it is none."""
    return str(uuidlib.UUID(str(text)))
MAX_DIGITS = 9  # no image is a billion pixels wide
NUMBER = rf"(?:0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}})"  # no sign, no leading zeros: one spelling per number
POSITIVE = rf"(?:[1-9][0-9]{{0,{MAX_DIGITS - 1}}})"
QUALITY = r"(?:[1-9][0-9]?|100)"
COLOUR = r"[0-9a-f]{6}"
FITS = ("contain", "cover", "fill", "letterbox")
DEFAULT_BACKGROUND = "000000"


class Box(NamedTuple):
    """A rectangle in source pixels: x1, y1 inclusive; x2, y2 exclusive (as Pillow's crop)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self):
        return self.x2 - self.x1

    @property
    def height(self):
        return self.y2 - self.y1

    @property
    def size(self):
        return self.width, self.height

    def fits(self, width, height):
        return self.x1 >= 0 and self.y1 >= 0 and self.x2 <= width and self.y2 <= height


@dataclass(frozen=True)
class Pad:
    """Context around a box on each side: pixels, or a percentage of the box's width (left, right) and height."""

    amount: int | Fraction
    percent: bool = False

    def sides(self, box):
        if not self.percent:
            return int(self.amount), int(self.amount)
        share = Fraction(self.amount) / 100  # amount: an int, or a Fraction of the decimal asked ("12.5%")
        return half_up(box.width * share), half_up(box.height * share)


@dataclass(frozen=True)
class CropRequest:
    """What a client asked for, before the image's size is known."""

    uuid: str | None = None  # the image (canonical lower case: safe in a path); None with box_uuid
    box: Box | None = None  # in the image's pixels; None with box_uuid
    box_uuid: str | None = None  # a FathomNet annotation instead of uuid and box
    pad: Pad | None = None
    square: bool = False
    width: int | None = None
    height: int | None = None
    fit: str = "contain"
    enlarge: bool = True
    background: str = DEFAULT_BACKGROUND
    quality: int | None = None  # None: the configured default, which is not part of the key
    format: str = "webp"

    @property
    def needs_image_size(self):
        """Whether resolving it needs the image's size: clamping padding, a square or an annotation's box."""
        return self.pad is not None or self.square or self.box_uuid is not None


@dataclass(frozen=True)
class Crop:
    """One output the service makes and stores: which pixels of which image, how scaled, in which format.

    Its family is the URL family that names it: "crops" (/crops/..., the crop API's) or "iiif"
    (/iiif/3/..., IIIF image requests, which may also mirror, rotate and change the colours).
    """

    uuid: str
    region: Box  # the source pixels cut
    format: str  # a name from the format table
    size: tuple | None = None  # what the region is scaled to; None: as cut (IIIF: always given)
    canvas: tuple | None = None  # letterbox: the size of the canvas the scaled region is centred on
    background: str = DEFAULT_BACKGROUND  # the canvas's colour, rrggbb
    quality: int | None = None  # asked for explicitly; None: the configured default
    mirror: bool = False  # IIIF: flipped left-right, before rotating
    rotation: int = 0  # IIIF: clockwise, 0, 90, 180 or 270
    colour: str = "default"  # IIIF quality: default, color, gray or bitonal
    family: str = "crops"

    @property
    def output_size(self):
        """The size of the image a client gets."""
        width, height = self.canvas or self.size or self.region.size
        return (height, width) if self.rotation in (90, 270) else (width, height)

    @property
    def store_path(self):
        """Where the stores keep it: its family's folder, then its relpath."""
        return f"{self.family}/{self.relpath}"

    @property
    def url_path(self):
        """The path of its public URL."""
        if self.family == "iiif":
            return f"/iiif/3/{self.relpath.split('/', 1)[1]}"
        return f"/crops/{self.relpath}"

    @property
    def relpath(self):
        """The crop's path below its family's folder: for "crops", its path below /crops/."""
        if self.family == "iiif":
            return self._iiif_relpath()
        x1, y1, x2, y2 = self.region
        name = f"{x1}_{y1}_{x2}_{y2}"
        if self.size:
            name += "_{}x{}".format(*self.size)
        if self.canvas:
            name += "_lb{}x{}".format(*self.canvas)
            if self.background != DEFAULT_BACKGROUND:
                name += f"_{self.background}"
        if self.quality is not None:
            name += f"_q{self.quality}"
        return f"{self.uuid[:2]}/{self.uuid}/{name}.{self.format}"

    @property
    def upscaled(self):
        """IIIF: larger than its region on a side, which its request must ask for with ^."""
        return self.size is not None and (self.size[0] > self.region.width or self.size[1] > self.region.height)

    def _iiif_relpath(self):
        # Always explicit (pixels, not "full" or "max"): the name must not depend on the image's
        # size or the service's limits, and it is what viewers ask for tiles, so nginx finds it.
        # An upscaled one keeps the ^ of its request: nginx serves the name asked for, and the
        # same size without ^ is a 400 (superseded_store_path: the names earlier versions stored).
        x1, y1, x2, y2 = self.region
        width, height = self.size
        rotation = f"{'!' if self.mirror else ''}{self.rotation}"
        return (f"{self.uuid[:2]}/{self.uuid}/{x1},{y1},{x2 - x1},{y2 - y1}/{'^' if self.upscaled else ''}"
                f"{width},{height}/{rotation}/{self.colour}.{formats.get(self.format).iiif}")

    @property
    def media_type(self):
        return formats.get(self.format).media_type

    def is_canonical(self):
        """True if some request resolves to exactly this crop (a path may spell what none would)."""
        if self.region.width < 1 or self.region.height < 1:
            return False
        if self.family == "iiif":
            return self.size is not None and min(self.size) >= 1 and self.canvas is None and self.quality is None
        asked = {"box": self.region, "format": self.format, "quality": self.quality}
        if self.canvas:
            candidates = [CropRequest(**asked, width=self.canvas[0], height=self.canvas[1], fit="letterbox",
                                      background=self.background, enlarge=enlarge) for enlarge in (True, False)]
        elif self.size:
            candidates = [CropRequest(**asked, width=self.size[0], height=self.size[1], fit="fill")]
        else:
            candidates = [CropRequest(**asked)]
        return any(resolve(candidate, self.uuid, self.region) == self for candidate in candidates)


def half_up(value):
    """value (a Fraction or an int) rounded to the nearest whole number, halves up."""
    return math.floor(value + Fraction(1, 2))


def centred_cut(region, aspect):
    """The largest part of region with the aspect (width / height), centred."""
    rw, rh = region.size
    if Fraction(rw, rh) > aspect:
        cut = max(1, half_up(rh * aspect))
        return Box(region.x1 + (rw - cut) // 2, region.y1, region.x1 + (rw - cut) // 2 + cut, region.y2)
    cut = max(1, half_up(rw / aspect))
    return Box(region.x1, region.y1 + (rh - cut) // 2, region.x2, region.y1 + (rh - cut) // 2 + cut)


def check_box(box, size):
    """Refuse a box that is empty or does not lie inside an image of this size (Pillow would pad it)."""
    width, height = size
    if box.width < 1 or box.height < 1 or not box.fits(width, height):
        raise BoxOutsideImageError(
            f"The box {list(box)} does not fit inside the {width}x{height} image.",
            image_width=width, image_height=height,
        )


def region_of(box, image_size, pad=None, square=False, clamp_box=False):
    """The region to cut: the box, with context, made square, kept inside the image.

    A box from a client must lie inside the image (Pillow would pad it); an annotation's box
    (clamp_box) may reach past the image's edges, as some of FathomNet's do, and is clamped first.
    """
    width, height = image_size
    if clamp_box:
        box = Box(max(box.x1, 0), max(box.y1, 0), min(box.x2, width), min(box.y2, height))
    check_box(box, image_size)
    x1, y1, x2, y2 = box
    if pad is not None:
        dx, dy = pad.sides(box)
        x1, y1, x2, y2 = x1 - dx, y1 - dy, x2 + dx, y2 + dy
    if square:
        side = max(x2 - x1, y2 - y1)
        grow_x, grow_y = side - (x2 - x1), side - (y2 - y1)
        x1, x2 = x1 - grow_x // 2, x2 + grow_x - grow_x // 2
        y1, y2 = y1 - grow_y // 2, y2 + grow_y - grow_y // 2
        if side <= width:  # shift a square back inside the image where it can be
            x1, x2 = (0, side) if x1 < 0 else (width - side, width) if x2 > width else (x1, x2)
        if side <= height:
            y1, y2 = (0, side) if y1 < 0 else (height - side, height) if y2 > height else (y1, y2)
    return Box(max(x1, 0), max(y1, 0), min(x2, width), min(y2, height))


def resolve(request, uuid, box, image_size=None):
    """The canonical Crop of a request, for the image uuid and the box asked for (or the annotation's).

    image_size is needed when request.needs_image_size; without it the box is taken as the region
    (the box's fit in the image is checked when the image's size is known).
    """
    if image_size is not None:
        region = region_of(box, image_size, request.pad, request.square, clamp_box=request.box_uuid is not None)
    else:
        region = box
    size, canvas = None, None
    width, height = request.width, request.height
    rw, rh = region.size
    # Exact fractions, not floats: every rounding is half up on the true value, and a client can
    # compute the same URL (cropper_client.crop_url) without a request.
    if width and height and request.fit == "cover":  # cut the centred part with the aspect asked for
        region = centred_cut(region, Fraction(width, height))
        size = (width, height)
        if not request.enlarge and (width > region.width or height > region.height):
            size = None  # the cut already has the aspect asked for (to a pixel): keep it as cut
    elif width and height and request.fit == "fill":
        size = (width, height)
        if not request.enlarge and (width > rw or height > rh):  # the aspect asked for, no larger than the region
            scale = min(Fraction(rw, width), Fraction(rh, height))
            size = (max(1, half_up(width * scale)), max(1, half_up(height * scale)))
    elif width or height:  # contain and letterbox; one side alone keeps the aspect too
        scale = min(Fraction(width, rw) if width else math.inf, Fraction(height, rh) if height else math.inf)
        if not request.enlarge:
            scale = min(scale, 1)
        size = (max(1, half_up(rw * scale)), max(1, half_up(rh * scale)))
        if width and height and request.fit == "letterbox":
            canvas = (width, height)
    if size == region.size:
        size = None
    if canvas == (size or region.size):
        canvas = None
    quality = request.quality if formats.get(request.format).lossy else None
    background = request.background if canvas else DEFAULT_BACKGROUND
    return Crop(uuid, region, request.format, size, canvas, background, quality)


def over_limits(crop, max_side, max_pixels):
    """Why a crop is too large to make (its region cut, or its output), or None."""
    for what, (width, height) in (("region to cut", crop.region.size), ("output", crop.output_size)):
        if max(width, height) > max_side:
            return f"The {what} would be {width}x{height}: a side may be at most {max_side} pixels."
        if width * height > max_pixels:
            return f"The {what} would be {width}x{height}: at most {max_pixels} pixels."
    return None


# -- the path grammar


def _file_name_pattern(extensions):
    n, p = NUMBER, POSITIVE
    return (rf"{n}_{n}_{n}_{n}(?:_{p}x{p})?(?:_lb{p}x{p}(?:_{COLOUR})?)?(?:_q{QUALITY})?"
            rf"\.(?:{'|'.join(map(re.escape, extensions))})")


@functools.lru_cache(maxsize=8)
def _relpath_re(extensions):
    return re.compile(rf"([0-9a-f]{{2}})/({UUID})/({_file_name_pattern(extensions)})")


_PART = re.compile(r"(?P<size>[0-9]+x[0-9]+)|lb(?P<canvas>[0-9]+x[0-9]+)|q(?P<quality>[0-9]+)"
                   r"|(?P<background>[0-9a-f]{6})")


def parse_relpath(relpath):
    """The Crop a path below /crops/ names, or None if it is not one the service would have made."""
    match = _relpath_re(formats.names()).fullmatch(relpath)
    if match is None:
        return None
    _, uuid, name = match.groups()
    stem, _, extension = name.rpartition(".")
    pieces = stem.split("_")
    numbers, parts = pieces[:4], pieces[4:]
    fields = {}
    for part in parts:
        found = _PART.fullmatch(part)
        key, value = next((k, v) for k, v in found.groupdict().items() if v is not None)
        fields[key] = value if key == "background" else int(value) if key == "quality" else \
            tuple(map(int, value.split("x")))
    crop = Crop(uuid, Box(*map(int, numbers)), extension, fields.get("size"), fields.get("canvas"),
                fields.get("background", DEFAULT_BACKGROUND), fields.get("quality"))
    return crop if crop.relpath == relpath and crop.is_canonical() else None


def url_path_pattern():
    """A regex (Python and PCRE alike) for the URL path of any crop, the uuid in group 1."""
    return rf"/crops/[0-9a-f]{{2}}/({UUID})/{_file_name_pattern(formats.names())}"


def nginx_location_pattern():
    """nginx's location regex for crop files: the same grammar, anchored."""
    return f"^{url_path_pattern()}$"


# -- the IIIF family: /iiif/3/<uuid>/<x,y,w,h>/<^?w,h>/<!?rotation>/<quality>.<format>, as stored

IIIF_COLOURS = ("default", "color", "gray", "bitonal")


def _iiif_tail_pattern():
    n, p = NUMBER, POSITIVE
    extensions = "|".join(map(re.escape, formats.iiif_names()))
    return rf"{n},{n},{p},{p}/\^?{p},{p}/!?(?:0|90|180|270)/(?:{'|'.join(IIIF_COLOURS)})\.(?:{extensions})"


def parse_iiif_relpath(relpath):
    """The IIIF Crop a stored relpath names, or None."""
    match = re.fullmatch(rf"([0-9a-f]{{2}})/({UUID})/({_iiif_tail_pattern()})", relpath)
    if match is None:
        return None
    region, size, rotation, last = match[3].split("/")
    x, y, width, height = map(int, region.split(","))
    colour, _, extension = last.rpartition(".")
    crop = Crop(match[2], Box(x, y, x + width, y + height), formats.iiif_names()[extension].name,
                tuple(map(int, size.lstrip("^").split(","))), mirror=rotation.startswith("!"),
                rotation=int(rotation.lstrip("!")), colour=colour, family="iiif")
    return crop if crop.relpath == relpath and crop.is_canonical() else None


def parse_store_path(path):
    """The Crop a store path ("<family>/<relpath>") names, or None."""
    family, _, relpath = path.partition("/")
    return {"crops": parse_relpath, "iiif": parse_iiif_relpath}.get(family, lambda _: None)(relpath)


def superseded_store_path(path):
    """The Crop an earlier version stored under a store path that names no crop now, or None.

    Earlier versions stored an upscaled IIIF image without its ^ (iiif/.../10,10,50,40/100,80/0/default.png),
    and nginx served that file to the same request without ^, which must be a 400. Such a name is
    never written again and parses as nothing: the pruner removes what a cache folder (or the S3
    store, on its S3_PRUNER host) still holds under it, and each is made again under its ^ name when
    asked for. In a cluster being upgraded, a host of an earlier version asking this one (POST
    /_cluster/make) for such a path hears that there is no crop there (404), and this one's ^ path
    is a 404 to it: only upscaled IIIF images, and only until every host runs this version.
    """
    family, _, relpath = path.partition("/")
    parts = relpath.split("/")
    if family != "iiif" or len(parts) != 6 or parts[3].startswith("^"):
        return None
    crop = parse_iiif_relpath("/".join([*parts[:3], "^" + parts[3], *parts[4:]]))
    return crop if crop is not None and crop.upscaled else None


FAMILIES = ("crops", "iiif")  # the folders (or key prefixes) stores keep crops under: Crop.family


def nginx_iiif_location_pattern():
    """nginx's location regex for stored IIIF images, capturing what try_files needs to find them."""
    return (rf"^/iiif/3/(?<iiif_uuid>(?<iiif_shard>[0-9a-f]{{2}})[0-9a-f]{{6}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-"
            rf"[0-9a-f]{{4}}-[0-9a-f]{{12}})/(?<iiif_rest>{_iiif_tail_pattern()})$")
