"""Pixel assertions shared by the tests, in the spirit of Pillow's own test helpers."""

import io

from PIL import Image, ImageChops, ImageStat

from cropper import imaging


def open_bytes(data):
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def expected_crop(record, box):
    """What a crop of a stand-in image must show: its decoded, mode-normalised source region."""
    source = imaging.normalise_mode(open_bytes(record.data))
    return source.crop(tuple(box))


def assert_image_equal(a, b):
    assert a.mode == b.mode, (a.mode, b.mode)
    assert a.size == b.size, (a.size, b.size)
    assert a.tobytes() == b.tobytes(), "pixels differ"


def mean_difference(a, b):
    """Mean absolute difference per channel, 0..255."""
    return max(ImageStat.Stat(ImageChops.difference(a, b)).mean)


def assert_image_similar(a, b, tolerance=4.0):
    """Compare as a person sees them: on white, in luma.

    Lossy codecs subsample colour and drop what is under transparent pixels, so per-channel
    RGB differs a lot on noisy test images; luma of the flattened image stays within ~2,
    while the same box shifted by 4 pixels differs by ~10.
    """
    assert a.size == b.size, (a.size, b.size)
    a_luma, b_luma = (flatten_on_white(im).convert("L") for im in (a, b))
    assert mean_difference(a_luma, b_luma) <= tolerance


def flatten_on_white(image):
    """What a JPEG crop of an image with alpha should look like."""
    if image.mode in ("LA", "PA", "P"):
        image = image.convert("RGBA")
    if image.mode != "RGBA":
        return image.convert("RGB")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background
