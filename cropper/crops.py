"""What a crop is: its parameters, its canonical key, and the URL path that names it.

This module is the one owner of the crop-path grammar. The service names stored crops by
`Crop.relpath`, the routes read request paths back with `parse_relpath`, nginx's location
pattern is rendered from `nginx_location_pattern()` and logstats matches log lines with
`url_path_pattern()`. A crop's path is a pure function of its parameters, and only the one
canonical spelling of each crop parses, so every link handed out names exactly one file.

    crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/100_100_405_400.webp
          ^^ shard: the uuid's first two hex digits, keeping folders small at FathomNet's scale
"""

import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

from . import formats

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MAX_DIGITS = 9  # no image is a billion pixels wide
NUMBER = rf"(?:0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}})"  # no sign, no leading zeros: one spelling per number


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

    def fits(self, width, height):
        return self.x2 <= width and self.y2 <= height


@dataclass(frozen=True)
class Crop:
    """One output the service makes and stores: which pixels of which image, in which format."""

    uuid: str  # canonical lower-case form: safe in a file path
    box: Box
    format: str  # a name from the format table

    @property
    def relpath(self):
        """The crop's path below /crops/ (and below the crop store's root)."""
        x1, y1, x2, y2 = self.box
        return f"{self.uuid[:2]}/{self.uuid}/{x1}_{y1}_{x2}_{y2}.{self.format}"

    @property
    def media_type(self):
        return formats.get(self.format).media_type


def _file_name_pattern(extensions):
    number = NUMBER
    return rf"{number}_{number}_{number}_{number}\.(?:{'|'.join(map(re.escape, extensions))})"


@functools.lru_cache(maxsize=8)
def _relpath_re(extensions):
    return re.compile(rf"([0-9a-f]{{2}})/({UUID})/({_file_name_pattern(extensions)})")


def parse_relpath(relpath):
    """The Crop a path below /crops/ names, or None if it is not one the service would have made."""
    match = _relpath_re(formats.names()).fullmatch(relpath)
    if match is None:
        return None
    prefix, uuid, name = match.groups()
    stem, _, extension = name.rpartition(".")
    crop = Crop(uuid, Box(*map(int, stem.split("_"))), extension)
    return crop if crop.relpath == relpath else None


def url_path_pattern():
    """A regex (Python and PCRE alike) for the URL path of any crop, the uuid in group 1."""
    return rf"/crops/[0-9a-f]{{2}}/({UUID})/{_file_name_pattern(formats.names())}"


def nginx_location_pattern():
    """nginx's location regex for crop files: the same grammar, anchored."""
    return f"^{url_path_pattern()}$"
