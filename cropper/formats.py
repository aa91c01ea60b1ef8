"""The output formats: the one table that says which formats exist and how each is written.

Everything else reads this table: the schemas accept its names and aliases, the crop owner puts
its names in paths, imaging saves with its options, and nginx's `types` and location patterns
are rendered from it. Adding a format is adding a row here (and a Pillow encoder for it).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class Format:
    name: str  # in requests, answers and crop file names
    media_type: str
    pillow_format: str  # the name Pillow's Image.save() takes
    aliases: tuple = ()  # other names a request may use
    lossy: bool = False  # takes a quality, 1-100
    alpha: bool = False  # keeps transparency; without it, transparent parts are shown on white
    options: dict = field(default_factory=dict)  # further Image.save() options
    iiif: str | None = None  # its name in IIIF Image API URLs, if the spec has one


FORMATS = {f.name: f for f in (
    Format("webp", "image/webp", "WEBP", lossy=True, alpha=True, iiif="webp"),
    Format("jpeg", "image/jpeg", "JPEG", aliases=("jpg",), lossy=True, iiif="jpg"),
    Format("png", "image/png", "PNG", alpha=True, options={"compress_level": 6}, iiif="png"),
)}


def names():
    """Every format's name, in table order."""
    return tuple(FORMATS)


def lookup(name):
    """The Format a request's name or alias means (any case), or None."""
    name = name.strip().lower()
    for fmt in FORMATS.values():
        if name == fmt.name or name in fmt.aliases:
            return fmt
    return None


def iiif_names():
    """{IIIF name: format} of the formats IIIF URLs can ask for."""
    return {fmt.iiif: fmt for fmt in FORMATS.values() if fmt.iiif}


def get(name):
    """The Format of a canonical name."""
    return FORMATS[name]
