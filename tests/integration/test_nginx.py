"""nginx from nginx/templates in front of real Gunicorn: crops served from disk, fallbacks, logs, limits."""

import os
import subprocess
from pathlib import Path

import pytest
import requests

from cropper.ops.serve import check_tls_files
from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, free_port, read_log, wait_until
from devtools.standin import FathomNetStandIn
from tests.integration.conftest import service_env


def post_crop(server, record, box, **extra):
    x1, y1, x2, y2 = box
    body = {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}
    return requests.post(f"{server.url}/cropper/", json=body, timeout=30)


def file_for(cache_dir, url):
    return Path(cache_dir) / url.split("/", 3)[3]


def log_entry(nginx, method, uri):
    """The access log's last entry for method + uri (waiting for nginx to flush it)."""
    def found(entries):
        return any(e["method"] == method and e["uri"] == uri for e in entries)

    entries = read_log(nginx.access_log, until=found)
    matching = [e for e in entries if e["method"] == method and e["uri"] == uri]
    assert matching, f"no log entry for {method} {uri}"
    return matching[-1]


def test_a_crop_url_is_served_by_nginx_from_disk(nginx, gunicorn, standin):
    record = standin.image("framegrab")
    created = post_crop(nginx, record, (100, 100, 405, 400), format="png")
    assert created.status_code == 200
    url = created.json()["url"]
    assert url.startswith(nginx.url + "/crops/")  # the public URL is nginx's, from X-Forwarded-Host
    standin.reset()
    served = requests.get(url, timeout=10, headers={"Origin": "https://tool.example"})
    assert served.status_code == 200
    assert served.content == file_for(gunicorn.cache_dir, url).read_bytes()
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert served.headers["ETag"]
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Access-Control-Allow-Origin"] == "*"
    assert served.headers["X-Cropper-Cache"] == "hit"
    entry = log_entry(nginx, "GET", url.removeprefix(nginx.url))
    assert entry["upstream_status"] == "" and entry["upstream_response_time"] == ""  # Gunicorn never saw it
    assert entry["cache"] == "hit"
    assert standin.counts()["api"] == 0
    revalidated = requests.get(url, timeout=10, headers={"If-None-Match": served.headers["ETag"]})
    assert revalidated.status_code == 304


def test_a_deleted_crop_is_made_again_on_its_url(nginx, gunicorn, standin):
    record = standin.image("rgba")
    url = post_crop(nginx, record, (10, 20, 110, 120), format="png").json()["url"]
    path = file_for(gunicorn.cache_dir, url)
    original = path.read_bytes()
    path.unlink()
    regenerated = requests.get(url, timeout=30)
    assert regenerated.status_code == 200
    assert regenerated.headers["X-Cropper-Cache"] == "regenerated"
    assert regenerated.content == original
    assert path.read_bytes() == original
    assert log_entry(nginx, "GET", url.removeprefix(nginx.url))["cache"] == "regenerated"
    again = requests.get(url, timeout=10)
    assert again.headers["X-Cropper-Cache"] == "hit"


def test_a_regenerated_crop_of_an_evicted_image_downloads_it_again(nginx, gunicorn, standin):
    record = standin.image("framegrab-3")
    url = post_crop(nginx, record, (0, 0, 64, 64)).json()["url"]
    file_for(gunicorn.cache_dir, url).unlink()
    pixels = gunicorn.cache_dir / "sources" / record.uuid[:2] / f"{record.uuid}.pix"
    assert wait_until(pixels.exists)  # stored just after the answer
    for source in (gunicorn.cache_dir / "sources" / record.uuid[:2]).glob(f"{record.uuid}.*"):
        source.unlink()
    standin.reset()
    assert requests.get(url, timeout=30).status_code == 200
    assert standin.downloads(record.uuid) == 1


@pytest.mark.parametrize("path", [
    "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/0_0_10_10.gif",
    "/crops/9e/9E140D51-2A43-5870-9337-EB66C5A4DE6D/0_0_10_10.png",
    "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/00_0_10_10.png",
    "/crops/9e/9e140d51/0_0_10_10.png",
    "/crops/",
    "/crops/../sources/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d.json",
    "/crops/9e/9e140d51-2a43-5870-9337-eb66c5a4de6d/.0_0_10_10.png.abc.tmp",
])
def test_a_malformed_crop_path_is_a_404_from_nginx(nginx, standin, path):
    response = requests.get(nginx.url + path, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] in ("crop_not_found", "not_found")
    assert standin.counts()["api"] == 0


def test_a_malformed_path_never_reaches_gunicorn(nginx):
    requests.get(nginx.url + "/crops/9e/nope.png", timeout=10)
    assert log_entry(nginx, "GET", "/crops/9e/nope.png")["upstream_status"] == ""


def test_the_access_log_is_json_with_the_cache_status(nginx, standin):
    record = standin.image("gray")
    body = {"uuid": record.uuid, "x1": 5, "y1": 5, "x2": 55, "y2": 55}
    for tag, expected in (("first", "miss"), ("second", "hit")):  # a query tag tells the two apart in the log
        response = requests.post(f"{nginx.url}/cropper/?t={tag}", json=body, timeout=30)
        assert response.headers["X-Cropper-Cache"] == expected
        entry = log_entry(nginx, "POST", f"/cropper/?t={tag}")
        assert entry["cache"] == expected
        assert entry["status"] == 200 and isinstance(entry["request_time"], (int, float))
        assert entry["upstream_status"] == "200" and float(entry["upstream_response_time"]) >= 0
        assert entry["client"] == "127.0.0.1" and entry["bytes"] > 0 and entry["time"]


def test_api_errors_pass_through_as_the_apps_json(nginx):
    response = requests.post(f"{nginx.url}/cropper", json={"uuid": "../../etc/passwd"}, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    preflight = requests.options(f"{nginx.url}/cropper/", timeout=10, headers={
        "Origin": "https://tool.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"]


def test_nginx_s_own_405s_are_json_and_say_which_methods_are_allowed(nginx, standin):
    record = standin.image("gray")
    url = requests.post(f"{nginx.url}/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 9, "y2": 9},
                        timeout=30).json()["url"]
    for method, path, allowed in (("POST", url.split(nginx.url, 1)[1], "GET, HEAD"),  # a file nginx serves
                                  ("DELETE", "/", "GET, HEAD"), ("PUT", "/static/page.css", "GET, HEAD"),
                                  ("TRACE", "/healthz", "GET, HEAD"), ("TRACE", "/cropper/", "OPTIONS, POST"),
                                  ("TRACE", "/cropper-list?x=1", "OPTIONS, POST")):
        response = requests.request(method, nginx.url + path, timeout=10)
        assert response.status_code == 405, (method, path)
        assert response.headers["Allow"] == allowed, (method, path)
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_health_endpoints_are_proxied(nginx):
    assert requests.get(f"{nginx.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{nginx.url}/readyz", timeout=10).status_code == 200


def test_readyz_follows_fathomnet(tmp_path):
    """Ready while FathomNet answers, 503 while it is down, ready again when it returns."""
    find_nginx_or_skip()
    port = free_port()
    standin = FathomNetStandIn(port=port).start()
    env = service_env(standin, tmp_path / "cache", READY_TIMEOUT="0.5")
    try:
        with Gunicorn(env, cwd=tmp_path, workers=1) as app, NginxServer(app, tmp_path / "cache", tmp_path) as nginx:
            ready = requests.get(f"{nginx.url}/readyz", timeout=10)
            assert ready.status_code == 200
            checks = ready.json()["checks"]
            assert ready.json()["status"] == "ready" and checks["cache"] == checks["fathomnet"] == {"ok": True}
            assert set(checks) == {"cache", "fathomnet", "datasets"}  # the data-set worker: reported, not gating
            standin.stop()
            down = requests.get(f"{nginx.url}/readyz", timeout=10)
            assert down.status_code == 503
            assert down.json()["checks"]["fathomnet"]["ok"] is False
            assert down.json()["checks"]["cache"]["ok"] is True
            standin = FathomNetStandIn(port=port).start()
            assert requests.get(f"{nginx.url}/readyz", timeout=10).status_code == 200
    finally:
        standin.stop()


def test_readyz_fails_when_the_disk_is_nearly_full(standin, tmp_path):
    env = service_env(standin, tmp_path / "cache", MIN_FREE_BYTES=str(2**62))
    with Gunicorn(env, cwd=tmp_path, workers=1) as app:
        response = requests.get(f"{app.url}/readyz", timeout=10)
        assert response.status_code == 503
        assert "free" in response.json()["checks"]["cache"]["error"]


def test_rate_limits_answer_429_past_the_burst(gunicorn, standin, tmp_path):
    find_nginx_or_skip()
    limits = {"api_rate": "1r/s", "api_burst": 3, "regen_rate": "1r/s", "regen_burst": 2}
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path, **limits) as nginx:
        bad_body = {"uuid": "nope"}  # cheap for the app: the limit, not the work, is under test
        statuses = [requests.post(f"{nginx.url}/cropper/", json=bad_body, timeout=10).status_code
                    for _ in range(10)]
        assert statuses.count(422) <= 4 and statuses.count(429) >= 6
        limited = requests.post(f"{nginx.url}/cropper/", json=bad_body, timeout=10)
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "too_many_requests"
        record = standin.image("gray")
        missing = [f"{nginx.url}/crops/{record.uuid[:2]}/{record.uuid}/0_0_{n}_1.png" for n in range(1, 9)]
        statuses = [requests.get(url, timeout=30).status_code for url in missing]
        assert 429 in statuses and statuses.count(200) <= 3


def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def test_tls_server_block_serves_https(gunicorn, standin, tmp_path):
    find_nginx_or_skip()
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path, tls_listen=f"127.0.0.1:{tls_port}",
                     tls_cert=str(cert), tls_key=str(key)):
        response = requests.get(f"https://127.0.0.1:{tls_port}/healthz", verify=str(cert), timeout=10)
        assert response.json() == {"status": "ok"}
        record = standin.image("gray")
        created = requests.post(f"https://127.0.0.1:{tls_port}/cropper/", verify=str(cert), timeout=30,
                                json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 8, "y2": 8})
        assert created.json()["url"].startswith(f"https://127.0.0.1:{tls_port}/crops/")


def test_tls_file_problems_are_explained(tmp_path):
    cert, key = self_signed(tmp_path)
    assert check_tls_files(cert, key) == []
    key.chmod(0o644)
    assert "chmod 600" in check_tls_files(cert, key)[0]
    key.chmod(0o600)
    assert "does not exist" in check_tls_files(tmp_path / "missing.pem", key)[0]
    assert "not a PEM certificate" in check_tls_files(key, key)[0]
    if os.geteuid() != 0:  # root reads everything, so only an ordinary user can see this one
        cert.chmod(0)
        assert "not readable" in check_tls_files(cert, key)[0]


def fresh_crop_url(nginx, record, x):
    """The URL of a crop nobody has asked for yet: its first GET is the app's (it makes it), the next nginx's."""
    return f"{nginx.url}/crops/{record.uuid[:2]}/{record.uuid}/{x}_3_{x + 21}_24.png"


def test_the_app_s_etag_is_nginx_s_so_a_crop_revalidates_whoever_served_it(nginx, standin):
    url = fresh_crop_url(nginx, standin.image("framegrab"), 1301)
    made = requests.get(url, timeout=30)
    assert made.headers["X-Cropper-Cache"] == "regenerated"
    served = requests.get(url, timeout=10)
    assert served.headers["X-Cropper-Cache"] == "hit"
    assert made.headers["ETag"] == served.headers["ETag"]
    assert requests.get(url, timeout=10, headers={"If-None-Match": made.headers["ETag"]}).status_code == 304


def test_a_crop_the_app_serves_has_its_length_and_answers_ranges_as_nginx_does(nginx, gunicorn, standin):
    record = standin.image("framegrab")
    head = requests.head(fresh_crop_url(nginx, record, 1302), timeout=30)
    assert head.headers["X-Cropper-Cache"] == "regenerated"
    url = fresh_crop_url(nginx, record, 1302)
    assert head.headers["Content-Length"] == str(file_for(gunicorn.cache_dir, url).stat().st_size)
    url = fresh_crop_url(nginx, record, 1303)
    first = requests.get(url, timeout=30, headers={"Range": "bytes=0-9"})
    again = requests.get(url, timeout=10, headers={"Range": "bytes=0-9"})
    assert (first.headers["X-Cropper-Cache"], again.headers["X-Cropper-Cache"]) == ("regenerated", "hit")
    assert first.status_code == again.status_code == 206
    assert first.content == again.content and len(first.content) == 10
    assert first.headers["Content-Range"] == again.headers["Content-Range"]


@pytest.mark.parametrize("spelling", ["/crops//{shard}/{uuid}/{name}", "/crops/{shard}/{uuid}//{name}",
                                      "/crops/{shard}/{uuid}/./{name}", "/crops/{shard}/x/../{uuid}/{name}"])
def test_a_crop_url_nginx_normalises_answers_alike_on_disk_or_not(nginx, standin, spelling):
    record = standin.image("framegrab")
    x = 1310 + len(spelling) * 7 + spelling.count("/")  # a crop of its own per spelling
    name = fresh_crop_url(nginx, record, x).rsplit("/", 1)[1]
    path = spelling.format(shard=record.uuid[:2], uuid=record.uuid, name=name)
    session = requests.Session()
    prepared = session.prepare_request(requests.Request("GET", nginx.url + path))
    prepared.url = nginx.url + path  # kept as written: requests would remove the dot segments
    first = session.send(prepared, timeout=30, allow_redirects=False)
    again = session.send(prepared, timeout=10, allow_redirects=False)
    assert (first.status_code, again.status_code) == (200, 200), (path, first.text[:200])
    assert first.content == again.content
