"""Image work, with no Flask and no network: decode a download, keep its pixels, cut and encode crops.

A decoded source is kept as a raw pixel file (a small header, then rows of pixels). A crop
memory-maps it and touches only the rows it needs, so a second box of a cached image costs
no PNG decode, and every Gunicorn worker shares the same pages through the page cache.
"""

import io
import mmap
import struct

from PIL import Image, ImageOps, UnidentifiedImageError

from . import formats
from .crops import check_box
from .errors import ImageTooLargeError, UpstreamError

# FathomNet serves PNG framegrabs and JPEG photos; refusing other decoders keeps
# Pillow's rarely used parsers away from bytes we did not make.
SOURCE_FORMATS = ("PNG", "JPEG")
BANDS = {"L": 1, "RGB": 3, "RGBA": 4}
RAW_HEADER = struct.Struct("<4s8sII")  # magic, mode, width, height
RAW_MAGIC = b"CRP1"
RAW_STRIP_ROWS = 256
EXIF_ORIENTATION = 0x0112


def decode(file, max_pixels, reported_size):
    """Decode a downloaded PNG or JPEG into an L, RGB or RGBA image the size FathomNet reports."""
    try:
        with Image.open(file, formats=SOURCE_FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise _too_large(image.size, max_pixels)
            image.load()
            return normalise_mode(orient(image, reported_size))
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"The image is larger than this server decodes ({max_pixels} pixels).", max_pixels=max_pixels
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UpstreamError(f"The image host sent something that is not a readable PNG or JPEG: {error}") from None


def _too_large(size, max_pixels):
    width, height = size
    return ImageTooLargeError(
        f"The image is {width}x{height}, over the {max_pixels} pixels this server decodes.",
        width=width, height=height, max_pixels=max_pixels,
    )


def check_size(size, max_pixels):
    """Refuse a source by its size alone, before anything is downloaded."""
    if size[0] * size[1] > max_pixels:
        raise _too_large(size, max_pixels)



def orient(image, reported_size):
    """Apply the EXIF orientation, unless only the stored grid matches the size FathomNet reports.

    Annotators draw boxes on the image as a browser shows it (EXIF applied), and FathomNet's
    width and height tell us which grid the boxes are in when the two disagree.
    """
    if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
        return image
    turned = ImageOps.exif_transpose(image)
    if image.size == tuple(reported_size) and turned.size != image.size:
        return image
    return turned


def normalise_mode(image):
    """Bring any PNG or JPEG mode to L, RGB or RGBA without losing what it shows."""
    mode = image.mode
    if "transparency" in image.info and mode in ("L", "RGB", "P"):
        return image.convert("RGBA")  # a colour key (tRNS) is alpha too
    if mode in BANDS:
        return image
    if mode.startswith("I") or mode == "1":
        gray = _gray(image)
        if "transparency" not in image.info:
            return gray
        # A colour key of a 1-bit or 16-bit gray PNG is alpha too: Pillow compares it at full depth.
        alpha = image.convert("RGBA").getchannel("A")
        return Image.merge("RGBA", (gray, gray, gray, alpha))
    if mode in ("LA", "La", "PA", "RGBa"):
        return image.convert("RGBA")
    return image.convert("RGB")  # P without transparency, CMYK, YCbCr, ...


def _gray(image):
    """A 1-bit or 16-bit grayscale image as L."""
    if image.mode == "1":
        return image.convert("L")
    # 16-bit grayscale: scale 0..65535 onto 0..255 (rounded); a plain convert would clip to white.
    return image.convert("I").point(lambda v: v * (1 / 257) + 0.5).convert("L")


def raw_size(size):
    """The most bytes a raw pixel file of an image this size takes (RGBA, the widest mode kept)."""
    return RAW_HEADER.size + size[0] * size[1] * BANDS["RGBA"]


class MemorySource:
    """A decoded image cropped as a RawImage is, while its raw pixel file is being written."""

    def __init__(self, image):
        self.image = image

    @property
    def size(self):
        return self.image.size

    def crop(self, box):
        check_box(box, self.size)
        return self.image.crop(tuple(box))

    def close(self):
        pass  # shared by the requests that came while it is stored; dropped when it is

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_raw(image, out):
    """Write an L, RGB or RGBA image as a raw pixel file."""
    out.write(RAW_HEADER.pack(RAW_MAGIC, image.mode.encode(), image.width, image.height))
    # In strips: one tobytes() of a 4K image would hold a second copy of all its pixels.
    for top in range(0, image.height, RAW_STRIP_ROWS):
        out.write(image.crop((0, top, image.width, min(top + RAW_STRIP_ROWS, image.height))).tobytes())


class RawImage:
    """A raw pixel file, memory-mapped from an open binary file, which it closes; use as a context manager."""

    def __init__(self, file):
        self._file = file
        try:
            self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)  # ValueError when empty
        except ValueError:
            file.close()
            raise
        if len(self._map) < RAW_HEADER.size:
            self.close()
            raise ValueError(f"{file.name} is not a complete raw pixel file")
        magic, mode, self.width, self.height = RAW_HEADER.unpack_from(self._map)
        self.mode = mode.rstrip(b"\0").decode(errors="replace")
        expected = RAW_HEADER.size + self.width * self.height * BANDS.get(self.mode, 0)
        if magic != RAW_MAGIC or self.mode not in BANDS or len(self._map) != expected:
            self.close()
            raise ValueError(f"{file.name} is not a complete raw pixel file")

    @property
    def size(self):
        return self.width, self.height

    def crop(self, box):
        """Return the pixels inside box as a new image, reading only its rows."""
        check_box(box, self.size)
        bands = BANDS[self.mode]
        stride = self.width * bands
        if self.mode == "RGB":
            # Pillow holds RGB in 4 bytes a pixel, so it cannot map these rows and must unpack
            # them: unpack the box's pixels alone (the decoder steps over the rest of each row).
            start = RAW_HEADER.size + box.y1 * stride + box.x1 * bands
            with memoryview(self._map)[start:start + (box.height - 1) * stride + box.width * bands] as pixels:
                return Image.frombuffer("RGB", box.size, pixels, "raw", "RGB", stride, 1)
        start = RAW_HEADER.size + box.y1 * stride
        with memoryview(self._map)[start:start + box.height * stride] as rows:
            strip = Image.frombuffer(self.mode, (self.width, box.height), rows, "raw", self.mode, 0, 1)
            region = strip.crop((box.x1, 0, box.x2, box.height))
            del strip  # it may share the map's memory, which must be released before closing
        return region

    def close(self):
        self._map.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# Clockwise turns (IIIF's direction) as Pillow's transposes, which turn the other way.
TURNS = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def render(source, crop):
    """The image a Crop describes: its region cut from a source (a RawImage or MemorySource), then each step."""
    image = source.crop(crop.region)
    for step in STEPS:
        image = step(image, crop)
    return image


# The render pipeline: what a Crop asks beyond its region, in IIIF's order (spec 4.6: region, size,
# mirror, rotation, quality). Each step takes the image and the Crop and returns the image, itself
# when the Crop asks nothing of it. A new crop option is a field of crops.Crop and a step here.


def scale(image, crop):
    """To the Crop's size: Lanczos, with Pillow's reducing path (a box reduce first) for big reductions."""
    if crop.size and crop.size != image.size:
        return image.resize(crop.size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def centre_on_canvas(image, crop):
    """Letterbox: centred on a canvas of the Crop's background colour."""
    return letterbox(image, crop.canvas, crop.background) if crop.canvas else image


def mirror(image, crop):
    return ImageOps.mirror(image) if crop.mirror else image


def rotate(image, crop):
    return image.transpose(TURNS[crop.rotation]) if crop.rotation else image


def recolour(image, crop):
    """IIIF's qualities: gray, or bitonal (default and color keep the source's colours)."""
    if crop.colour == "gray":
        return flatten(image).convert("L")
    if crop.colour == "bitonal":
        return flatten(image).convert("L").point(lambda v: 255 if v >= 128 else 0)
    return image


STEPS = [scale, centre_on_canvas, mirror, rotate, recolour]


def flatten(image):
    """An RGBA image shown on white, as a page would (for outputs without alpha)."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def letterbox(image, canvas, background):
    """image centred on a canvas of the background colour (rrggbb), opaque."""
    colour = tuple(int(background[i:i + 2], 16) for i in (0, 2, 4))
    mode = image.mode
    if mode == "L" and len(set(colour)) > 1:
        mode = "RGB"  # a coloured canvas around a gray image
    fill = colour[0] if mode == "L" else (*colour, 255) if mode == "RGBA" else colour
    out = Image.new(mode, canvas, fill)
    out.paste(image.convert(mode), ((canvas[0] - image.width) // 2, (canvas[1] - image.height) // 2))
    return out


def encode(image, format_name, quality, options=None):
    """Encode a crop as bytes of a format from the format table, with quality for the lossy ones.

    options: Pillow save() options that override the table's (the configured encoder effort).
    """
    fmt = formats.get(format_name)
    if not fmt.alpha:
        image = flatten(image)  # no alpha in this format: transparent parts are shown on white
    options = {**fmt.options, **(options or {}), **({"quality": quality} if fmt.lossy else {})}
    out = io.BytesIO()
    image.save(out, fmt.pillow_format, **options)
    return out.getvalue()
