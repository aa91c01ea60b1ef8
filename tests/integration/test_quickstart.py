"""The README's quick start, followed word for word in a fresh clone, with no network to FathomNet.

The commands are read from the README itself (the shell blocks under "Quick start", in order) and run
in a copy of the files git would clone (tracked, or new and not ignored), with the tester's
environment less the service's settings: set-up makes the clone's own .venv, the demo answers the
curl line with the crop the README shows, and the page address it gives opens in Chromium with the
image's annotations listed. `serve` is then started as step 3 says, and its crops of real FathomNet
images are either crops (with a network) or the 502/504 the README describes (without).

The README's ports are 8080, 8000 and 8001. When something else on this machine holds one, the demo
gets free ports through its options and the curl lines and addresses follow them, and the test says
so in a warning; in CI nothing else runs, so the commands run exactly as written.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import pytest
import requests

from cropper.config import Settings
from cropper.ops.serve import StartError, check_free
from devtools.servers import find_nginx_or_skip, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEMO_PORTS = {"--port": 8080, "--app-port": 8000, "--standin-port": 8001}  # as the README gives them
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def section(title):
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def blocks(title, language="sh"):
    return [block.strip() for lang, block in FENCE.findall(section(title)) if lang == language]


def busy(ports):
    found = []
    for port in ports:
        try:
            check_free(f"127.0.0.1:{port}", "")
        except StartError:
            found.append(port)
    return found


class Terminal:
    """A command run in a terminal of its own: its output collected as it comes, Ctrl-C to stop it."""

    def __init__(self, command, cwd, env, shell=False):
        self.command, self.lines = command, []
        argv = ["bash", "-c", command] if shell else shlex.split(command)  # shell: a line with && runs as typed
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def output(self):
        return "".join(self.lines)

    def wait_for(self, text, seconds=60):
        assert wait_until(lambda: text in self.output() or self.process.poll() is not None, seconds), \
            f"`{self.command}` did not print {text!r} in {seconds} s:\n{self.output()}"
        assert text in self.output(), f"`{self.command}` exited with {self.process.returncode}:\n{self.output()}"

    def ctrl_c(self):
        """Stop it as Ctrl-C does (the signal reaches the terminal's whole group): its exit status."""
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.reader.join(10)
            self.process.stdout.close()


def shell(command, cwd, env):
    """Run the README's lines as a shell would; their output (failing the test if they fail)."""
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"`{command}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def clone():
    """The files a clone of this checkout has, in a folder every user can walk into (nginx's workers)."""
    folder = Path(tempfile.mkdtemp(prefix="cropper-quickstart-"))
    folder.chmod(0o755)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the work tree is not cloned
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shell_env():
    """The tester's environment, less the service's settings and this run's virtualenv: a fresh shell's."""
    settings = {name.upper() for name in Settings.__dataclass_fields__}
    return {name: value for name, value in os.environ.items()
            if name not in settings and name not in ("VIRTUAL_ENV", "PYTHONPATH", "CROPPER_TEST_TOOLS")}


@pytest.mark.timeout(1200)  # the set-up installs the requirements into the clone's own .venv
def test_the_quick_start_word_for_word_ends_with_a_crop_and_the_page_open(clone, shell_env):
    find_nginx_or_skip()
    setup_and_demo, curl, tests, serve, real_crops, cache_and_logs = blocks("Quick start")

    # 1. Set up and start the demo, one line in the foreground; the curl line and the page from a second terminal
    assert setup_and_demo == "bash .ci/setup && .venv/bin/python -m devtools.demo"
    demo = setup_and_demo
    address = "127.0.0.1:8080"
    taken = busy(DEMO_PORTS.values())
    if taken:
        ports = {option: free_port() for option in DEMO_PORTS}
        demo += "".join(f" {option} {port}" for option, port in ports.items())
        address = f"127.0.0.1:{ports['--port']}"
        warnings.warn(f"ports {taken} are in use on this machine: the quick start ran with `{demo}`, and its "
                      f"curl lines and addresses on {address}")
    page = re.search(r"<http://127\.0\.0\.1:8080/(\?image=[0-9a-f-]+)>", section("Quick start"))[1]
    running = Terminal(demo, clone, shell_env, shell=True)
    try:
        running.wait_for("Ctrl-C stops everything.", seconds=780)  # the set-up installs into the clone's .venv
        assert (clone / ".venv/bin/python").exists()
        assert f"http://{address}/{page}" in running.output()  # the page the README gives, as the demo prints it
        answer = json.loads(shell(curl.replace("127.0.0.1:8080", address), clone, shell_env))
        shown = json.loads(blocks("The API in brief", "json")[0])
        assert {**answer, "url": answer["url"].replace(address, "127.0.0.1:8080")} == shown
        served = requests.get(answer["url"], timeout=10)
        assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
        opened = open_page(f"http://{address}/{page}")
        image = page.split("=", 1)[1]
        boxes = requests.get(f"http://{address}/images/{image}/boxes", timeout=30).json()["boxes"]
        assert boxes and {box["box_uuid"] for box in boxes} <= set(re.findall(r'<li data-box="([0-9a-f-]+)"', opened))
        printed_stats = next(line.strip() for line in running.lines if line.strip().startswith("CACHE_DIR="))
    finally:
        stopped = running.ctrl_c()
    assert stopped == 0 and "Traceback" not in running.output(), running.output()
    assert "crops:" in shell(printed_stats, clone, shell_env)  # the cache command the demo printed

    # 2. The tests: the command is CI's own (tests/test_docs.py checks what it names); not run from a test
    assert tests == "bash .ci/run"
    assert ".venv/bin/python -m pytest -q -p no:cacheprovider" in (clone / ".ci/run").read_text()

    # 3. serve against the real FathomNet, which this machine may not reach: a crop, or the README's 502/504
    assert serve == ".venv/bin/python -m cropper serve"
    env, address = shell_env, "127.0.0.1:8080"
    if busy([8080, 8000]):
        address = f"127.0.0.1:{free_port()}"
        env = {**shell_env, "NGINX_LISTEN": address, "GUNICORN_BIND": f"127.0.0.1:{free_port()}"}
    running = Terminal(serve, clone, env)
    try:
        running.wait_for("Serving on")
        for command in re.split(r"\n(?=curl )", real_crops.replace("127.0.0.1:8080", address)):
            answer = json.loads(shell(command, clone, env))
            assert "url" in answer or answer["error"]["code"] in ("upstream_error", "upstream_timeout"), answer
        ready = requests.get(f"http://{address}/readyz", timeout=30)
        assert ready.status_code == 200 or not ready.json()["checks"]["fathomnet"]["ok"]
    finally:
        stopped = running.ctrl_c()
    assert stopped == 0 and "Traceback" not in running.output(), running.output()

    # The cache and the logs, where serve kept them
    reports = shell(cache_and_logs, clone, shell_env)
    assert f"cache folder: {clone / 'var/cache'}\n" in reports and "Requests   2" in reports, reports


def open_page(url):
    """The page's document once its scripts have run, in headless Chromium (Debian's)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/setup does as root)")
    profile = tempfile.mkdtemp(prefix="cropper-quickstart-chromium-")
    try:
        done = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
                              capture_output=True, text=True, timeout=90)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    return done.stdout

