"""The compose files started for real, as docs/deployment.md tells an operator with no image registry: images built
from a Debian base made here, `docker-compose up -d --build`, every healthcheck waited for, then used through the
published ports as clients use them, and brought down with nothing left. The FathomNet stand-in takes FathomNet's
place (tests/docker/*.test.yml). conftest.py starts the dockerd they run on, or says why they are skipped.
"""

import json
import time
from pathlib import Path

import pytest
import requests

from cropper.cluster import Ring
from devtools.standin import CATALOG_NAMES, DATASET_GENUS

from .conftest import FIGURES, free_port, image_size, run

# Builds, a cluster start and the waits for healthchecks: far above pytest.ini's 120 s, still bounded.
pytestmark = pytest.mark.timeout(900)

IMAGES = [str(CATALOG_NAMES[f"framegrab-{i}"]) for i in range(10)]  # 1920x1080 each
BOX = {"x1": 100, "y1": 100, "x2": 405, "y2": 400}
SECRETS = {"CLUSTER_KEY": "a-long-random-secret-for-the-test", "AWS_ACCESS_KEY_ID": "cropper",
           "AWS_SECRET_ACCESS_KEY": "a-made-up-secret-key-for-the-test"}
SINGLE = ("docker-compose.yml", "tests/docker/compose.test.yml")
TLS = ("docker-compose.yml", "docker-compose.tls.yml", "tests/docker/compose.test.yml")
CLUSTER = ("docker-compose.cluster.yml", "tests/docker/cluster.test.yml")
ONE_SHOT = {"nginx-config", "store-init", "front-config", "nginx-config-1", "nginx-config-2", "nginx-config-3"}


class Stack:
    """One compose project on the tests' dockerd, brought up from the deployment folder."""

    def __init__(self, engine, folder, project, files, **env):
        self.engine, self.folder, self.project, self.files = engine, folder, project, files
        self.env = {**engine.env, "STANDIN_PORT": str(free_port()), **env}
        self.started = time.monotonic()

    def compose(self, *args, timeout=120, check=True):
        files = [arg for name in self.files for arg in ("-f", name)]
        return run(["docker-compose", "-p", self.project, *files, *args], env=self.env, cwd=self.folder,
                   timeout=timeout, check=check)

    def docker(self, *args, timeout=60, check=True):
        return self.engine.docker(*args, timeout=timeout, check=check)

    def up(self):
        self.compose("up", "-d", "--build", timeout=600)
        self.wait_healthy()
        self.healthy_after = time.monotonic() - self.started

    def ids(self, service=None, number=None):
        """The project's containers: all, a service's, or one replica of it (compose numbers them from 1)."""
        labels = [f"project={self.project}", *([f"service={service}"] if service else []),
                  *([f"container-number={number}"] if number else [])]
        filters = [arg for label in labels for arg in ("--filter", f"label=com.docker.compose.{label}")]
        return self.docker("ps", "-aq", *filters).stdout.split()

    def container(self, service):
        ids = self.ids(service)
        assert len(ids) == 1, f"{service}: {len(ids)} containers"
        return ids[0]

    def states(self):
        """{(service, container): (status, exit code, health)} of every container of the project."""
        ids = self.ids()
        fmt = ('{{index .Config.Labels "com.docker.compose.service"}} {{.Name}} {{.State.Status}} '
               '{{.State.ExitCode}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}')
        lines = self.docker("inspect", "-f", fmt, *ids).stdout.splitlines() if ids else []
        return {(service, name): (status, int(code), health)
                for service, name, status, code, health in (line.split() for line in lines)}

    def wait_healthy(self, seconds=180):
        """Until every container is healthy (one-shot ones exited 0); a failure names the culprits and their logs.

        An unhealthy one may still become healthy (nginx's /healthz is the app's, which a loaded machine starts
        slowly), so only an exit fails at once; anything else fails at the deadline.
        """
        deadline = time.monotonic() + seconds
        while True:
            states = self.states()
            bad = {key: state for key, state in states.items()
                   if not (state[0] == "running" and state[2] in ("healthy", "none")
                           or key[0] in ONE_SHOT and state[:2] == ("exited", 0))}
            failed = {service for (service, _), state in bad.items() if state[0] == "exited"}
            if not bad:
                return
            if failed or time.monotonic() > deadline:
                said = {service: self.compose("logs", "--no-color", "--tail", "8", service, check=False).stdout
                        for service in (failed or {service for service, _ in bad})}
                raise AssertionError(f"not healthy after {seconds} s: {bad}\n" + "\n".join(said.values()))
            time.sleep(1)

    def down(self, name):
        """docker-compose down -v, then nothing of the project may be left: containers, networks, volumes."""
        self.compose("down", "-v", "--remove-orphans", "-t", "20", timeout=180)
        label = f"label=com.docker.compose.project={self.project}"
        assert self.docker("ps", "-aq", "--filter", label).stdout.split() == []
        assert self.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
        assert self.docker("volume", "ls", "-q", "--filter", label).stdout.split() == []
        FIGURES.append(f"{name}: up and healthy in {self.healthy_after:.0f} s, "
                       f"up, tested and down in {time.monotonic() - self.started:.0f} s")

    def network(self, name):
        return f"{self.project}_{name}"  # compose's name for the project's network

    def address(self, service, network):
        return self.docker("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{self.network(network)}")'
                           '.IPAddress}}', self.container(service)).stdout.strip()

    def users(self, service):
        """[(uid, command)] of every process in the service's container."""
        lines = self.docker("top", self.container(service), "-o", "pid,uid,args").stdout.splitlines()[1:]
        return [(int(uid), command) for _, uid, command in (line.split(None, 2) for line in lines)]

    def downloads(self, uuid):
        counts = requests.get(f"http://127.0.0.1:{self.env['STANDIN_PORT']}/_standin/counts",
                              params={"uuid": uuid}, timeout=10)
        return counts.json()["downloads"]


@pytest.fixture
def stack(engine, deployment, images):
    """A Stack factory; whatever it brought up is brought down after the test, even a failed one."""
    made = []

    def make(name, files, **env):
        made.append(Stack(engine, deployment, f"cropper{name}{free_port()}", files, **env))
        return made[-1]

    yield make
    for each in made:
        each.compose("down", "-v", "--remove-orphans", "-t", "5", timeout=180, check=False)


@pytest.fixture(scope="package")
def images(engine, deployment, base_image):
    """Every image, built once with docker-compose from the compose files (as `up --build` builds them) on the
    local base; the stacks' `up --build` then reuses every layer. Build times and sizes go to the summary."""
    built = {}
    env = {**engine.env, "STANDIN_PORT": "1", **SECRETS}
    for files, service, image in ((SINGLE, "app", "fathomnet-cropper"), (SINGLE, "nginx", "fathomnet-cropper-nginx"),
                                  (SINGLE, "prometheus", "fathomnet-cropper-prometheus"),
                                  (CLUSTER, "seaweedfs", "fathomnet-cropper-seaweedfs"),
                                  (CLUSTER, "redis", "fathomnet-cropper-redis")):
        started = time.monotonic()
        run(["docker-compose", *[arg for name in files for arg in ("-f", name)], "build", service],
            env=env, cwd=deployment, timeout=600)
        built[image] = time.monotonic() - started
        FIGURES.append(f"image {image}: built in {built[image]:.0f} s, {image_size(engine, image)}")
    return built


PROBE = """
import json, sys, urllib.error, urllib.request
answers = {}
for name, url, headers in json.loads(sys.argv[1]):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
            answers[name] = answer.status
    except urllib.error.HTTPError as error:
        answers[name] = error.code
    except Exception as error:  # refused, unreachable, timed out, no such name: it did not get through
        answers[name] = type(error).__name__
print(json.dumps(answers))
"""


def probe(stack, network, asks):
    """What a container on one of the project's networks gets for each (name, url, headers): a status, or an error."""
    result = stack.docker("run", "--rm", "--network", stack.network(network), "--entrypoint", "python",
                          "fathomnet-cropper", "-c", PROBE, json.dumps(asks), timeout=60)
    return json.loads(result.stdout)


def connects(stack, network, host, port):
    """True if a container on one of the project's networks can open a TCP connection to host:port."""
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=5).close()"
    result = stack.docker("run", "--rm", "--network", stack.network(network), "--entrypoint", "python",
                          "fathomnet-cropper", "-c", code, timeout=60, check=False)
    return result.returncode == 0


def crop(base, uuid, box=BOX, verify=True):
    answer = requests.post(f"{base}/cropper/", json={"uuid": uuid, **box}, timeout=60, verify=verify)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_images_carry_no_compiler_pip_cache_wheels_or_secret(engine, images):
    """Built from wheels, in stages: nothing of the build (or of this machine's own certificate authority) stays."""
    own_cas = [path.read_text().splitlines()[1] for path in Path("/usr/local/share/ca-certificates").glob("*.crt")]
    for image in images:
        script = ("for c in gcc cc c++ g++ clang make; do command -v $c; done; "
                  "find / -xdev \\( -path '*/.cache/pip' -o -name '*.whl' -path '*/tmp/*' -o -name 'boto3-*.whl' "
                  "-o -name '.env' -o -name wheelhouse \\) -print 2>/dev/null; "
                  + "".join(f"grep -rlsF -e '{line}' /etc /opt /usr /root /home /app /tmp 2>/dev/null; "
                            for line in own_cas))
        found = engine.docker("run", "--rm", "--user", "0", "--entrypoint", "sh", image, "-c", script + "true",
                              timeout=120).stdout.split()
        assert found == [], f"{image} carries {found}"


def test_single_host_stack(stack):
    """docker-compose.yml: crops made, served by nginx from the volume, kept across an app restart; /readyz and
    /metrics as documented; non-root processes; Prometheus scraping; Gunicorn out of every container's reach but
    nginx's (issue #19)."""
    port, prometheus = free_port(), free_port()
    s = stack("single", SINGLE, NGINX_PORT=str(port), PROMETHEUS_PORT=str(prometheus))
    s.up()
    s.compose("up", "-d", "prometheus", timeout=300)  # the monitoring profile's service that CI can start
    s.wait_healthy()
    base = f"http://127.0.0.1:{port}"

    made = crop(base, IMAGES[0])
    assert made["cached"] is False and made["url"].startswith(f"{base}/crops/")
    served = requests.get(made["url"], timeout=10)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
    assert served.headers["X-Cropper-Cache"] == "hit"  # nginx's own header for a file read from disk
    ready = requests.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["fathomnet"]["ok"] is True, ready.text

    # /metrics: not for this machine's clients (they come in through the backend network's gateway), whatever
    # X-Forwarded-For they send; for the monitoring network, through nginx.
    for headers in ({}, {"X-Forwarded-For": "172.30.99.5"}, {"X-Forwarded-For": "127.0.0.1"}):
        refused = requests.get(f"{base}/metrics", headers=headers, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden", refused.text
    app_address = s.address("app", "backend")
    spoof = {"X-Forwarded-For": "127.0.0.1"}
    monitoring = probe(s, "monitoring", [
        ["metrics", "http://nginx/metrics", {}], ["stub_status", "http://nginx/nginx_status", {}],
        ["gunicorn by name", "http://app:8000/metrics", spoof],
        ["gunicorn by address", f"http://{app_address}:8000/metrics", spoof]])
    assert monitoring["metrics"] == 200 and monitoring["stub_status"] == 200, monitoring
    assert not isinstance(monitoring["gunicorn by name"], int), monitoring  # no route to Gunicorn at all
    assert not isinstance(monitoring["gunicorn by address"], int), monitoring
    # Why the backend network is nginx's and the app's alone: from there, a spoofed address reads /metrics.
    backend = probe(s, "backend", [["spoofed", "http://app:8000/metrics", spoof],
                                   ["honest", "http://app:8000/metrics", {}]])
    assert backend == {"spoofed": 200, "honest": 403}, backend
    scraped = wait_for_scrape(prometheus)
    assert scraped == "1", f"Prometheus's up{{job=\"cropper\"}} is {scraped}"

    # Who runs what: Gunicorn and its workers as the image's user, nginx's workers as www-data.
    assert {uid for uid, _ in s.users("app")} == {10001}, s.users("app")
    nginx = s.users("nginx")
    assert [uid for uid, command in nginx if "worker process" in command] and \
        {uid for uid, command in nginx if "worker process" in command} == {33}, nginx
    assert 0 not in {uid for uid, _ in s.users("prometheus")}

    # The app stopped: nginx still serves the crop from the volume, and answers the API in JSON within its
    # 5 s connect timeout: 502, or 504 while it still tries the stopped container's address (no "resolve").
    s.compose("stop", "-t", "20", "app")
    assert requests.get(made["url"], timeout=10).status_code == 200
    asked = time.monotonic()
    down = requests.post(f"{base}/cropper/", json={"uuid": IMAGES[0], **BOX}, timeout=30)
    assert (down.status_code, down.json()["error"]["code"]) in {(502, "service_unavailable"),
                                                                 (504, "service_timeout")}, down.text
    assert time.monotonic() - asked < 15  # the 5 s connect timeout, with room for a loaded machine
    s.compose("start", "app")
    s.wait_healthy()
    again = crop(base, IMAGES[0])
    assert again["cached"] is True and again["url"] == made["url"]
    assert s.downloads(IMAGES[0]) == 1  # kept in the cache volume across the restart

    # The access log, read where the compose file says (the logs volume, from the app container).
    deadline = time.monotonic() + 15  # nginx writes its buffered log out every second
    while True:
        stats = json.loads(s.compose("exec", "-T", "app", "python", "-m", "cropper.logstats",
                                     "/var/log/cropper/access.log", "--json").stdout)
        if stats["requests"] >= 4 and stats["cache"]["hits"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert stats["requests"] >= 4 and stats["cache"]["hits"] >= 2, stats["cache"]

    # Scaled as the compose file says: nginx (no "resolve") takes the new replica in once told to reload,
    # and answers with the first replica stopped.
    s.compose("up", "-d", "--scale", "app=2", timeout=300)
    s.wait_healthy()
    s.compose("kill", "-s", "HUP", "nginx")  # nginx's reload: it looks app up again
    s.docker("stop", "-t", "20", *s.ids("app", number=1))
    assert crop(base, IMAGES[0], {"x1": 0, "y1": 0, "x2": 64, "y2": 64})["cached"] is False

    s.down("single-host stack")


def wait_for_scrape(port, seconds=90):
    """Prometheus's value of up{job="cropper"}: "1" once a scrape of nginx's /metrics succeeded (every 15 s), else
    the last value it had at the deadline (None: never scraped)."""
    deadline, value = time.monotonic() + seconds, None
    while time.monotonic() < deadline and value != "1":
        answer = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": 'up{job="cropper"}'},
                              timeout=10).json()["data"]["result"]
        value = answer[0]["value"][1] if answer else None
        time.sleep(1)
    return value


def test_tls_overlay(stack, tmp_path):
    """docker-compose.tls.yml over docker-compose.yml: a crop made and fetched over HTTPS, with check-tls.sh (as
    mounted) run before nginx starts, and stopping it with its reason when the key is missing."""
    certs = tmp_path / "tls"
    certs.mkdir()
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(certs / "privkey.pem"),
         "-out", str(certs / "fullchain.pem")])
    (certs / "privkey.pem").chmod(0o600)
    port, tls_port = free_port(), free_port()
    s = stack("tls", TLS, NGINX_PORT=str(port), NGINX_TLS_PORT=str(tls_port), TLS_CERT_DIR=str(certs))
    s.up()
    base, certificate = f"https://127.0.0.1:{tls_port}", str(certs / "fullchain.pem")
    made = crop(base, IMAGES[1], verify=certificate)
    assert made["url"].startswith(f"{base}/crops/")  # nginx told the app the scheme
    served = requests.get(made["url"], timeout=10, verify=certificate)
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200  # HTTP still answers
    assert "check-tls: /etc/nginx/tls/fullchain.pem and /etc/nginx/tls/privkey.pem look usable" in \
        s.compose("logs", "--no-color", "nginx").stdout
    missing = s.compose("run", "--rm", "--no-deps", "-T", "-e", "CROPPER_TLS_KEY=/etc/nginx/tls/missing.pem",
                        "nginx", check=False, timeout=120)
    assert missing.returncode != 0
    assert "check-tls: TLS private key /etc/nginx/tls/missing.pem does not exist" in missing.stdout + missing.stderr
    s.down("TLS stack")


def test_cluster_stack(stack):
    """docker-compose.cluster.yml: the front, three hosts, SeaweedFS and Redis; crops of ten images with one download
    each, served on with a host killed; a data-set job every host's worker may run, its files served by every host
    (#24); X-Forwarded-For believed from the front alone, Gunicorn on no network (#19), Redis on the apps' network
    alone."""
    port = free_port()
    s = stack("cluster", CLUSTER, NGINX_PORT=str(port), **SECRETS)
    s.up()
    base = f"http://127.0.0.1:{port}"

    made = [crop(base, uuid) for uuid in IMAGES]
    more = [crop(base, uuid, {"x1": 500, "y1": 300, "x2": 900, "y2": 700}) for uuid in IMAGES]
    assert not any(answer["cached"] for answer in made + more)
    # Each image downloaded once, by its owner, whichever host the POST reached.
    assert [s.downloads(uuid) for uuid in IMAGES] == [1] * len(IMAGES)
    hosts = {}
    for answer in made + more:
        served = requests.get(answer["url"], timeout=10)
        assert served.status_code == 200 and served.headers["Content-Type"] == "image/webp"
        hosts[answer["url"]] = served.headers["X-Cropper-Host"]
    ring = Ring(["nginx-1:80", "nginx-2:80", "nginx-3:80"])
    owned = [uuid for uuid in IMAGES if next(ring.owners(uuid)) == "nginx-2:80"]
    assert owned, "host 2 owns none of the ten images: pick others"
    host_2 = s.address("nginx-2", "front")
    assert {hosts[a["url"]] for a in made if a["uuid"] in owned} == {f"{host_2}:80"}  # the front's ring is the apps'

    # Data-set jobs: every host's worker is alive on the shared Redis; a job through the front is done by one of
    # them, and its files are in the store, served alike by each host's nginx.
    for number in (1, 2, 3):
        ready = requests.get(f"http://{s.address(f'nginx-{number}', 'front')}/readyz", timeout=10).json()
        assert ready["checks"]["datasets"] == {"ok": True}, (number, ready)
    started = requests.post(f"{base}/datasets", json={"concepts": [DATASET_GENUS], "max_boxes": 12,
                                                      "crop": {"format": "png"}}, timeout=30)
    assert started.status_code == 202, started.text
    job = {}
    deadline = time.monotonic() + 120
    while job.get("status") not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(1)
        job = requests.get(f"{base}/datasets/{started.json()['id']}", timeout=10).json()
    progress = job.get("progress", {})
    assert job["status"] == "done" and progress["crops_done"] + progress["crops_failed"] == 12, job  # (some boxes
    assert progress["crops_done"] >= 10, job  # of the family lie outside their image: failures.csv lists them)
    (file,) = job["files"]
    path = file["url"].split("://", 1)[1].split("/", 1)[1]
    for number in (1, 2, 3):
        served = requests.get(f"http://{s.address(f'nginx-{number}', 'front')}/{path}", timeout=30)
        assert served.status_code == 200 and len(served.content) == file["size"], (number, served.status_code)

    # Host 2 dies: its images are still served (from the store, by the next host), and new crops of them made.
    s.docker("kill", s.container("nginx-2"), s.container("app-2"))
    for answer in made + more:
        served = requests.get(answer["url"], timeout=30)
        assert served.status_code == 200, (answer["url"], served.status_code, served.text[:200])
        assert served.headers["X-Cropper-Host"] != f"{host_2}:80"
    heir = crop(base, owned[0], {"x1": 0, "y1": 0, "x2": 64, "y2": 64})
    assert requests.get(heir["url"], timeout=30).status_code == 200

    # Whose X-Forwarded-For the hosts believe: the front's alone. Any other container on the hosts' networks is
    # its own client, whatever it claims; Gunicorn listens on no network at all.
    spoof = {"X-Forwarded-For": "127.0.0.1"}
    for network in ("cluster", "front"):
        answers = probe(s, network, [["spoofed", "http://nginx-1/metrics", spoof],
                                     ["gunicorn", "http://app-1:8000/metrics", spoof]])
        assert answers["spoofed"] == 403 and not isinstance(answers["gunicorn"], int), (network, answers)
        assert not connects(s, network, "redis", 6379) and connects(s, "queue", "redis", 6379)
    inside = s.docker("exec", s.container("nginx-1"), "wget", "-q", "-O", "-", "http://127.0.0.1/metrics")
    assert "cropper_" in inside.stdout  # the same request from an allowed address is answered: the 403 is METRICS_ALLOW

    s.down("cluster stack")


def test_nothing_is_left_running(engine):
    """After the stacks, the tests' dockerd holds no container and no network (it stops at the session's end)."""
    assert engine.docker("ps", "-aq").stdout.split() == []
    assert engine.docker("network", "ls", "-q", "--filter", "type=custom").stdout.split() == []
