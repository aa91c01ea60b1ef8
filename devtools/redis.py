"""A real Redis on loopback (Debian's redis-server), for the data-set queue of several hosts in tests.

    with RedisServer(folder) as redis:
        env = {"DATASET_QUEUE": redis.url}
        redis.stop(); redis.start()      # an outage the queue must live through; the data stays (appendonly)
"""

import shutil
import subprocess
import time
from pathlib import Path

from .servers import free_port, stop_process, wait_until


def find_redis():
    return shutil.which("redis-server") or (Path("/usr/bin/redis-server").exists() and "/usr/bin/redis-server")


class RedisServer:
    """redis-server on 127.0.0.1 and a port of its own, its data in folder (kept across stop and start)."""

    def __init__(self, folder, port=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        binary = find_redis()
        if not binary:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        # appendonly: what the queue held is there again after a restart, as a deployed Redis keeps it.
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"],
            stdout=open(self.folder / "redis.log", "ab"), stderr=subprocess.STDOUT)
        if not wait_until(self._answers, timeout=15):
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}: see {self.folder / 'redis.log'}")
        return self

    def _answers(self):
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        """SIGTERM, as a deploy stops it; its data stays in the folder for start()."""
        stop_process(self.process)
        time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
