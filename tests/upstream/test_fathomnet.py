"""FathomNetClient against the real stand-in: metadata, downloads, retries, limits and host checks."""

import hashlib
import io
import socket
import threading
import time

import pytest

from cropper.errors import ImageNotFoundError, ImageTooLargeError, UpstreamError, UpstreamTimeoutError
from cropper.upstream import BoxQuery, ImageInfo
from cropper.upstream.fathomnet import MAX_REDIRECTS, FathomNetClient, box_from_api, image_from_api
from devtools.servers import free_port
from devtools.standin import DATASET_GENUS, concepts, find_boxes, taxon_descendants

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def download(client, url):
    """(bytes written, sha256 returned)."""
    out = io.BytesIO()
    sha256 = client.download(url, out)
    return out.getvalue(), sha256


def allowing(settings, tiny, **changes):
    """Settings that also allow images from the tiny server's port."""
    hosts = (*settings.allowed_image_hosts, tiny.url.removeprefix("http://"))
    return settings.replace(allowed_image_hosts=hosts, **changes)


@pytest.fixture
def client(settings, tiny):
    return FathomNetClient(allowing(settings, tiny))


# -- metadata


def boxes_of(standin, name):
    """The BoxInfos of a stand-in image, as its metadata lists them."""
    return tuple(box_from_api(box) for box in standin.image_json(name)["boundingBoxes"])


def expected_info(standin, name):
    """The ImageInfo of a stand-in image: its size, its boxes, and where and when it was taken."""
    record, data = standin.image(name), standin.image_json(name)
    return ImageInfo(record.uuid, record.url, 1920, 1080, record.sha256, boxes_of(standin, name),
                     depth=data.get("depthMeters"), latitude=data.get("latitude"), longitude=data.get("longitude"),
                     timestamp=data.get("timestamp"), imaging_type=data.get("imagingType"),
                     contributors=data.get("contributorsEmail"))


def test_image_returns_its_metadata(client, standin):
    record = standin.image("framegrab")
    info = client.image(record.uuid)
    assert info == expected_info(standin, "framegrab")
    assert (info.depth, info.latitude, info.longitude, info.imaging_type) == (200.0, 36.7, -122.05, "ROV")
    assert info.timestamp == "2019-07-01T02:00:32.000Z"
    assert info.size == (1920, 1080)
    assert standin.api_calls(record.uuid) == 1


def test_an_unknown_uuid_is_image_not_found(client, standin):
    with pytest.raises(ImageNotFoundError) as info:
        client.image(UNKNOWN)
    assert info.value.details == {"uuid": UNKNOWN}
    assert standin.api_calls(UNKNOWN) == 1  # a 404 is an answer, not retried


@pytest.mark.parametrize("fault", ["500", "503"])
def test_one_server_error_is_retried(client, standin, fault):
    record = standin.image("framegrab")
    standin.set_fault(fault, target="api", times=1)
    assert client.image(record.uuid).url == record.url
    assert standin.api_calls(record.uuid) == 2


@pytest.mark.parametrize("retries", [0, 2])
def test_lasting_server_errors_are_upstream_errors_after_the_retries(settings, standin, retries):
    client = FathomNetClient(settings.replace(upstream_retries=retries))
    record = standin.image("framegrab")
    standin.set_fault("500", target="api")
    with pytest.raises(UpstreamError) as info:
        client.image(record.uuid)
    assert type(info.value) is UpstreamError
    assert info.value.details == {"status": 500}
    assert standin.api_calls(record.uuid) == 1 + retries


def test_a_slow_api_times_out_once_without_retry(settings, standin, monkeypatch):
    client = FathomNetClient(settings.replace(read_timeout=0.3))
    monkeypatch.setattr(standin, "slow_seconds", 2.0)
    record = standin.image("framegrab")
    standin.set_fault("slow", target="api")
    start = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        client.image(record.uuid)
    assert time.monotonic() - start < 1.0
    assert standin.api_calls(record.uuid) == 1


def test_an_html_answer_from_the_api_is_an_upstream_error(client, standin):
    standin.set_fault("html", target="api")
    with pytest.raises(UpstreamError, match="not JSON"):
        client.image(standin.image("framegrab").uuid)


def test_an_api_that_is_down_is_an_upstream_error(settings):
    client = FathomNetClient(settings.replace(fathomnet_api_url=f"http://127.0.0.1:{free_port()}/api"))
    with pytest.raises(UpstreamError) as info:
        client.image(UNKNOWN)
    assert type(info.value) is UpstreamError


def test_images_returns_only_the_known_ones(client, standin):
    framegrab, jpeg = standin.image("framegrab"), standin.image("jpeg")
    found = client.images([framegrab.uuid, UNKNOWN, jpeg.uuid])
    assert found == {framegrab.uuid: expected_info(standin, "framegrab"), jpeg.uuid: expected_info(standin, "jpeg")}
    assert standin.count("/api/images/query/uuids", method="POST") == 1
    assert standin.api_calls() == 1


def test_images_of_only_unknown_uuids_is_empty(client, standin):
    assert client.images([UNKNOWN]) == {}


@pytest.mark.parametrize("data", [
    {"width": 10, "height": 10},
    {"url": "http://x/y.png", "width": 0, "height": 10},
    {"url": "http://x/y.png", "width": "10", "height": 10},
    {"url": "", "width": 10, "height": 10},
    {"url": None, "width": 10, "height": 10},
    [],
], ids=["no-url", "zero-width", "string-width", "empty-url", "null-url", "not-an-object"])
def test_unusable_metadata_is_an_upstream_error(data):
    with pytest.raises(UpstreamError):
        image_from_api(UNKNOWN, data)


def test_metadata_sha256_is_lower_cased_and_optional():
    base = {"url": "http://x/y.png", "width": 10, "height": 5}
    assert image_from_api(UNKNOWN, {**base, "sha256": "ABC"}).sha256 == "abc"
    assert image_from_api(UNKNOWN, {**base, "sha256": ""}).sha256 is None
    assert image_from_api(UNKNOWN, base).sha256 is None


# -- downloads


@pytest.mark.parametrize("name", ["framegrab", "jpeg"])
def test_download_writes_the_exact_bytes_and_returns_their_sha256(client, standin, name):
    record = standin.image(name)
    assert "%20" in record.url
    data, sha256 = download(client, record.url)
    assert data == record.data
    assert sha256 == record.sha256 == hashlib.sha256(data).hexdigest()
    assert standin.downloads(record.uuid) == 1


@pytest.mark.parametrize("url, host", [
    ("offhost", "localhost"),
    ("http://127.0.0.1@evil.example/x.png", "evil.example"),
    ("http://evil.example#@127.0.0.1/x.png", "evil.example"),
    ("http://127.0.0.1.evil.example/x.png", "127.0.0.1.evil.example"),
    ("ftp://127.0.0.1/x.png", "127.0.0.1"),
    ("file:///etc/passwd", None),
])
def test_a_host_that_is_not_allowed_is_refused_without_a_request(client, standin, url, host):
    if url == "offhost":
        url = standin.image("offhost").url
    with pytest.raises(UpstreamError, match="not an allowed image host") as info:
        download(client, url)
    assert info.value.details["host"] == host
    assert standin.downloads() == 0


@pytest.mark.parametrize("fault, message", [
    ("404", "answered 404"),
    ("html", "not an image"),
    ("truncated", "broke off its answer"),
])
def test_a_failed_download_is_an_upstream_error(client, standin, fault, message):
    record = standin.image("framegrab")
    standin.set_fault(fault, target="image", uuid=record.uuid)
    with pytest.raises(UpstreamError, match=message) as info:
        download(client, record.url)
    assert type(info.value) is UpstreamError


def test_an_image_server_error_is_retried(client, standin):
    record = standin.image("gray")
    standin.set_fault("503", target="image", uuid=record.uuid, times=1)
    assert download(client, record.url)[0] == record.data
    assert standin.downloads(record.uuid) == 2


def test_a_trickling_download_times_out(settings, standin, monkeypatch):
    """Every gap is shorter than the read timeout; only the whole-download deadline catches it."""
    client = FathomNetClient(settings.replace(download_timeout=0.5, read_timeout=2))
    monkeypatch.setattr(standin, "slow_seconds", 2.0)
    record = standin.image("framegrab")
    standin.set_fault("trickle", target="image", uuid=record.uuid)
    start = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        download(client, record.url)
    assert time.monotonic() - start < 1.8


@pytest.fixture
def tls_trickler():
    """A TLS server on 127.0.0.1 that answers every ClientHello a byte at a time, every 0.2 s, for up to 5 s.

    Python bounds a whole handshake by the connect timeout; only a deadline over it stops a client sooner.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def trickle(conn):
        with conn:
            conn.recv(4096)  # the ClientHello
            record = b"\x16\x03\x03\x40\x00" + b"\x02" * 64  # a handshake record of 16 KiB, never finished
            for byte in record:
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client gave up: what the test wants
                    return

    def serve():
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("call", ["api", "download"])
def test_a_tls_handshake_slower_than_the_deadline_is_cut_off_at_the_deadline(settings, tls_trickler, call):
    client = FathomNetClient(settings.replace(
        fathomnet_api_url=f"https://{tls_trickler}/api", allowed_image_hosts=(tls_trickler,),
        connect_timeout=2.0, read_timeout=2.0, api_timeout=0.6, download_timeout=0.6, upstream_retries=0))
    start = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        client.image(UNKNOWN) if call == "api" else download(client, f"https://{tls_trickler}/image.png")
    assert time.monotonic() - start < 1.5  # the 0.6 s deadline, not the 2 s connect timeout


def test_a_silent_image_host_times_out(settings, standin, monkeypatch):
    client = FathomNetClient(settings.replace(read_timeout=0.3))
    monkeypatch.setattr(standin, "slow_seconds", 2.0)
    record = standin.image("gray")
    standin.set_fault("slow", target="image", uuid=record.uuid)
    with pytest.raises(UpstreamTimeoutError):
        download(client, record.url)
    assert standin.downloads(record.uuid) == 1


def test_an_image_over_max_download_bytes_is_too_large(settings, standin):
    record = standin.image("gray")
    with pytest.raises(ImageTooLargeError) as info:
        download(FathomNetClient(settings.replace(max_download_bytes=len(record.data) - 1)), record.url)
    assert info.value.details == {"max_bytes": len(record.data) - 1}
    exact = FathomNetClient(settings.replace(max_download_bytes=len(record.data)))
    assert download(exact, record.url)[0] == record.data


@pytest.mark.parametrize("limit, too_large", [(999, True), (1000, False)])
def test_the_size_limit_holds_without_a_content_length(settings, tiny, limit, too_large):
    tiny.routes["/image.png"] = (200, {"Content-Type": "image/png"}, b"x" * 1000)
    client = FathomNetClient(allowing(settings, tiny, max_download_bytes=limit))
    if too_large:
        with pytest.raises(ImageTooLargeError):
            download(client, tiny.url + "/image.png")
    else:
        assert download(client, tiny.url + "/image.png")[0] == b"x" * 1000


@pytest.mark.parametrize("length", ["abc", "10, 10", "-5", "\u00b2"])
def test_a_malformed_content_length_is_ignored_and_the_stream_limited(settings, tiny, length):
    """A Content-Length that is not a plain number must not crash the download (the byte
    0xB2, a latin-1 superscript two, passes str.isdigit() but not int())."""
    tiny.routes["/image.png"] = (200, {"Content-Type": "image/png", "Content-Length": length}, b"x" * 10)
    assert download(FathomNetClient(allowing(settings, tiny)), tiny.url + "/image.png")[0] == b"x" * 10
    with pytest.raises(ImageTooLargeError):
        download(FathomNetClient(allowing(settings, tiny, max_download_bytes=9)), tiny.url + "/image.png")


# -- redirects


def test_a_redirect_to_an_allowed_host_is_followed(client, standin, tiny):
    record = standin.image("gray")
    tiny.routes["/moved.png"] = (302, {"Location": record.url}, b"")
    assert download(client, tiny.url + "/moved.png")[0] == record.data
    assert standin.downloads(record.uuid) == 1


def test_a_redirect_to_a_host_that_is_not_allowed_is_refused(client, standin, tiny):
    record = standin.image("offhost")  # the stand-in serves it, but at http://localhost:<port>
    tiny.routes["/moved.png"] = (302, {"Location": record.url}, b"")
    with pytest.raises(UpstreamError, match="not an allowed image host"):
        download(client, tiny.url + "/moved.png")
    assert tiny.hits == ["/moved.png"]
    assert standin.downloads() == 0


def test_endless_redirects_are_refused(client, tiny):
    tiny.routes["/loop.png"] = (302, {"Location": "/loop.png"}, b"")
    with pytest.raises(UpstreamError, match="redirected too many times"):
        download(client, tiny.url + "/loop.png")
    assert len(tiny.hits) == MAX_REDIRECTS + 1


# -- what the data-set and manifest work asks: concepts, taxa, boxes under constraints


def test_concepts_are_fathomnets_list_of_concept_names(client, standin):
    assert client.concepts() == concepts()
    assert standin.count("/api/boundingboxes/list/concepts") == 1


def test_taxa_are_the_concept_and_its_descendants_and_nothing_for_an_unknown_one(client):
    assert client.taxa(DATASET_GENUS, "fathomnet") == taxon_descendants(DATASET_GENUS, "fathomnet")
    assert client.taxa(DATASET_GENUS, "fathomnet")[0] == DATASET_GENUS
    assert client.taxa("No such thing", "fathomnet") == []


def test_a_box_query_passes_its_constraints_and_pages_in_fathomnets_order(client):
    query = BoxQuery(DATASET_GENUS, taxa_provider="fathomnet", min_depth=500, include_rejected=True)
    expected = find_boxes(concept=DATASET_GENUS, taxaProviderName="fathomnet", minDepth=500, includeRejected=True)
    first = client.boxes(query, 5, 0)
    rest = client.boxes(query, 1000, 5)
    assert first.total == len(expected) and 5 < len(expected)
    assert [box.uuid for box in first.boxes + rest.boxes] == [box["uuid"] for box in expected]
    assert {box.concept for box in first.boxes + rest.boxes} > {DATASET_GENUS}  # descendants came too
    assert client.boxes(BoxQuery(DATASET_GENUS), 1000, 0).total < len(expected)


def test_a_box_carries_its_review_state_and_flags(client):
    page = client.boxes(BoxQuery(DATASET_GENUS, taxa_provider="fathomnet", include_rejected=True), 1000, 0)
    assert {box.review for box in page.boxes} >= {"VERIFIED", "REJECTED"}
    assert {box.occluded for box in page.boxes} == {True, False}
    assert {box.truncated for box in page.boxes} == {True, False}
