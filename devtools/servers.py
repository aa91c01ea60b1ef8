"""Start real servers (Gunicorn, later nginx) as subprocesses on free loopback ports, for tests and benches."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from cropper.ops.nginx import NginxSite
from cropper.ops.serve import Nginx, find_nginx, gunicorn_command

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url, seconds=30, process=None):
    """Poll url until it answers 200, failing early if process has died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def wait_until(condition, timeout=10.0):
    """Poll condition() until it is true (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def find_nginx_or_skip():
    """nginx must be there in CI (.ci/run installs it); elsewhere its tests are skipped, loudly."""
    if find_nginx() is None:
        if os.environ.get("CI"):
            raise RuntimeError("nginx is not installed; .ci/run should have installed nginx-light")
        import pytest

        pytest.skip("nginx is not installed (apt-get install nginx-light)")


def read_log(path, until=lambda entries: True, seconds=5):
    """The JSON lines of an access log, waiting (nginx buffers it for up to 1 s) until `until` holds."""
    deadline = time.monotonic() + seconds
    while True:
        lines = Path(path).read_text().splitlines() if Path(path).exists() else []
        entries = [json.loads(line) for line in lines if line.strip()]
        if until(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def children(pid):
    """Pids of the live child processes of pid, read from /proc (no procps needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def forget_image(cache_dir, uuid, settle=0.3, timeout=10.0):
    """Remove every file the cache holds of an image, so its next crop starts from FathomNet.

    A fresh image's pixels are stored just after its first crop is answered, so a file may land
    (or a temp file be renamed) while we remove: repeat until nothing of it has appeared for `settle` s.
    """
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        found = [path for path in Path(cache_dir).rglob("*") if uuid in str(path) and path.is_file()]
        for path in found:
            path.unlink(missing_ok=True)
        if found:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return
        time.sleep(0.05)
    raise TimeoutError(f"files of image {uuid} kept appearing in {cache_dir}")


def service_env(standin, cache_dir, **extra):
    """The service's environment against the stand-in: short timeouts, so a failure shows in seconds."""
    return {
        "CACHE_DIR": cache_dir,
        "FATHOMNET_API_URL": standin.api_url,
        "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
        "CONNECT_TIMEOUT": "1",
        "READ_TIMEOUT": "1",
        "API_TIMEOUT": "5",
        "DOWNLOAD_TIMEOUT": "3",
        "LOCK_TIMEOUT": "20",
        **extra,
    }


def stop_process(process, seconds=15):
    """SIGTERM, as a deploy stops a server, and SIGKILL if it has not exited within seconds."""
    if process and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Gunicorn:
    """Real Gunicorn with the package's settings serving `app` (the service by default); env holds the settings."""

    def __init__(self, env, cwd, workers=2, port=None, app="cropper:create_app()"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "CACHE_", "FATHOMNET_"))},
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "GUNICORN_WORKERS": str(workers),
            **{k: str(v) for k, v in env.items()},
        }
        self.workers, self.app = workers, app
        self.cwd = Path(cwd)  # a folder without a .env, so a developer's own settings cannot leak in
        self.log_path = self.cwd / "gunicorn.log"
        self.process = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                gunicorn_command(self.app),
                env=self.env, cwd=self.cwd, stdout=log, stderr=log,
            )
        wait_for(f"{self.url}/healthz", process=self.process)
        return self

    def worker_pids(self):
        """The workers' pids: the arbiter's children but the helpers it starts beside them (`python -m cropper
        cache prune`, `python -m cropper datasets worker`)."""
        return [pid for pid in children(self.process.pid) if b"-m\0cropper\0" not in _cmdline(pid)]

    def helper_pid(self, command):
        """The pid of the helper the arbiter started to run `python -m cropper <command>` (e.g. "datasets"), or None."""
        wanted = b"-m\0cropper\0" + command.encode() + b"\0"
        return next((pid for pid in children(self.process.pid) if wanted in _cmdline(pid)), None)

    def pruner_pids(self):
        """The pid of the cache pruner the arbiter runs beside the workers (a list: none, or one)."""
        return [pid for pid in children(self.process.pid) if b"prune" in _cmdline(pid)]

    def stop(self):
        stop_process(self.process, seconds=20)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class StandInProcess:
    """The FathomNet stand-in in its own process (so it does not share a GIL with the load generator)."""

    def __init__(self, latency_ms=0, port=None, look="patterns", draw_ahead=False):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.latency_ms = latency_ms
        self.look = look  # "scenes": the demo's deep-sea pictures (devtools/standin.py LOOKS)
        self.draw_ahead = draw_ahead  # every image drawn at start, in the background (not for benches: it takes CPU)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devtools.standin", "--port", str(self.port), "--latency-ms", str(self.latency_ms),
             "--look", self.look, *(["--draw-ahead"] if self.draw_ahead else [])],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )
        wait_for(f"{self.url}/_standin/catalog", process=self.process)
        return self

    def catalog(self):
        return {item["name"]: item for item in requests.get(f"{self.url}/_standin/catalog", timeout=30).json()}

    def counts(self, uuid=None):
        params = {"uuid": uuid} if uuid else None
        return requests.get(f"{self.url}/_standin/counts", params=params, timeout=5).json()

    def reset(self):
        requests.post(f"{self.url}/_standin/reset", timeout=5)

    def control(self, action, **fields):
        """POST /_standin/<action> (edit-box, delete-box, withdraw-image, add-box, fault, ...); its JSON answer."""
        answer = requests.post(f"{self.url}/_standin/{action}", json=fields, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class NginxServer:
    """Real nginx from the project's templates (cropper.ops.nginx), in front of a running Gunicorn."""

    def __init__(self, gunicorn, cache_dir, run_dir, wait=True, **site_options):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.run_dir = Path(run_dir)
        self.access_log = self.run_dir / "access.log"
        site = NginxSite(listen=f"127.0.0.1:{self.port}", upstream=f"127.0.0.1:{gunicorn.port}",
                         cache_dir=Path(cache_dir), access_log=self.access_log, **site_options)
        # pytest's temp folders are private to the user running the tests, so as root the tests run
        # nginx's workers as root; `cropper serve` drops them to an unprivileged user (test_serve.py).
        self.nginx = Nginx(site, self.run_dir / "nginx", user="root" if os.geteuid() == 0 else "")
        self.log_path = self.run_dir / "nginx.log"
        self.wait = wait  # for the app behind to answer; else only for nginx to listen

    def start(self):
        with open(self.log_path, "ab") as log:
            self.nginx.start(log=log)
        if self.wait:
            wait_for(f"{self.url}/healthz", process=self.nginx.process)
        else:
            wait_until(lambda: _listening(self.port))
        return self

    def stop(self):
        self.nginx.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
