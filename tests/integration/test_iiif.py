"""IIIF Image API 3.0 at level 2 over real nginx and Gunicorn, checked by the IIIF consortium's validator.

The validator's test image (a 10x10 grid of coloured squares) is served by the FathomNet stand-in
under a uuid of its own. Tiles listed in info.json are fetched at every scale factor; a tile made
once is then a file nginx serves without the app.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from cropper.iiif import image as iiif
from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, forget_image, read_log
from devtools.standin import uuid_for
from tests.images import assert_image_equal, open_bytes
from tests.integration.conftest import service_env

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def validator():
    found = shutil.which("iiif-validate.py", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("iiif-validate.py is missing: requirements-dev.txt installs iiif-validator")
    return found


def test_the_official_validator_passes_at_level_2_through_nginx(nginx):
    host = nginx.url.removeprefix("http://")
    result = subprocess.run([sys.executable, validator(), "-s", host, "-p", "iiif/3", "-i", uuid_for("iiif-validator"),
                             "--version=3.0", "--level=2", "-v"], capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    # Its report (a line per test) only when it fails: a pass is one dot among the others.
    assert result.returncode == 0 and "Done (33 tests, 0 failures)" in output, \
        f"iiif-validate.py --version=3.0 --level=2 against {host}:\n{output}"


def info(nginx, uuid, **headers):
    return requests.get(f"{nginx.url}/iiif/3/{uuid}/info.json", headers=headers, timeout=30)


def test_info_json_describes_the_image_for_deep_zoom_without_a_download(nginx, standin):
    record = standin.image("large")
    standin.reset()
    answer = info(nginx, record.uuid)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == 'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
    assert 'rel="profile"' in answer.headers["Link"]
    document = answer.json()
    assert document["id"] == f"{nginx.url}/iiif/3/{record.uuid}"  # nginx's host, from X-Forwarded-*
    assert (document["width"], document["height"], document["profile"]) == (3840, 2160, "level2")
    assert document["tiles"] == [{"width": 512, "height": 512, "scaleFactors": [1, 2, 4, 8]}]
    assert {"webp"} <= set(document["extraFormats"]) and "bitonal" in document["extraQualities"]
    assert {"mirroring", "sizeUpscaling"} <= set(document["extraFeatures"])
    assert standin.downloads() == 0
    plain = info(nginx, record.uuid, Accept="application/json")
    assert plain.headers["Content-Type"].startswith("application/json")


def test_the_base_uri_redirects_to_info_json(nginx, standin):
    uuid = standin.image("gray").uuid
    answer = requests.get(f"{nginx.url}/iiif/3/{uuid}", timeout=30, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == f"{nginx.url}/iiif/3/{uuid}/info.json"


def test_every_tile_info_json_lists_is_served_at_its_size(nginx, standin):
    record = standin.image("large")
    document = info(nginx, record.uuid).json()
    tile = document["tiles"][0]
    urls = []
    for factor in tile["scaleFactors"]:
        for region, size in iiif.tile_regions(document["width"], document["height"], tile["width"], factor):
            x1, y1, x2, y2 = region
            urls.append((f"{nginx.url}/iiif/3/{record.uuid}/{x1},{y1},{x2 - x1},{y2 - y1}/{size[0]},{size[1]}"
                         f"/0/default.jpg", size))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda item: (requests.get(item[0], timeout=60), item[1]), urls))
    for answer, size in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == "image/jpeg"
        assert open_bytes(answer.content).size == tuple(size)
    assert len(urls) == 40 + 12 + 4 + 1


def test_a_repeated_tile_is_a_file_nginx_serves_without_the_app(nginx, standin):
    uuid = standin.image("framegrab").uuid
    path = f"/iiif/3/{uuid}/512,512,512,512/256,256/0/default.jpg"
    first = requests.get(f"{nginx.url}{path}", timeout=30)
    assert first.status_code == 200 and first.headers["X-Cropper-Cache"] == "miss"
    again = requests.get(f"{nginx.url}{path}", timeout=30, headers={"Origin": "https://viewer.example"})
    assert again.status_code == 200 and again.headers["X-Cropper-Cache"] == "hit"
    assert again.content == first.content and again.headers["Access-Control-Allow-Origin"] == "*"
    entries = read_log(nginx.access_log, until=lambda es: sum(e["uri"] == path for e in es) == 2)
    served = [e for e in entries if e["uri"] == path]
    # One made by the app, one served by nginx alone (each nginx worker flushes its own log buffer: any order).
    assert sorted(e["upstream_status"] for e in served) == ["", "200"]


def test_32_tiles_of_one_cold_4k_image_make_one_download_and_one_decode(nginx, gunicorn, standin):
    record = standin.image("large")
    forget_image(gunicorn.cache_dir, record.uuid)
    standin.reset()
    tiles = list(iiif.tile_regions(3840, 2160, 512, 1))[:32]
    urls = [f"{nginx.url}/iiif/3/{record.uuid}/{r.x1},{r.y1},{r.width},{r.height}/{w},{h}/0/default.png"
            for r, (w, h) in tiles]
    with ThreadPoolExecutor(32) as pool:
        statuses = [answer.status_code for answer in pool.map(lambda url: requests.get(url, timeout=60), urls)]
    assert statuses == [200] * 32
    assert standin.downloads(record.uuid) == 1
    pixels = [p for p in Path(gunicorn.cache_dir, "sources").rglob(f"{record.uuid}.pix")]
    assert len(pixels) == 1  # one decode: pixels are written once, right after the one download


def test_an_iiif_crop_and_the_same_cropper_crop_agree_pixel_for_pixel(nginx, standin):
    uuid = standin.image("rgba").uuid
    by_iiif = requests.get(f"{nginx.url}/iiif/3/{uuid}/100,150,300,200/max/0/default.png", timeout=30)
    by_api = requests.post(f"{nginx.url}/cropper/", timeout=30, json={"uuid": uuid, "x1": 100, "y1": 150, "x2": 400,
                                                                     "y2": 350, "format": "png"}).json()
    assert_image_equal(open_bytes(by_iiif.content), open_bytes(requests.get(by_api["url"], timeout=30).content))
    scaled = requests.get(f"{nginx.url}/iiif/3/{uuid}/100,150,300,200/150,100/0/default.png", timeout=30)
    by_api = requests.post(f"{nginx.url}/cropper/", timeout=30, json={"uuid": uuid, "x1": 100, "y1": 150, "x2": 400,
                                                                     "y2": 350, "width": 150, "format": "png"}).json()
    assert_image_equal(open_bytes(scaled.content), open_bytes(requests.get(by_api["url"], timeout=30).content))


@pytest.mark.parametrize("tail, status", [
    ("full/max/0/default.jpg", 200),
    ("square/!100,100/!90/gray.png", 200),
    ("pct:10,10,50,50/,100/180/bitonal.png", 200),
    ("full/2000,/0/default.jpg", 400),         # larger than the region, without ^
    ("full/^2000,/0/default.jpg", 200),
    ("0,0,0,10/max/0/default.jpg", 400),        # an empty region
    ("5000,5000,10,10/max/0/default.jpg", 400),  # entirely outside
    ("full/max/45/default.jpg", 501),          # valid, not done
    ("full/max/0/sepia.jpg", 400),
    ("full/max/0/default.tif", 400),
    ("full/max/0/default", 400),
])
def test_image_requests_answer_the_statuses_the_spec_gives(nginx, standin, tail, status):
    uuid = standin.image("gray").uuid
    answer = requests.get(f"{nginx.url}/iiif/3/{uuid}/{tail}", timeout=30, headers={"Origin": "https://v.example"})
    assert answer.status_code == status, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    if status == 200 and tail.endswith(("gray.png", "bitonal.png")):
        assert open_bytes(answer.content).mode in ("L", "1")  # single-channel


def test_an_unknown_image_is_404(nginx):
    assert info(nginx, UNKNOWN).status_code == 404
    assert requests.get(f"{nginx.url}/iiif/3/{UNKNOWN}/full/max/0/default.jpg", timeout=30).status_code == 404
    assert requests.get(f"{nginx.url}/iiif/3/not-a-uuid/info.json", timeout=30).status_code == 404


def test_iiif_and_nginx_s_errors_on_it_are_open_to_every_origin_whatever_cors_origins_says(standin, tmp_path):
    find_nginx_or_skip()
    env = service_env(standin, tmp_path / "cache", CORS_ORIGINS="https://only.example")
    with Gunicorn(env, cwd=tmp_path, workers=1) as app, \
            NginxServer(app, tmp_path / "cache", tmp_path, cors_origins=("https://only.example",)) as nginx:
        uuid = standin.image("gray").uuid
        headers = {"Origin": "https://viewer.example"}
        assert info(nginx, uuid, **headers).headers["Access-Control-Allow-Origin"] == "*"
        tile = f"{nginx.url}/iiif/3/{uuid}/0,0,64,64/64,64/0/default.jpg"
        assert requests.get(tile, headers=headers, timeout=30).headers["Access-Control-Allow-Origin"] == "*"
        assert requests.get(tile, headers=headers, timeout=30).headers["X-Cropper-Cache"] == "hit"
        crop = requests.post(f"{nginx.url}/cropper/", headers=headers, timeout=30,
                             json={"uuid": uuid, "x1": 0, "y1": 0, "x2": 8, "y2": 8})
        assert "Access-Control-Allow-Origin" not in crop.headers  # the crop API keeps CORS_ORIGINS
        # nginx's own errors on IIIF URLs too, so a viewer can read them
        refused = requests.post(tile, headers=headers, timeout=10)  # nginx's 405 for a file on disk
        assert refused.status_code == 405 and refused.json()["error"]["code"] == "method_not_allowed"
        assert refused.headers["Access-Control-Allow-Origin"] == "*"
        app.stop()  # nginx's 502
        down = requests.get(f"{nginx.url}/iiif/3/{uuid}/info.json", headers=headers, timeout=10)
        assert down.status_code == 502 and down.headers["Access-Control-Allow-Origin"] == "*"


LINK_FEATURES = {"canonicalLinkHeader": 'rel="canonical"', "profileLinkHeader": 'rel="profile"'}


@pytest.mark.parametrize("tile", ["1024,0,512,512/512,512/0/default.jpg", "0,0,1920,1080/240,135/0/default.jpg",
                                  "512,512,256,256/^300,300/!90/gray.png"])
def test_every_link_header_info_json_promises_is_on_every_image_answer_through_nginx(nginx, standin, tile):
    """As made by the app and as served again by nginx from disk: what extraFeatures claims holds for both."""
    uuid = standin.image("framegrab").uuid
    claimed = [feature for feature in info(nginx, uuid).json()["extraFeatures"] if feature in LINK_FEATURES]
    assert "profileLinkHeader" in claimed
    first = requests.get(f"{nginx.url}/iiif/3/{uuid}/{tile}", timeout=30)
    again = requests.get(f"{nginx.url}/iiif/3/{uuid}/{tile}", timeout=30)
    assert (first.headers["X-Cropper-Cache"], again.headers["X-Cropper-Cache"]) == ("miss", "hit")
    for answer in (first, again):
        for feature in claimed:
            assert LINK_FEATURES[feature] in answer.headers.get("Link", ""), (feature, answer.headers)


def test_a_tile_nginx_serves_has_the_profile_link_header_the_app_s_has(nginx, standin):
    uuid = standin.image("framegrab").uuid
    path = f"/iiif/3/{uuid}/1024,512,256,256/128,128/0/default.jpg"
    first = requests.get(f"{nginx.url}{path}", timeout=30)
    again = requests.get(f"{nginx.url}{path}", timeout=30)
    assert (first.headers["X-Cropper-Cache"], again.headers["X-Cropper-Cache"]) == ("miss", "hit")
    profile = '<http://iiif.io/api/image/3/level2.json>;rel="profile"'
    assert profile in first.headers["Link"] and profile in again.headers["Link"]


@pytest.mark.parametrize("spelling", ["/iiif/3/{uuid}//{tile}", "/iiif/3/{uuid}/./{tile}",
                                      "/iiif/3/x/../{uuid}/{tile}"])
def test_a_tile_url_nginx_normalises_answers_alike_on_disk_or_not(nginx, standin, spelling):
    uuid = standin.image("framegrab").uuid
    tile = f"{100 + len(spelling)},40,64,64/32,32/0/default.jpg"  # a tile of its own per spelling
    session = requests.Session()
    prepared = session.prepare_request(requests.Request("GET", nginx.url + spelling.format(uuid=uuid, tile=tile)))
    prepared.url = nginx.url + spelling.format(uuid=uuid, tile=tile)  # kept as written
    first = session.send(prepared, timeout=30, allow_redirects=False)
    again = session.send(prepared, timeout=10, allow_redirects=False)
    assert (first.status_code, again.status_code) == (200, 200), first.text[:200]
    assert first.content == again.content


def test_an_upscaled_image_on_disk_is_served_only_to_its_request_with_the_caret(nginx, gunicorn, standin):
    """A size above the region needs ^: the stored upscaled file must not answer the request without it."""
    uuid = standin.image("gray").uuid
    region = "10,10,50,40"
    upscaled, without = (f"/iiif/3/{uuid}/{region}/{size}/0/default.png" for size in ("^100,80", "100,80"))
    made = requests.get(f"{nginx.url}{upscaled}", timeout=30)  # sent as %5E, as browsers send ^ too
    assert made.status_code == 200 and open_bytes(made.content).size == (100, 80)
    for base in (nginx.url, gunicorn.url):
        refused = requests.get(f"{base}{without}", timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request", base
    again = requests.get(f"{nginx.url}{upscaled}", timeout=30)
    assert again.content == made.content
    sent = upscaled.replace("^", "%5E")
    entries = read_log(nginx.access_log, until=lambda es: sum(e["uri"] == sent for e in es) == 2)
    assert sorted(e["upstream_status"] for e in entries if e["uri"] == sent) == ["", "200"]  # then from disk


def test_an_upscaled_image_an_earlier_version_stored_without_its_caret_is_pruned(nginx, gunicorn, standin, tmp_path):
    """Caches hold upscaled images under the old name, which nginx would serve without ^: `cache prune` removes
    them (as the pruner Gunicorn starts does on each pass), and the request with ^ makes the image again."""
    uuid = standin.image("gray").uuid
    upscaled, without = (f"/iiif/3/{uuid}/20,10,50,40/{size}/0/default.png" for size in ("^100,80", "100,80"))
    made = requests.get(f"{nginx.url}{upscaled}", timeout=30)
    folder = Path(gunicorn.cache_dir) / "iiif" / uuid[:2] / uuid / "20,10,50,40"
    (folder / "^100,80").rename(folder / "100,80")  # as an earlier version stored it
    pruned = subprocess.run([sys.executable, "-m", "cropper", "cache", "prune"], cwd=tmp_path, text=True,
                            capture_output=True, timeout=60, env={**os.environ, "CACHE_DIR": str(gunicorn.cache_dir)})
    assert pruned.returncode == 0, pruned.stderr
    assert "1 under names of earlier versions" in pruned.stdout and not (folder / "100,80").exists()
    assert requests.get(f"{nginx.url}{without}", timeout=30).status_code == 400
    again = requests.get(f"{nginx.url}{upscaled}", timeout=30)
    assert again.status_code == 200 and again.content == made.content
