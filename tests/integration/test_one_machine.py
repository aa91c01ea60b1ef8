"""docs/deployment.md's "Several hosts on one machine", run as written: every ```sh block of that
section, in order, in one bash, from the checkout, with nothing of the tests' own to start a server.

The test gives the recipe what an operator would choose: a folder nginx's workers can reach, free
ports (the recipe reads them from the environment), the FathomNet stand-in as FathomNet, and two
Gunicorn workers a host on this small machine. Then it crops through the front as a client would.
Everything the recipe started is one process group, stopped at the end.
"""

import dataclasses
import http.client
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from cropper.cluster import Ring
from cropper.config import Settings
from devtools.seaweed import find_weed, free_base_port
from devtools.servers import find_nginx_or_skip, free_port, read_log

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "docs" / "deployment.md"
SECTION = "## Several hosts on one machine"
TIMEOUT = 60


def recipe_blocks():
    """The section's ```sh blocks, in order."""
    section = RECIPE.read_text().split(f"\n{SECTION}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def stop_group(pgid, seconds=60):
    """SIGTERM every process the recipe started (one group: bash ran them without job control), then wait."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def machine(standin):
    find_nginx_or_skip()
    if find_weed() is None:
        pytest.skip("SeaweedFS's weed is not installed (requirements-dev.txt)")
    folder = Path(tempfile.mkdtemp(prefix="cropper-recipe-"))  # not under pytest's private folder:
    folder.chmod(0o755)  # as root, nginx's workers (www-data) must reach it, as the recipe says
    ports = {"FRONT_PORT": free_port(), "STORE_PORT": free_base_port()}
    hosts = [free_port() for _ in range(3)]
    settings = {f.name.upper() for f in dataclasses.fields(Settings)}
    env = {name: value for name, value in os.environ.items() if name not in settings and not name.startswith("AWS_")}
    env.update({
        "CLUSTER": str(folder), "HOST_PORTS": " ".join(map(str, hosts)), **{k: str(v) for k, v in ports.items()},
        # The operator's own, for this test: the stand-in as FathomNet, reads patient on a busy machine
        # shared by three hosts, two workers a host on two cores.
        "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
        "READ_TIMEOUT": "5", "API_TIMEOUT": "10", "DOWNLOAD_TIMEOUT": "10", "GUNICORN_WORKERS": "2",
    })
    script = "\n".join(recipe_blocks())
    recipe = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = recipe.communicate(timeout=240)
        logs = {path.relative_to(folder): path.read_text(errors="replace")[-3000:]
                for path in folder.glob("*/*.log")}
        assert recipe.returncode == 0, f"{output}\n{logs}"
        yield {"folder": folder, "front": f"http://127.0.0.1:{ports['FRONT_PORT']}", "output": output,
               "hosts": [f"127.0.0.1:{port}" for port in hosts]}
    finally:
        stop_group(recipe.pid)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_recipe_has_the_steps_an_operator_needs():
    blocks = recipe_blocks()
    assert len(blocks) >= 6
    text = "\n".join(blocks)
    for step in ("weed mini", "-ip.bind=127.0.0.1", "cropper serve ", "cropper serve --front", "VAR_DIR=host",
                 "S3_PRUNER=", "FRONT_SOURCE_ADDRESS=127.0.0.2", "NGINX_REAL_IP_FROM=127.0.0.2/32", "/readyz"):
        assert step in text, step


def test_crops_through_the_front_download_each_image_once(machine, standin):
    records = [standin.image(name) for name in ("framegrab", "jpeg", "gray", "palette", "rgba")]
    wanted = [(record, (8 * k, 6 * k, 8 * k + 64, 6 * k + 48)) for k in range(4) for record in records]
    standin.reset()

    def post(item):
        record, (x1, y1, x2, y2) = item
        return requests.post(f"{machine['front']}/cropper/", json={"uuid": record.uuid, "x1": x1, "y1": y1,
                                                                   "x2": x2, "y2": y2}, timeout=TIMEOUT)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(post, wanted))
    assert [answer.status_code for answer in answers] == [200] * len(wanted), [a.text for a in answers]
    assert [standin.downloads(record.uuid) for record in records] == [1] * len(records)
    assert {answer.headers["X-Cropper-Host"] for answer in answers} == set(machine["hosts"])  # every host took some
    urls = [answer.json()["url"] for answer in answers]
    assert all(url.startswith(f"{machine['front']}/crops/") for url in urls)  # PUBLIC_URL: the front
    with ThreadPoolExecutor(10) as pool:
        fetched = list(pool.map(lambda url: requests.get(url, timeout=TIMEOUT), urls))
    assert all(f.status_code == 200 and f.headers["Content-Type"] == "image/webp" for f in fetched)
    assert standin.downloads() == len(records)


def test_each_host_keeps_to_its_own_folder(machine):
    folder = machine["folder"]
    for name in ("host1", "host2", "host3", "front"):
        pid = (folder / name / "run" / "nginx" / "nginx.pid").read_text().strip()
        assert Path(f"/proc/{pid}").exists()  # its own nginx, running, with its own config beside it
        assert (folder / name / "log" / "access.log").exists()
    for name in ("host1", "host2", "host3"):
        assert (folder / name / "cache" / "locks").is_dir() and (folder / name / "metrics").is_dir()
        assert (folder / name / "gunicorn.sock").is_socket()
    assert not (folder / "var").exists()


def client_seen_by(log_path, path):
    found = read_log(log_path, until=lambda entries: any(e["uri"] == path for e in entries))
    return next(entry["client"] for entry in found if entry["uri"] == path)


def get_from(source, url, headers):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT, source_address=(source, 0))
    try:
        connection.request("GET", parts.path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_hosts_believe_the_front_alone_about_the_client(machine):
    """With NGINX_REAL_IP_FROM=127.0.0.1/32 (a front on the same machine), every local client was trusted."""
    uuid = "5b2f6a1e-93c4-4d8e-a0b1-c2d3e4f5a6b7"
    owner = next(Ring(machine["hosts"]).owners(uuid))
    n = machine["hosts"].index(owner) + 1
    path = f"/crops/{uuid[:2]}/{uuid}/not-a-crop"
    forged = {"X-Forwarded-For": "203.0.113.9"}
    assert get_from("127.0.0.3", machine["front"] + path, forged) == 404
    assert get_from("127.0.0.1", f"http://{owner}{path}-direct", forged) == 404
    log = machine["folder"] / f"host{n}" / "log" / "access.log"
    assert client_seen_by(log, path) == "127.0.0.3"  # the address the front saw, appended by it
    assert client_seen_by(log, path + "-direct") == "127.0.0.1"  # a local client, not the front: itself


def test_every_host_found_its_key_taken_by_the_others(machine):
    folder = machine["folder"]
    for n, address in enumerate(machine["hosts"], 1):
        others = [host for host in machine["hosts"] if host != address]
        log = folder / f"host{n}" / "serve.log"
        deadline = time.monotonic() + TIMEOUT
        while f"CLUSTER_KEY taken by {others[0]} and {others[1]}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        ready = requests.get(f"http://{address}/readyz", timeout=TIMEOUT).json()
        assert ready["status"] == "ready" and ready["checks"]["cluster"] == {"ok": True}
