"""The Docker stacks started for real: a dockerd of the tests' own, the images built as docs/deployment.md says
for a machine with no image registry, and each compose file brought up, used through its published ports and
brought down (test_stacks.py).

They run where they can: as root, with Debian's docker.io, docker-compose and debootstrap (.ci/setup installs
them). Elsewhere they are skipped, and the run's summary says why in one line. The dockerd has a socket, exec root
and data root of its own, so it neither uses nor disturbs another daemon; it has no default bridge (the stacks'
networks are their own, builds use the host's network), and it is stopped once they are done. Its data root is kept
(CROPPER_DOCKER_ROOT, default /var/lib/cropper-test-docker): a second run reuses the base image and the layers.
"""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"  # Debian's client, whose build is the classic builder (no buildx here)
BASE_IMAGE = "cropper-base:bookworm"
STANDIN = "standin:8001"  # the FathomNet stand-in, as the apps reach it (tests/docker/*.test.yml)
DATA_ROOT = Path(os.environ.get("CROPPER_DOCKER_ROOT", "/var/lib/cropper-test-docker"))
# Ports nothing else on this machine is meant to use (8000, 8001, 8080 and 8443 are the other tests').
AVOID_PORTS = {8000, 8001, 8080, 8443}

# What the run's summary prints: build times and image sizes, each stack's time, or why they were skipped.
FIGURES = []


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.write_sep("-", "Docker stacks")
        for line in FIGURES:
            terminalreporter.write_line(line)


def run(command, *, env=None, timeout=60, check=True, cwd=None):
    """command's result; a failure is one error carrying the end of what it said."""
    try:
        result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{' '.join(map(str, command[:4]))} ... took over {timeout} s") from None
    if check and result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise AssertionError(f"{' '.join(map(str, command))} failed ({result.returncode}):\n" + "\n".join(said))
    return result


def free_port():
    """A free high port on every address (the compose files publish on all of them)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        if port not in AVOID_PORTS:
            return port
    raise RuntimeError("found no free port")


def why_not_here():
    """Why the stacks cannot run on this machine, or None."""
    if os.geteuid() != 0:
        return "they start a dockerd of their own, which needs root"
    for tool in ("/usr/sbin/dockerd", DOCKER, "/usr/sbin/debootstrap"):
        if not os.access(tool, os.X_OK):
            return f"{tool} is missing (.ci/setup installs docker.io, docker-compose and debootstrap)"
    if not shutil.which("docker-compose"):
        return "docker-compose is missing (.ci/setup installs it)"
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
                return f"another dockerd runs here (pid {pid}): theirs would lose its iptables chains when ours starts"
        except OSError:
            continue
    return None


@dataclass
class Engine:
    """A dockerd of the tests' own, and how to call docker and docker-compose on it."""

    exec_root: Path
    data_root: Path
    process: subprocess.Popen = None
    env: dict = field(default_factory=dict)

    def start(self, seconds=60):
        sock = self.exec_root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0",
                    "COMPOSE_DOCKER_CLI_BUILD": "0", "BASE_IMAGE": BASE_IMAGE}
        log = open(self.exec_root / "dockerd.log", "wb")
        # --bridge=none: no docker0, which belongs to the machine's own daemon if it has one.
        self.process = subprocess.Popen(
            ["/usr/sbin/dockerd", "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
             "--pidfile", str(self.exec_root / "dockerd.pid"), "--host", f"unix://{sock}", "--bridge=none",
             "--log-level=warn"], stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            if run([DOCKER, "version"], env=self.env, check=False, timeout=10).returncode == 0:
                self.clear_what_a_killed_run_left()
                return True
            time.sleep(0.5)
        return False

    def clear_what_a_killed_run_left(self):
        """A run killed before stop() leaves its containers and networks in the data root, and dockerd brings them
        back: their fixed subnets (172.30.99.0/24, ...) would then overlap the next stack's. Images stay (the cache)."""
        left = self.docker("ps", "-aq", check=False).stdout.split()
        if left:
            self.docker("rm", "-f", "-v", *left, check=False, timeout=120)
        self.docker("network", "prune", "-f", check=False, timeout=60)
        self.docker("volume", "prune", "-f", check=False, timeout=60)

    def last_words(self):
        lines = (self.exec_root / "dockerd.log").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(nothing logged)"

    def stop(self):
        if self.process and self.process.poll() is None:
            left = self.docker("ps", "-aq", check=False).stdout.split()
            if left:  # a test that failed half-way: nothing of it may outlive the daemon
                self.docker("rm", "-f", "-v", *left, check=False, timeout=120)
            self.process.send_signal(signal.SIGTERM)  # stops its containerd too
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # dockerd leaves its default network namespace mounted in the exec root when it stops.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in reversed(mounts):
            if mount.startswith(f"{self.exec_root}/"):
                subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)
        shutil.rmtree(self.exec_root, ignore_errors=True)

    def docker(self, *args, timeout=60, check=True):
        return run([DOCKER, *args], env=self.env, timeout=timeout, check=check)


def skip(reason):
    FIGURES.append(f"skipped: {reason}")
    pytest.skip(f"Docker stacks: {reason}")


@pytest.fixture(scope="package")
def engine():
    reason = why_not_here()
    if reason:
        skip(reason)
    DATA_ROOT.parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{DATA_ROOT}.lock", "w")  # two daemons must never share a data root
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        skip(f"another run of them holds {DATA_ROOT}.lock")
    # The exec root holds containerd's sockets, whose paths must stay short: under /run.
    started = Engine(Path(tempfile.mkdtemp(prefix="crd-", dir="/run")), DATA_ROOT)
    since = time.monotonic()
    try:
        if not started.start():
            skip(f"dockerd did not start: {started.last_words()}")
        yield started
    finally:
        started.stop()
        FIGURES.append(f"Docker part: {time.monotonic() - since:.0f} s from starting the tests' dockerd to stopping it")
        lock.close()


@pytest.fixture(scope="package")
def deployment(tmp_path_factory):
    """The repository's files as a fresh clone has them (and what this change adds), plus wheelhouse/, made by
    docker/wheelhouse.sh as docs/deployment.md says: the folder every stack is brought up from."""
    folder = tmp_path_factory.mktemp("deployment")
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    run(["bash", "docker/wheelhouse.sh"], cwd=folder, env={**os.environ, "PYTHON": sys.executable}, timeout=600)
    # cp .env.example .env, then edit: here, the FathomNet stand-in in FathomNet's place (tests/docker/*.test.yml).
    (folder / ".env").write_text((folder / ".env.example").read_text() + "\n# The tests' FathomNet\n"
                                 f"FATHOMNET_API_URL=http://{STANDIN}/api\nALLOWED_IMAGE_HOSTS={STANDIN}\n")
    return folder


@pytest.fixture(scope="package")
def base_image(engine):
    """Debian's bookworm made here (docker/debian-base.sh), once: later runs find it in the kept data root."""
    if engine.docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        started = time.monotonic()
        run(["bash", str(ROOT / "docker" / "debian-base.sh"), BASE_IMAGE], env={**engine.env, "DOCKER": DOCKER},
            timeout=600)
        FIGURES.append(f"base image {BASE_IMAGE}: debootstrap + import {time.monotonic() - started:.0f} s, "
                       f"{image_size(engine, BASE_IMAGE)}")
    else:
        FIGURES.append(f"base image {BASE_IMAGE}: reused ({image_size(engine, BASE_IMAGE)})")
    # Images left behind by earlier builds (previous versions, build stages) go after a week.
    engine.docker("image", "prune", "-f", "--filter", "until=168h", check=False, timeout=120)
    return BASE_IMAGE


def image_size(engine, image):
    size = int(engine.docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    return f"{size / 1e6:.0f} MB"
