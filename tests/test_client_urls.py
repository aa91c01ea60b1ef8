"""The client's crop_url computes, with no request, the URL the service's resolve() would name."""

import random
from fractions import Fraction

import pytest

from cropper import crops
from cropper.crops import Box, CropRequest, Pad
from cropper_client.urls import crop_relpath

UUID = "9e140d51-2a43-5870-9337-eb66c5a4de6d"


def random_request(rng):
    width, height = rng.choice([(1920, 1080), (640, 480), (37, 1000)])
    x1, y1 = rng.randrange(width - 1), rng.randrange(height - 1)
    box = Box(x1, y1, rng.randint(x1 + 1, width), rng.randint(y1 + 1, height))
    options = {"format": rng.choice(["webp", "jpeg", "png"]), "enlarge": rng.random() < 0.5}
    if rng.random() < 0.3:
        options["quality"] = rng.randint(1, 100)
    shape = rng.choice(["plain", "width", "height", "both"])
    if shape in ("width", "both"):
        options["width"] = rng.randint(1, 3000)
    if shape in ("height", "both"):
        options["height"] = rng.randint(1, 3000)
    if shape == "both":
        options["fit"] = rng.choice(crops.FITS)
        if options["fit"] == "letterbox" and rng.random() < 0.5:
            options["background"] = f"{rng.randrange(2**24):06x}"
    if rng.random() < 0.3:
        options["pad"] = rng.choice([rng.randint(0, 300), f"{rng.randint(0, 200)}.{rng.randint(0, 99):02d}%"])
    options["square"] = rng.random() < 0.2
    return (width, height), box, options


def service_relpath(image_size, box, options):
    pad = options.get("pad")
    if isinstance(pad, str):
        pad = Pad(Fraction(pad.rstrip("%")), percent=True)
    elif pad is not None:
        pad = Pad(pad)
    request = CropRequest(uuid=UUID, box=box, **{**options, "pad": pad})
    return crops.resolve(request, UUID, box, image_size if request.needs_image_size else None).relpath


@pytest.mark.parametrize("seed", range(5))
def test_the_client_names_every_crop_as_the_service_does(seed):
    rng = random.Random(seed)
    for _ in range(500):
        image_size, box, options = random_request(rng)
        client_options = {k: (f"#{v}" if k == "background" else v) for k, v in options.items()}
        needs_size = "pad" in options or options["square"]
        ours = crop_relpath(UUID, box, image_size=image_size if needs_size else None, **client_options)
        assert ours == service_relpath(image_size, box, options), (image_size, box, options)
