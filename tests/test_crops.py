"""The crop owner: a crop's canonical path, read back, and the patterns nginx and logstats use."""

import re

import pytest

from cropper import crops
from cropper.crops import Box, Crop, CropRequest, Pad, parse_relpath
from cropper.errors import BoxOutsideImageError
from tests.modules import package_sources

UUID = "f11816b8-1234-4abc-8def-0123456789ab"
PATH = f"f1/{UUID}/100_0_405_400.webp"


def test_crop_relpath_is_sharded_on_the_uuid():
    assert Crop(UUID, Box(100, 0, 405, 400), "webp").relpath == PATH


@pytest.mark.parametrize("crop", [
    Crop(UUID, Box(0, 0, 1, 1), "png"),
    Crop(UUID, Box(100, 0, 405, 400), "webp"),
    Crop("00000000-0000-4000-8000-000000000000", Box(7, 8, 9, 10), "jpeg"),
    Crop(UUID, Box(999_999_998, 10, 999_999_999, 20), "png"),
])
def test_crop_relpath_round_trips(crop):
    parsed = parse_relpath(crop.relpath)
    assert parsed == crop
    assert all(type(n) is int for n in parsed.region)


@pytest.mark.parametrize("relpath", [
    PATH.upper(),
    f"f1/{UUID.upper()}/100_0_405_400.webp",
    f"F1/{UUID}/100_0_405_400.webp",
    f"aa/{UUID}/100_0_405_400.webp",
    f"f1/{UUID}/0100_0_405_400.webp",
    f"f1/{UUID}/100_00_405_400.webp",
    f"f1/{UUID}/-100_0_405_400.webp",
    f"f1/{UUID}/100_0_405.webp",
    f"f1/{UUID}/100_0_405_400_1.webp",
    f"f1/{UUID}/100_0_405_400.jpg",
    f"f1/{UUID}/100_0_405_400.gif",
    f"f1/{UUID}/100_0_405_400.WEBP",
    f"f1/{UUID}/100_0_405_400.webp.tmp",
    f".f1/{UUID}/100_0_405_400.webp",
    f"../{PATH}",
    f"f1/../{PATH}",
    f"f1/{UUID}/../{UUID}/100_0_405_400.webp",
    f"/{PATH}",
    f"x/{PATH}",
    f"{PATH}/x",
    f"f1//{UUID}/100_0_405_400.webp",
    f"{UUID}/100_0_405_400.webp",
    f"f1/{UUID.replace('-', '')}/100_0_405_400.webp",
    f"{PATH}\n",
    "",
])
def test_parse_refuses_paths_we_would_not_make(relpath):
    assert parse_relpath(relpath) is None


def test_the_url_pattern_matches_exactly_the_paths_that_parse():
    pattern = re.compile(crops.nginx_location_pattern())
    assert pattern.match(f"/crops/{PATH}")
    assert pattern.match(f"/crops/{PATH}").group(1) == UUID
    for bad in ("/crops/" + PATH.upper(), f"/crops/{PATH}.tmp", f"/crops/x/{PATH}", f"/crops/{PATH[:-5]}.gif"):
        assert not pattern.match(bad)


def test_no_module_outside_the_crop_owner_holds_a_crop_path_pattern():
    for name, text in package_sources(but="crops.py"):
        assert "[0-9a-f]{8}" not in text and r"\d+_\d+" not in text and "_{y1}_" not in text, name


# -- resolving requests: context, squares, sizes, fits


def resolved(image_size=(1920, 1080), box=Box(100, 100, 400, 300), **options):
    request = CropRequest(uuid=UUID, box=box, **options)
    return crops.resolve(request, UUID, box, image_size if request.needs_image_size else None)


@pytest.mark.parametrize("pad, region", [
    (Pad(16), Box(84, 84, 416, 316)),
    (Pad(10, percent=True), Box(70, 80, 430, 320)),  # 10% of 300 wide, of 200 high
    (Pad(0), Box(100, 100, 400, 300)),
])
def test_padding_adds_context_on_each_side(pad, region):
    assert resolved(pad=pad).region == region


@pytest.mark.parametrize("box, region", [
    (Box(0, 300, 200, 450), Box(0, 284, 216, 466)),          # left edge: clamped, not shifted
    (Box(500, 0, 680, 120), Box(484, 0, 696, 136)),          # top
    (Box(1720, 640, 1920, 800), Box(1704, 624, 1920, 816)),  # right
    (Box(900, 960, 1140, 1080), Box(884, 944, 1156, 1080)),  # bottom
    (Box(0, 0, 160, 90), Box(0, 0, 176, 106)),               # top-left corner
])
def test_padding_is_clamped_at_each_edge(box, region):
    assert resolved(box=box, pad=Pad(16)).region == region


@pytest.mark.parametrize("box, region", [
    (Box(100, 100, 400, 300), Box(100, 50, 400, 350)),      # grows the short side, centred
    (Box(0, 300, 200, 450), Box(0, 275, 200, 475)),          # at the left edge: still square
    (Box(500, 0, 680, 120), Box(500, 0, 680, 180)),          # at the top: shifted down to stay square
    (Box(1800, 1000, 1920, 1080), Box(1800, 960, 1920, 1080)),  # bottom-right corner: shifted up
    (Box(0, 100, 1920, 300), Box(0, 0, 1920, 1080)),         # wider than the image is high: clamped
])
def test_a_square_is_centred_shifted_inside_and_clamped_only_when_it_cannot_fit(box, region):
    assert resolved(box=box, square=True).region == region


def test_padding_then_square_then_clamp():
    crop = resolved(box=Box(0, 0, 100, 50), pad=Pad(10, percent=True), square=True)
    assert crop.region == Box(0, 0, 120, 120)


def test_a_client_box_outside_the_image_is_refused_and_an_annotations_is_clamped():
    with pytest.raises(BoxOutsideImageError):
        resolved(box=Box(1900, 0, 1930, 10), pad=Pad(1))
    request = CropRequest(box_uuid="3c0e9d2a-0000-4000-8000-000000000000")
    assert crops.resolve(request, UUID, Box(-40, 500, 160, 600), (1920, 1080)).region == Box(0, 500, 160, 600)
    with pytest.raises(BoxOutsideImageError):
        crops.resolve(request, UUID, Box(2000, 0, 2100, 10), (1920, 1080))


@pytest.mark.parametrize("options, region, size, canvas", [
    ({"width": 150}, Box(100, 100, 400, 300), (150, 100), None),
    ({"height": 100}, Box(100, 100, 400, 300), (150, 100), None),
    ({"width": 224, "height": 224}, Box(100, 100, 400, 300), (224, 149), None),                     # contain
    ({"width": 224, "height": 224, "fit": "cover"}, Box(150, 100, 350, 300), (224, 224), None),
    ({"width": 224, "height": 224, "fit": "fill"}, Box(100, 100, 400, 300), (224, 224), None),
    ({"width": 224, "height": 224, "fit": "letterbox"}, Box(100, 100, 400, 300), (224, 149), (224, 224)),
    ({"width": 600, "height": 600}, Box(100, 100, 400, 300), (600, 400), None),                     # enlarged
    ({"width": 600, "height": 600, "enlarge": False}, Box(100, 100, 400, 300), None, None),
    ({"width": 600, "height": 600, "fit": "letterbox", "enlarge": False}, Box(100, 100, 400, 300), None, (600, 600)),
    ({"width": 600, "height": 600, "fit": "cover", "enlarge": False}, Box(150, 100, 350, 300), None, None),
])
def test_each_fit_gives_the_size_asked(options, region, size, canvas):
    crop = resolved(**options)
    assert (crop.region, crop.size, crop.canvas) == (region, size, canvas)
    assert crop.is_canonical() and parse_relpath(crop.relpath) == crop


@pytest.mark.parametrize("box, width, height", [
    (Box(0, 0, 3, 1), 1, 2), (Box(0, 0, 1, 3), 2, 1), (Box(0, 0, 5, 2), 2, 3),
])
def test_cover_without_enlarging_enlarges_neither_side(box, width, height):
    """A cut rounded to whole pixels (never under 1) can be smaller than the aspect asked for on one side."""
    crop = resolved(box=box, width=width, height=height, fit="cover", enlarge=False)
    out_width, out_height = crop.output_size
    assert out_width <= crop.region.width and out_height <= crop.region.height


@pytest.mark.parametrize("options", [
    {}, {"pad": Pad(0)}, {"pad": Pad(0, percent=True)}, {"width": 300}, {"height": 200},
    {"width": 300, "height": 200, "fit": "fill"}, {"width": 300, "height": 200, "fit": "letterbox"},
    {"width": 300, "height": 200, "fit": "cover"}, {"width": 900, "height": 900, "enlarge": False},
    {"format": "png", "quality": 55},  # png has no quality: the same file as plain png
])
def test_equivalent_requests_name_one_file(options):
    fmt = options.pop("format", "webp")
    assert resolved(format=fmt, **options).relpath == resolved(format=fmt).relpath
    assert resolved().relpath == f"{UUID[:2]}/{UUID}/100_100_400_300.webp"  # plain paths are what they were


def test_an_explicit_quality_is_part_of_the_key_and_the_default_is_not():
    assert resolved(quality=80).relpath.endswith("/100_100_400_300_q80.webp")
    assert resolved(quality=90).relpath != resolved().relpath


@pytest.mark.parametrize("relpath", [
    f"f1/{UUID}/0_0_10_10_10x10.webp",               # a size equal to the region
    f"f1/{UUID}/0_0_10_10_q80.png",                  # a quality on a lossless format
    f"f1/{UUID}/0_0_100_50_80x80_lb224x224.webp",    # not the contained size of the region
    f"f1/{UUID}/0_0_100_50_224x112_lb224x112.webp",  # a canvas the size of what it holds
    f"f1/{UUID}/0_0_100_50_lb50x50.webp",            # a canvas smaller than the region
    f"f1/{UUID}/0_0_10_10_q080.webp",
    f"f1/{UUID}/0_0_10_10_q101.webp",
    f"f1/{UUID}/0_0_10_10_0x5.webp",
    f"f1/{UUID}/0_0_10_10_000000.webp",              # a background without a canvas
    f"f1/{UUID}/0_0_100_50_224x112_lb224x224_000000.webp",  # the default background, spelled out
    f"f1/{UUID}/0_0_100_50_q80_224x112.webp",        # parts out of order
])
def test_paths_no_request_would_produce_are_refused(relpath):
    assert parse_relpath(relpath) is None


def test_option_paths_are_matched_by_the_nginx_pattern():
    pattern = re.compile(crops.nginx_location_pattern())
    for options in ({"width": 224, "height": 224, "fit": "letterbox", "background": "ffffff"}, {"quality": 7}):
        assert pattern.fullmatch("/crops/" + resolved(**options).relpath)


# -- IIIF names: an upscaled image keeps its request's ^, so nginx serves it to that request only


def iiif_crop(size, region=Box(10, 10, 60, 50)):
    return Crop(UUID, region, "png", size, family="iiif")


@pytest.mark.parametrize("size, segment", [((100, 80), "^100,80"), ((51, 10), "^51,10"), ((10, 41), "^10,41"),
                                           ((50, 40), "50,40"), ((25, 20), "25,20")])
def test_an_iiif_name_has_a_caret_exactly_when_a_side_is_larger_than_its_region(size, segment):
    crop = iiif_crop(size)
    assert crop.url_path == f"/iiif/3/{UUID}/10,10,50,40/{segment}/0/default.png"
    assert crops.parse_store_path(crop.store_path) == crop
    assert re.fullmatch(crops.nginx_iiif_location_pattern().replace("?<", "?P<"), crop.url_path)


def test_an_upscaled_size_without_its_caret_or_a_caret_on_a_smaller_one_names_nothing():
    for segment in ("100,80", "^50,40", "^25,20"):
        assert crops.parse_store_path(f"iiif/{UUID[:2]}/{UUID}/10,10,50,40/{segment}/0/default.png") is None


def test_an_upscaled_image_stored_by_an_earlier_version_without_its_caret_is_known_as_superseded():
    old = f"iiif/{UUID[:2]}/{UUID}/10,10,50,40/100,80/0/default.png"
    assert crops.superseded_store_path(old) == iiif_crop((100, 80))
    for current in (iiif_crop((100, 80)).store_path, iiif_crop((25, 20)).store_path, f"crops/{UUID[:2]}/{UUID}/x"):
        assert crops.superseded_store_path(current) is None  # what names a crop now, or nothing at all
