"""Image work: decoding downloads, the raw pixel file, crops and encoding."""

import io
import random
import struct
import zlib

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from cropper import imaging
from cropper.crops import Box
from cropper.errors import BoxOutsideImageError, ImageTooLargeError, UpstreamError

W, H = 37, 23  # odd sizes catch stride and row mistakes


def noise(mode, size=(W, H), seed=1):
    """A deterministic image whose every pixel differs from its neighbours."""
    bands = len(Image.new(mode, (1, 1)).getbands())
    data = random.Random(seed).randbytes(size[0] * size[1] * bands)
    return Image.frombytes(mode, size, data)


def smooth(mode, size=(96, 64)):
    """Gradients in every band: what lossy codecs keep well (noise is not)."""
    ramps = [Image.linear_gradient("L"), Image.radial_gradient("L"),
             Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90), Image.radial_gradient("L").rotate(45)]
    bands = Image.new(mode, (1, 1)).getbands()
    return Image.merge(mode, [r.resize(size) for r in ramps[:len(bands)]])


def saved(image, fmt, **params):
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def decode(data, max_pixels=10**6, reported_size=None):
    return imaging.decode(io.BytesIO(data), max_pixels, reported_size or Image.open(io.BytesIO(data)).size)


def gray16(values, size):
    return Image.frombytes("I;16", size, struct.pack(f"<{len(values)}H", *values))


def gray16_noise():
    """(16-bit image of random values, the 8-bit image it should scale to)."""
    rng = random.Random(2)
    values = [rng.randrange(65536) for _ in range(W * H)]
    return gray16(values, (W, H)), Image.frombytes("L", (W, H), bytes(round(v / 257) for v in values))


def palette():
    return noise("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)


def palette_with_transparency():
    image = noise("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    ImageDraw.Draw(image).rectangle((5, 5, 15, 15), fill=15)
    image.info["transparency"] = 15
    return image


def mean_difference(a, b):
    assert (a.mode, a.size) == (b.mode, b.size)
    return max(ImageStat.Stat(ImageChops.difference(a, b)).mean)


def assert_same_pixels(a, b):
    assert (a.mode, a.size) == (b.mode, b.size)
    assert a.tobytes() == b.tobytes()


# -- decode: modes


SOURCES = {
    # name: (file bytes, the normalised mode, the normalised image as a browser would show it)
    "RGB": lambda: (saved(noise("RGB"), "PNG"), "RGB", noise("RGB")),
    "RGBA": lambda: (saved(noise("RGBA"), "PNG"), "RGBA", noise("RGBA")),
    "L": lambda: (saved(noise("L"), "PNG"), "L", noise("L")),
    "P": lambda: (saved(palette(), "PNG"), "RGB", palette().convert("RGB")),
    "P+transparency": lambda: (saved(palette_with_transparency(), "PNG"), "RGBA",
                               palette_with_transparency().convert("RGBA")),
    "LA": lambda: (saved(noise("LA"), "PNG"), "RGBA", noise("LA").convert("RGBA")),
    "1": lambda: (saved(noise("1"), "PNG"), "L", noise("1").convert("L")),
    "I;16": lambda: (saved(gray16_noise()[0], "PNG"), "L", gray16_noise()[1]),
}


@pytest.mark.parametrize("name", SOURCES)
def test_decode_normalises_lossless_sources_exactly(name):
    data, mode, expected = SOURCES[name]()
    image = decode(data)
    assert image.mode == mode
    assert_same_pixels(image, expected)


def test_decode_keeps_palette_transparency():
    image = decode(saved(palette_with_transparency(), "PNG"))
    assert image.getpixel((10, 10))[3] == 0
    assert image.getpixel((0, 0))[3] == 255


@pytest.mark.parametrize("mode, key", [("L", 7), ("RGB", (1, 2, 3))])
def test_decode_keeps_a_transparent_colour_key(mode, key):
    """A tRNS chunk in an L or RGB PNG makes one colour transparent, as a browser shows it."""
    original = Image.new(mode, (4, 4), key)
    original.putpixel((0, 0), 200 if mode == "L" else (200, 200, 200))
    image = decode(saved(original, "PNG", transparency=key))
    assert image.mode == "RGBA"
    assert image.getpixel((1, 1))[3] == 0
    assert image.getpixel((0, 0))[3] == 255


@pytest.mark.parametrize("original, key, gray, alpha", [
    (gray16([5, 200 * 257, 65535, 5], (4, 1)), 5, [0, 200, 255, 0], [0, 255, 255, 0]),
    (Image.frombytes("1", (4, 1), bytes([0b10100000])), 1, [255, 0, 255, 0], [0, 255, 0, 255]),
], ids=["I;16", "1"])
def test_decode_keeps_the_colour_key_of_16_bit_and_1_bit_gray(original, key, gray, alpha):
    """tRNS in a 16-bit or 1-bit gray PNG: the key's pixels are transparent, as a browser shows them."""
    image = decode(saved(original, "PNG", transparency=key))
    assert image.mode == "RGBA"
    assert list(image.getchannel("A").tobytes()) == alpha
    assert list(image.getchannel("R").tobytes()) == gray


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_decode_normalises_jpegs(mode):
    original = smooth(mode)
    image = decode(saved(original, "JPEG", quality=95))
    expected_mode = "L" if mode == "L" else "RGB"
    assert image.mode == expected_mode
    assert mean_difference(image, original.convert(expected_mode)) < 8


def test_16_bit_gray_is_scaled_not_clipped():
    values = [0, 1, 128, 129, 257, 32768, 65534, 65535]
    image = decode(saved(gray16(values, (4, 2)), "PNG"))
    assert image.mode == "L"
    assert list(image.tobytes()) == [0, 0, 0, 1, 1, 128, 255, 255]


def test_16_bit_gray_keeps_its_gradient():
    ramp = gray16([x * 65535 // 255 for x in range(256)], (256, 1))
    image = decode(saved(ramp, "PNG"))
    assert list(image.tobytes()) == list(range(256))


# -- decode: refusals


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "WEBP"])
def test_decode_refuses_formats_fathomnet_does_not_serve(fmt):
    with pytest.raises(UpstreamError):
        decode(saved(noise("RGB"), fmt), reported_size=(W, H))


@pytest.mark.parametrize("data", [
    b"",
    b"<html><body>Welcome to FathomNet</body></html>",
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 50,
    saved(noise("RGB"), "PNG")[:200],
    saved(noise("RGB"), "PNG")[:-40],
    saved(noise("RGB"), "JPEG")[:300],
], ids=["empty", "html", "png-garbage", "png-head", "png-no-end", "jpeg-head"])
def test_decode_refuses_unreadable_bytes(data):
    with pytest.raises(UpstreamError):
        decode(data, reported_size=(W, H))


def png_header_only(width, height):
    """A PNG whose IHDR declares width x height but whose data is garbage: decoding it would fail."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"not zlib") + chunk(b"IEND", b""))


def test_a_too_large_image_is_refused_before_decoding():
    with pytest.raises(ImageTooLargeError) as info:
        decode(png_header_only(200, 100), max_pixels=19_999, reported_size=(200, 100))
    assert info.value.details == {"width": 200, "height": 100, "max_pixels": 19_999}


def test_an_image_at_the_pixel_limit_is_decoded():
    assert decode(saved(noise("L"), "PNG"), max_pixels=W * H).size == (W, H)


def test_a_decompression_bomb_is_too_large():
    with pytest.raises(ImageTooLargeError):
        decode(png_header_only(30000, 30000), max_pixels=10**6, reported_size=(30000, 30000))


# -- decode: EXIF orientation


def rotated_jpeg():
    """A 40x20 JPEG, red with a blue top-left square, tagged 'rotate 90 degrees clockwise to show'."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[imaging.EXIF_ORIENTATION] = 6
    return image, saved(image, "JPEG", quality=95, exif=exif)


def test_exif_orientation_is_applied_when_fathomnet_reports_the_turned_size():
    stored, data = rotated_jpeg()
    image = decode(data, reported_size=(20, 40))
    assert image.size == (20, 40)
    assert mean_difference(image, stored.transpose(Image.Transpose.ROTATE_270)) < 8
    assert image.getpixel((19, 0))[2] > 200  # the blue corner is now top right


def test_exif_orientation_is_ignored_when_fathomnet_reports_the_stored_size():
    stored, data = rotated_jpeg()
    image = decode(data, reported_size=(40, 20))
    assert image.size == (40, 20)
    assert mean_difference(image, stored) < 8


# -- the raw pixel file


def write_raw_file(image, path):
    with open(path, "wb") as out:
        imaging.write_raw(image, out)
    return path


@pytest.fixture(params=["L", "RGB", "RGBA"])
def raw(request, tmp_path):
    """(original image, path of its raw pixel file)."""
    original = noise(request.param)
    return original, write_raw_file(original, tmp_path / "source.pix")


@pytest.mark.parametrize("box", [
    Box(0, 0, W, H),
    Box(0, 0, 1, 1),
    Box(W - 1, H - 1, W, H),
    Box(W - 1, 0, W, 1),
    Box(0, H - 1, 1, H),
    Box(5, 7, 6, 8),
    Box(0, 3, W, 4),
    Box(3, 0, 4, H),
    Box(10, 5, W, H),
    Box(0, 0, 12, 9),
])
def test_raw_crop_is_exactly_pillows_crop(raw, box):
    original, path = raw
    with imaging.RawImage(open(path, "rb")) as source:
        assert (source.mode, source.size) == (original.mode, original.size)
        assert_same_pixels(source.crop(box), original.crop(box))


@pytest.mark.parametrize("box", [Box(0, 0, W + 1, H), Box(0, 0, W, H + 1), Box(W, 0, W + 1, 1), Box(0, H, 1, H + 1)])
def test_a_box_outside_the_image_is_refused(raw, box):
    _, path = raw
    with imaging.RawImage(open(path, "rb")) as source:
        with pytest.raises(BoxOutsideImageError) as info:
            source.crop(box)
    assert info.value.details == {"image_width": W, "image_height": H}


def test_a_crop_outlives_the_raw_file(raw):
    original, path = raw
    with imaging.RawImage(open(path, "rb")) as source:
        crop = source.crop(Box(1, 1, 5, 5))
    assert_same_pixels(crop, original.crop((1, 1, 5, 5)))


@pytest.mark.parametrize("keep", [0, 10, imaging.RAW_HEADER.size, imaging.RAW_HEADER.size + 5, -1])
def test_a_truncated_raw_file_is_refused(tmp_path, keep):
    """The service refetches a source whose raw file raises ValueError; anything else is a 500."""
    path = write_raw_file(noise("RGB"), tmp_path / "source.pix")
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(ValueError):
        imaging.RawImage(open(path, "rb"))


def test_a_raw_file_with_extra_bytes_is_refused(raw):
    _, path = raw
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ValueError):
        imaging.RawImage(open(path, "rb"))


# -- encode


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_png_round_trips_exactly(mode):
    image = noise(mode)
    assert_same_pixels(Image.open(io.BytesIO(imaging.encode(image, "png", 90))), image)


@pytest.mark.parametrize("fmt, pil_format", [("webp", "WEBP"), ("jpeg", "JPEG")])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_lossy_formats_round_trip_closely(fmt, pil_format, mode):
    image = smooth(mode)
    decoded = Image.open(io.BytesIO(imaging.encode(image, fmt, 90)))
    assert decoded.format == pil_format
    assert decoded.size == image.size
    assert mean_difference(decoded.convert(mode), image) < 8


def test_webp_keeps_alpha():
    image = smooth("RGBA")
    decoded = Image.open(io.BytesIO(imaging.encode(image, "webp", 90)))
    assert decoded.mode == "RGBA"
    assert mean_difference(decoded, image) < 8


def test_rgba_into_jpeg_shows_transparent_parts_on_white():
    image = Image.new("RGBA", (64, 32), (200, 30, 30, 255))
    image.paste((0, 0, 0, 0), (32, 0, 64, 32))  # right half: transparent black
    decoded = Image.open(io.BytesIO(imaging.encode(image, "jpeg", 90)))
    assert decoded.mode == "RGB"
    left, right = decoded.crop((0, 0, 28, 32)), decoded.crop((36, 0, 64, 32))
    assert mean_difference(left, Image.new("RGB", left.size, (200, 30, 30))) < 8
    assert mean_difference(right, Image.new("RGB", right.size, (255, 255, 255))) < 8


def test_quality_changes_lossy_output():
    image = smooth("RGB")
    assert len(imaging.encode(image, "jpeg", 10)) < len(imaging.encode(image, "jpeg", 95))
