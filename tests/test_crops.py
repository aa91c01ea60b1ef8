"""The crop owner: a crop's canonical path, read back, and the patterns nginx and logstats use."""

import re

import pytest

from cropper import crops
from cropper.crops import Box, Crop, parse_relpath
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
    assert all(type(n) is int for n in parsed.box)


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
