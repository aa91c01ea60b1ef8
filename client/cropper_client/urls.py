"""Crop URLs computed locally, with no request: the service's path grammar and resolve rules, mirrored.

The service names every crop by one canonical path (`cropper/crops.py`: `resolve` and `Crop.relpath`):

    /crops/9e/9e140d51-.../100_100_405_400.webp                          a box, as cut
    /crops/9e/9e140d51-.../80_40_428_460_224x224_q80.webp                a region scaled to 224x224, quality 80
    /crops/9e/9e140d51-.../100_100_405_400_224x220_lb224x224_ffffff.png  scaled into a 224x224 white canvas

A GET of that URL through nginx is served from disk, or made by the service on a miss, so a tool that
knows an image's size can show thousands of crops without a POST for each. This module copies the
server's arithmetic step for step (same float operations, same half-up rounding), because a URL that
differs by one pixel names a different file, and a spelling the service would not make is a 404.
It imports nothing of the service: the client must install without Flask or Pillow.
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
from collections.abc import Sequence
from fractions import Fraction

FITS = ("contain", "cover", "fill", "letterbox")
FORMATS = {"webp": "webp", "jpeg": "jpeg", "jpg": "jpeg", "png": "png"}  # name or alias -> canonical name
LOSSY = frozenset({"webp", "jpeg"})  # the formats a quality applies to; for the others it is dropped
DEFAULT_BACKGROUND = "000000"  # left out of paths
MAX_NUMBER = 10**9  # the grammar's numbers have at most 9 digits
MAX_PAD_PERCENT = 1000
PERCENT = re.compile(r"\s*([0-9]{1,4}(?:\.[0-9]{1,2})?)\s*%\s*")  # the service's spelling of "10%"
COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")

Box = tuple[int, int, int, int]  # x1, y1 inclusive; x2, y2 exclusive (as Pillow's crop)
Size = tuple[int, int]


def half_up(value: Fraction | int) -> int:
    """value rounded to the nearest whole number, halves up (exact: fractions, as the service computes)."""
    return math.floor(value + Fraction(1, 2))


def centred_cut(region: Box, aspect: Fraction) -> Box:
    """crops.centred_cut: the largest part of region with the aspect (width / height), centred."""
    x1, y1, x2, y2 = region
    rw, rh = x2 - x1, y2 - y1
    if Fraction(rw, rh) > aspect:
        cut = max(1, half_up(rh * aspect))
        return x1 + (rw - cut) // 2, y1, x1 + (rw - cut) // 2 + cut, y2
    cut = max(1, half_up(rw / aspect))
    return x1, y1 + (rh - cut) // 2, x2, y1 + (rh - cut) // 2 + cut


def crop_url(base_url: str, uuid: str, x1: int, y1: int, x2: int, y2: int, *, width: int | None = None,
             height: int | None = None, fit: str = "contain", enlarge: bool = True, background: str | None = None,
             quality: int | None = None, format: str = "webp", pad: int | str | None = None, square: bool = False,
             image_size: Sequence[int] | None = None) -> str:
    """The URL of the crop a POST to /cropper/ with these fields would answer, computed here.

    pad and square need the image's size as FathomNet reports it (image_size=(width, height)): both
    stop at the image's edges. quality=None means the service's configured default, which is not
    part of the URL. Raises ValueError for what the service would refuse (422). The service's size
    limits (MAX_CROP_SIDE, MAX_CROP_PIXELS) are its settings, not the grammar's, and are not checked.
    """
    relpath = crop_relpath(uuid, (x1, y1, x2, y2), width=width, height=height, fit=fit, enlarge=enlarge,
                           background=background, quality=quality, format=format, pad=pad, square=square,
                           image_size=image_size)
    return f"{base_url.rstrip('/')}/crops/{relpath}"


def crop_relpath(uuid: str, box: Sequence[int], *, width: int | None = None, height: int | None = None,
                 fit: str = "contain", enlarge: bool = True, background: str | None = None,
                 quality: int | None = None, format: str = "webp", pad: int | str | None = None,
                 square: bool = False, image_size: Sequence[int] | None = None) -> str:
    """The crop's path below /crops/ (crops.py: schemas' checks, then `resolve`, then `Crop.relpath`)."""
    uuid = _uuid(uuid)
    x1, y1, x2, y2 = (_number(name, value) for name, value in zip(("x1", "y1", "x2", "y2"), box, strict=True))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"The box {[x1, y1, x2, y2]} is empty: x2 must be greater than x1, y2 than y1.")
    width = None if width is None else _number("width", width, least=1)
    height = None if height is None else _number("height", height, least=1)
    if fit not in FITS:
        raise ValueError(f"fit must be one of: {', '.join(FITS)}, not {fit!r}.")
    if fit != "contain" and not (width and height):  # "contain" is also what an omitted fit means
        raise ValueError(f"fit {fit!r} needs both width and height.")
    if background is not None and fit != "letterbox":
        raise ValueError("A background is the colour of a letterbox: it needs fit='letterbox'.")
    colour = DEFAULT_BACKGROUND if background is None else _colour(background)
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100):
        raise ValueError(f"quality must be a whole number from 1 to 100, not {quality!r}.")
    fmt = _format(format)
    padding = None if pad is None else _pad(pad)

    region: Box = (x1, y1, x2, y2)
    if padding is not None or square:
        if image_size is None:
            raise ValueError("pad and square stop at the image's edges: give image_size=(width, height), "
                             "the image's size as FathomNet reports it.")
    if image_size is not None:
        region = _region_of(region, _image_size(image_size), padding, square)

    # From here on, crops.resolve line for line.
    size: Size | None = None
    canvas: Size | None = None
    rw, rh = region[2] - region[0], region[3] - region[1]
    if width and height and fit == "cover":  # cut the centred part with the aspect asked for
        region = centred_cut(region, Fraction(width, height))
        size = (width, height)
        if not enlarge and (width > region[2] - region[0] or height > region[3] - region[1]):
            size = None  # the cut already has the aspect asked for: keep it as cut
    elif width and height and fit == "fill":
        size = (width, height)
        if not enlarge and (width > rw or height > rh):  # the aspect asked for, no larger than the region
            scale = min(Fraction(rw, width), Fraction(rh, height))
            size = (max(1, half_up(width * scale)), max(1, half_up(height * scale)))
    elif width or height:  # contain and letterbox; one side alone keeps the aspect too
        by_width = Fraction(width, rw) if width else None
        by_height = Fraction(height, rh) if height else None
        scale = min(s for s in (by_width, by_height) if s is not None)
        if not enlarge:
            scale = min(scale, Fraction(1))
        size = (max(1, half_up(rw * scale)), max(1, half_up(rh * scale)))
        if width and height and fit == "letterbox":
            canvas = (width, height)
    region_size = (region[2] - region[0], region[3] - region[1])
    if size == region_size:  # scaling to the size it already has is no scaling: the plain crop's file
        size = None
    if canvas == (size or region_size):
        canvas = None

    # Crop.relpath
    name = "{}_{}_{}_{}".format(*region)
    if size:
        name += "_{}x{}".format(*size)
    if canvas:
        name += "_lb{}x{}".format(*canvas)
        if colour != DEFAULT_BACKGROUND:
            name += f"_{colour}"
    if quality is not None and fmt in LOSSY:
        name += f"_q{quality}"
    return f"{uuid[:2]}/{uuid}/{name}.{fmt}"


def _region_of(box: Box, image_size: Size, pad: tuple[Fraction | int, bool] | None, square: bool) -> Box:
    """crops.region_of for a client's box: with context, made square, kept inside the image."""
    width, height = image_size
    x1, y1, x2, y2 = box
    if x2 > width or y2 > height:
        raise ValueError(f"The box {list(box)} does not fit inside the {width}x{height} image.")
    if pad is not None:
        amount, percent = pad
        if percent:  # Pad.sides: a percentage of the box's width (left, right) and height (top, bottom)
            share = Fraction(amount) / 100
            dx, dy = half_up((x2 - x1) * share), half_up((y2 - y1) * share)
        else:
            dx = dy = int(amount)
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
    return max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)


def _number(name: str, value: object, least: int = 0) -> int:
    # bool is an int to Python, not to the service
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value < MAX_NUMBER:
        raise ValueError(f"{name} must be a whole number from {least} to {MAX_NUMBER - 1}, not {value!r}.")
    return value


def _uuid(text: str) -> str:
    try:
        return str(uuidlib.UUID(str(text)))  # canonical lower case, as the service writes it in paths
    except ValueError:
        raise ValueError(f"{text!r} is not a uuid.") from None


def _format(name: str) -> str:
    fmt = FORMATS.get(str(name).strip().lower())
    if fmt is None:
        raise ValueError(f"format must be one of: webp, jpeg (or jpg), png; not {name!r}.")
    return fmt


def _colour(text: str) -> str:
    match = COLOUR.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f'background must be a hex colour such as "#1a2b3c", not {text!r}.')
    return match.group(1).lower()


def _pad(value: int | str) -> tuple[Fraction | int, bool]:
    """(amount, is a percentage), as the service's PadField reads pixels (16, "16") or a percentage ("10%")."""
    if isinstance(value, str):
        if match := PERCENT.fullmatch(value):
            percent = Fraction(match.group(1))  # exactly the decimal asked for, as the service reads it
            if percent > MAX_PAD_PERCENT:
                raise ValueError(f"A pad percentage may be at most {MAX_PAD_PERCENT}%.")
            return percent, True
        if value.strip().isdecimal() and len(value.strip()) <= 9:
            return int(value.strip()), False
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_NUMBER:
        return value, False
    raise ValueError(f'pad must be a whole number of pixels or a percentage such as "10%", not {value!r}.')


def _image_size(size: Sequence[int]) -> Size:
    width, height = size
    return _number("image width", width, least=1), _number("image height", height, least=1)
