"""/metrics over real Gunicorn workers and nginx, and the Grafana dashboard's queries in a real Prometheus.

The counts /metrics gives are summed over every worker (prometheus_client's multiprocess mode),
so a test that makes N requests, spread over three workers by the kernel, reads back N.
"""

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, free_port, wait_until
from tests.integration.conftest import service_env

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "cropper.json"


def samples(url):
    """{(name, labels as a sorted tuple): value} of a /metrics page."""
    text = requests.get(url, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def crop(url, record, box, **extra):
    x1, y1, x2, y2 = box
    return requests.post(f"{url}/cropper/", json={"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                                                  **extra}, timeout=60)


def test_metrics_count_what_three_workers_did(gunicorn, standin):
    assert gunicorn.workers == 3
    record = standin.image("framegrab-8")
    before = samples(f"{gunicorn.url}/metrics")
    made = crop(gunicorn.url, record, (0, 0, 100, 100))
    assert made.status_code == 200
    with ThreadPoolExecutor(6) as pool:  # spread over the workers
        hits = list(pool.map(lambda _: crop(gunicorn.url, record, (0, 0, 100, 100)).status_code, range(30)))
    failed = crop(gunicorn.url, record, (0, 0, 5000, 10))
    after = samples(f"{gunicorn.url}/metrics")

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert hits == [200] * 30 and failed.status_code == 422
    assert grew("cropper_requests_total", endpoint="cropper.create_crop", status="200") == 31
    assert grew("cropper_requests_total", endpoint="cropper.create_crop", status="422") == 1
    assert grew("cropper_crops_total", outcome="hit") == 30
    assert grew("cropper_crops_total", outcome="miss") == 1
    assert grew("cropper_crop_failures_total", code="box_outside_image") == 1
    if made.json()["cached"] is False and standin.downloads(record.uuid) == 1:
        assert grew("cropper_fathomnet_calls_total", call="download", outcome="ok") == 1
        assert grew("cropper_decode_seconds_count") == 1
    assert grew("cropper_encode_seconds_count", format="webp") == 1
    assert grew("cropper_request_seconds_count", endpoint="cropper.create_crop") == 32


def test_an_empty_metrics_file_a_killed_process_left_does_not_fail_the_scrape(gunicorn):
    """A process killed between making its metrics file and sizing it leaves it empty, for good."""
    empty = gunicorn.cwd / "var" / "metrics" / "gauge_mostrecent_999999.db"
    empty.touch()
    try:
        answer = requests.get(f"{gunicorn.url}/metrics", timeout=10)
        assert answer.status_code == 200 and "cropper_requests_total" in answer.text
    finally:
        empty.unlink()


def test_metrics_are_only_for_the_monitoring_networks(standin, tmp_path):
    find_nginx_or_skip()
    env = service_env(standin, tmp_path / "cache", METRICS_ALLOW="10.99.0.0/16")
    with Gunicorn(env, cwd=tmp_path, workers=1) as app:
        refused = requests.get(f"{app.url}/metrics", timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        with NginxServer(app, tmp_path / "cache", tmp_path, metrics_allow=("10.99.0.0/16",)) as nginx:
            for path in ("/metrics", "/nginx_status"):
                answer = requests.get(f"{nginx.url}{path}", timeout=10)
                assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"


def test_nginx_exposes_its_own_counters_and_the_apps_to_loopback(nginx):
    status = requests.get(f"{nginx.url}/nginx_status", timeout=10)
    assert status.status_code == 200 and "Active connections" in status.text
    assert "cropper_requests_total" in requests.get(f"{nginx.url}/metrics", timeout=10).text


@pytest.fixture
def prometheus(tmp_path):
    """Debian's Prometheus on a free loopback port, scraping whatever targets() is given."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            raise RuntimeError("prometheus is missing; .ci/setup should have installed it")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    processes = []

    def start(targets):
        config = tmp_path / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                      "scrape_configs": [{"job_name": "cropper", "static_configs":
                                                          [{"targets": targets}]}]}))
        processes.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert wait_until(lambda: _ready(port), 30)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def _ready(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def dashboard_queries():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def test_every_dashboard_query_returns_data_from_a_real_prometheus(prometheus, standin, tmp_path):
    """Traffic that touches every metric, scraped by Prometheus, then each of the dashboard's queries."""
    find_nginx_or_skip()
    env = service_env(standin, tmp_path / "cache", CACHE_MAX_BYTES=str(64 * 1024), CACHE_PRUNE_INTERVAL="0.5",
                      MISS_SLOTS="1", MISS_QUEUE="0", GUNICORN_THREADS="4", LOCK_TIMEOUT="1",
                      METADATA_TTL="0", ADMIN_TOKEN="token")  # every box asked again; purges
    with Gunicorn(env, cwd=tmp_path, workers=2) as app:
        url = prometheus([app.url.removeprefix("http://")])
        assert wait_until(lambda: _has_data(url, "up == 1"), 30)  # scraping: rates see the traffic's slope
        for round_number, names in enumerate((("framegrab-3", "gray"), ("framegrab-4", "framegrab-6"))):
            records = [standin.image(name) for name in names]
            for record in records:
                for fmt in ("webp", "png"):
                    crop(app.url, record, (0, 0, 300, 200), format=fmt)  # misses, downloads, decodes, encodes
                crop(app.url, record, (0, 0, 300, 200))  # a hit
            crop(app.url, records[0], (0, 0, 5000, 10))  # a failure
            busy_image = standin.image(f"framegrab-{7 + round_number}")
            standin.set_fault("hold", target="image", uuid=busy_image.uuid, times=1)
            with ThreadPoolExecutor(4) as pool:  # one makes it, the others wait for its lock (or a slot): busy
                held = [pool.submit(crop, app.url, busy_image, (0, 0, 64, 64)) for _ in range(4)]
                standin.wait_until_held(1)
                time.sleep(1.5)  # past LOCK_TIMEOUT: the waiters give up with 503 busy
                standin.release()
                assert 503 in [future.result().status_code for future in held]
            for i in range(20):  # over the 64 KiB crop budget: evictions
                crop(app.url, records[1], (i, i, i + 200, i + 200), format="png")
            box_uuid = standin.image_json(names[1])["boundingBoxes"][0]["uuid"]
            for _ in range(2):  # looked up, then asked again (METADATA_TTL=0)
                requests.post(f"{app.url}/cropper/", json={"box_uuid": box_uuid}, timeout=60)
            purged = requests.delete(f"{app.url}/admin/images/{records[1].uuid}",
                                     headers={"Authorization": "Bearer token"}, timeout=60)
            assert purged.status_code == 200 and purged.json()["bytes"] > 0
            time.sleep(2.5)  # a few scrapes between the rounds
        missing = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            missing = [(title, expr) for title, expr in dashboard_queries() if not _has_data(url, expr)]
            if not missing:
                break
            time.sleep(1)
        assert missing == [], missing


def _has_data(url, expr):
    answer = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return any(point["value"][1] not in ("NaN", "+Inf", "-Inf") for point in answer["data"]["result"])
