"""The format table is the one list of formats: a row added there alone works end to end."""

import io
import re

import pytest
from PIL import Image

from cropper import create_app, crops, formats
from cropper.ops.nginx import NginxProcess, NginxSite, render_nginx
from tests.images import assert_image_equal, expected_crop, flatten_on_white
from tests.modules import package_sources


@pytest.fixture
def bmp(monkeypatch):
    """A dummy format, added to the table and nowhere else."""
    monkeypatch.setitem(formats.FORMATS, "bmp", formats.Format("bmp", "image/bmp", "BMP", aliases=("dib",)))
    return formats.FORMATS["bmp"]


def test_lookup_knows_names_and_aliases_in_any_case():
    assert formats.lookup(" JPG ").name == "jpeg" and formats.lookup("Webp").name == "webp"
    assert formats.lookup("gif") is None


def test_a_format_added_to_the_table_is_accepted_encoded_served_and_matched_by_nginx(bmp, settings, standin,
                                                                                      tmp_path):
    record = standin.image("rgba")
    client = create_app(settings).test_client()
    body = {"uuid": record.uuid, "x1": 10, "y1": 20, "x2": 110, "y2": 90, "format": "DIB"}

    created = client.post("/cropper/", json=body)

    assert created.status_code == 200, created.json
    assert created.json["format"] == "bmp" and created.json["url"].endswith("/10_20_110_90.bmp")
    path = created.json["url"].removeprefix("http://crops.test")
    served = client.get(path)
    assert served.status_code == 200 and served.mimetype == "image/bmp"
    image = Image.open(io.BytesIO(served.data))
    assert image.format == "BMP"
    assert_image_equal(image.convert("RGB"), flatten_on_white(expected_crop(record, (10, 20, 110, 90))))

    site = NginxSite("127.0.0.1:1", "127.0.0.1:2", tmp_path / "cache", tmp_path / "access.log")
    render_nginx(site, NginxProcess.local(tmp_path / "nginx"))
    locations = (tmp_path / "nginx" / "conf.d" / "snippets" / "cropper-files.conf").read_text()
    pattern = re.search(r'location ~ "([^"]+)"', locations).group(1)
    assert re.fullmatch(pattern, path) and pattern == crops.nginx_location_pattern()
    assert "image/bmp bmp;" in locations


def test_a_format_not_in_the_table_is_refused_by_name(settings):
    client = create_app(settings).test_client()
    body = {"uuid": "9e140d51-2a43-5870-9337-eb66c5a4de6d", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "format": "bmp"}
    response = client.post("/cropper/", json=body)
    assert response.status_code == 422
    assert response.json["error"]["details"]["format"] == ["Must be one of: webp, jpeg, png."]


def test_no_format_list_outside_the_table():
    """Other modules ask the table; a literal list of format names elsewhere would drift from it."""
    for name, text in package_sources(but="formats.py"):
        assert not re.search(r"webp.{0,12}jpeg|jpeg.{0,12}png|image/(webp|jpeg|png)", text), name
