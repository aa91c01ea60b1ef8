"""Three hosts and a front nginx over one SeaweedFS, all real, on loopback (devtools/cluster.py).

Each host is Gunicorn (CACHE_BACKEND=s3, CLUSTER_*) with its own cache folder and its own nginx
reading crops from the store; the front hashes requests to them by image. Checked over HTTP: a crop
made through one host is served by every host from the store; a burst of new images is downloaded
once across the cluster; a host SIGKILLed under load loses nothing; the store going away and
coming back. The tests share one cluster and run in this order: the kill comes last.
"""

import http.client
import threading
import time
import uuid as uuidlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from cropper.cluster import KEY_HEADER, Ring
from devtools.cluster import LocalCluster
from devtools.servers import _listening, read_log, wait_until
from devtools.standin import uuid_for
from tests.integration.test_forwarded import SPOOFED, url_answers, urls_in

TIMEOUT = 30


@pytest.fixture(scope="module")
def cluster(store, standin, tmp_path_factory):
    with LocalCluster(tmp_path_factory.mktemp("cluster"), standin, store, hosts=3) as running:
        yield running


@pytest.fixture(scope="module")
def handed_out():
    """Every crop URL the cluster answered with in this module: each must still answer after the kill."""
    return []


def body(record, box, **options):
    x1, y1, x2, y2 = box
    return {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **options}


def post(base, record, box, **options):
    return requests.post(f"{base}/cropper/", json=body(record, box, **options), timeout=TIMEOUT)


def path_of(url):
    return urlsplit(url).path


def alive(pid):
    """True if pid runs (a zombie waiting for init to reap it is dead)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def last_host(answer):
    """The host that answered through the front (X-Cropper-Host lists every host it tried)."""
    return (answer.headers.get("X-Cropper-Host") or "").split(", ")[-1]


def kept_by(cluster, record):
    """The hosts that keep the image's pixels (stored just after its first crop is answered)."""
    wait_until(lambda: any(host.pixels_stored(record.uuid) for host in cluster.hosts), timeout=10)
    return [host for host in cluster.hosts if host.pixels_stored(record.uuid)]


def is_json_error(response):
    try:
        return isinstance(response.json()["error"]["code"], str)
    except (ValueError, KeyError, TypeError):
        return False


def test_the_apps_ring_is_the_one_nginx_routes_by(cluster):
    """For 200 images, the front sends /crops/<2hex>/<uuid>/... to the host Ring names first."""
    assert Ring(cluster.addresses).hosts == cluster.ring.hosts  # deterministic
    seen = Counter()
    for _ in range(200):
        uuid = str(uuidlib.uuid4())
        answer = requests.get(f"{cluster.front_url}/crops/{uuid[:2]}/{uuid}/not-a-crop", timeout=TIMEOUT)
        assert answer.status_code == 404 and is_json_error(answer)  # the host's nginx refused the name
        owner = next(cluster.ring.owners(uuid))
        assert answer.headers["X-Cropper-Host"] == owner, uuid
        seen[owner] += 1
    assert set(seen) == set(cluster.addresses)  # and it spreads them over every host


def test_the_front_sends_an_images_manifest_to_its_owner(cluster):
    """Where its crops and tiles are made, and its record is remembered: one FathomNet lookup for a cluster."""
    for name in ("framegrab-1", "framegrab-2", "gray", "rgba", "jpeg", "palette"):
        uuid = uuid_for(name)
        answer = requests.get(f"{cluster.front_url}/iiif/manifests/{uuid}", timeout=TIMEOUT)
        assert answer.status_code == 200 and answer.json()["id"].endswith(f"/iiif/manifests/{uuid}")
        assert answer.headers["X-Cropper-Host"] == next(cluster.ring.owners(uuid)), name


def test_hosts_ask_each_other_with_the_key_and_nobody_else_may(cluster):
    host = cluster.hosts[0]
    for headers in ({}, {KEY_HEADER: "not the key"}, {KEY_HEADER: ""}):
        refused = requests.post(f"{host.url}/_cluster/make", json={"paths": []}, headers=headers, timeout=TIMEOUT)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    allowed = requests.post(f"{host.url}/_cluster/make", json={"paths": ["crops/ab/not-a-crop"]},
                            headers={KEY_HEADER: cluster.key}, timeout=TIMEOUT)
    assert allowed.status_code == 200 and allowed.json()[0]["error"]["code"] == "crop_not_found"
    # The front never passes it on, whatever the key: hosts ask each other's nginx directly.
    through_front = requests.post(f"{cluster.front_url}/_cluster/make", json={"paths": []},
                                  headers={KEY_HEADER: cluster.key}, timeout=TIMEOUT)
    assert through_front.status_code == 404 and through_front.json()["error"]["code"] == "not_found"
    assert "X-Cropper-Host" not in through_front.headers
    for path in ("/metrics", "/nginx_status"):  # each host's own, scraped there: not any host's through the front
        assert requests.get(host.url + path, timeout=TIMEOUT).status_code == 200
        hidden = requests.get(cluster.front_url + path, timeout=TIMEOUT)
        assert hidden.status_code == 404 and "X-Cropper-Host" not in hidden.headers


def get_from(source, url, headers=None):
    """GET url from the loopback address `source`, as a client elsewhere would (the status, once answered)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT, source_address=(source, 0))
    try:
        connection.request("GET", parts.path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_each_host_sees_the_client_the_front_saw_and_trusts_no_one_else_s_word(cluster):
    """Its limits, its access log and METRICS_ALLOW are per client, not one for everyone behind the front."""
    uuid = str(uuidlib.uuid4())
    path = f"/crops/{uuid[:2]}/{uuid}/client-check"
    host = cluster.owner_of(uuid)
    assert get_from("127.0.0.2", cluster.front_url + path, {"X-Forwarded-For": "203.0.113.9"}) == 404
    assert get_from("127.0.0.3", host.url + path + "-direct", {"X-Forwarded-For": "203.0.113.9"}) == 404
    entries = read_log(host.nginx.access_log, until=lambda found: {path, path + "-direct"} <= {e["uri"] for e in found})
    clients = {e["uri"]: e["client"] for e in entries if e["uri"].startswith(path)}
    # The front appended the address it saw, 127.0.0.2 (what the client wrote before it is the client's own
    # to make up); a client that reaches the host directly is not a proxy, whatever it says.
    assert clients == {path: "127.0.0.2", path + "-direct": "127.0.0.3"}


def test_a_crop_made_through_one_host_is_served_by_every_host_from_the_store(cluster, standin, handed_out):
    record = standin.image("framegrab")
    maker = next(host for host in cluster.hosts if cluster.owner_of(record.uuid) is not host)  # forwards it
    made = post(maker.url, record, (100, 100, 405, 400))
    assert made.status_code == 200 and made.json()["cached"] is False
    url = made.json()["url"]
    assert url.startswith(cluster.front_url + "/crops/")  # PUBLIC_URL: the front
    handed_out.append(url)
    assert standin.downloads(record.uuid) == 1
    assert kept_by(cluster, record) == [cluster.owner_of(record.uuid)]  # made by its owner only
    standin.reset()
    served = []
    for host in cluster.hosts:
        first = requests.get(host.url + path_of(url), timeout=TIMEOUT)
        again = requests.get(host.url + path_of(url), timeout=TIMEOUT)
        assert (first.status_code, again.status_code) == (200, 200)
        assert (first.headers["X-Cropper-Cache"], again.headers["X-Cropper-Cache"]) == ("store", "hit")
        assert first.headers["Content-Type"] == "image/webp"
        assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        served.append(first.content)
    assert len(set(served)) == 1 and served[0][:4] == b"RIFF"
    assert requests.get(url, timeout=TIMEOUT).content == served[0]
    assert standin.counts()["api"] == 0 and standin.downloads() == 0  # no FathomNet call at all
    # A POST of it through another host is answered from the store too.
    again = post(cluster.hosts[2 if maker is not cluster.hosts[2] else 1].url, record, (100, 100, 405, 400))
    assert again.json()["cached"] is True and again.json()["url"] == url
    assert standin.counts()["api"] == 0
    for host in cluster.hosts:
        entries = read_log(host.nginx.access_log, until=lambda found: {"store", "hit"} <= {
            e["cache"] for e in found if e["uri"] == path_of(url)})
        logged = [e["cache"] for e in entries if e["uri"] == path_of(url)]
        # The access log's cache field (each nginx worker flushes its own buffer: not in order).
        assert logged.count("store") == 1 and set(logged) == {"store", "hit"}


def test_sixty_crops_of_ten_new_images_in_parallel_download_each_image_once(cluster, standin, handed_out):
    records = [standin.image(f"framegrab-{i}") for i in range(10)]
    boxes = [(10 * k, 20 * k, 10 * k + 200, 20 * k + 150) for k in range(6)]
    wanted = [(record, box) for box in boxes for record in records]  # each image's boxes spread over the burst
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda item: post(cluster.front_url, *item), wanted))
    assert [answer.status_code for answer in answers] == [200] * 60, [a.text for a in answers if a.status_code != 200]
    assert {answer.headers["X-Cropper-Host"] for answer in answers} == set(cluster.addresses)  # to all hosts
    handed_out.extend(answer.json()["url"] for answer in answers)
    assert standin.downloads() == 10
    assert [standin.downloads(record.uuid) for record in records] == [1] * 10
    for record in records:  # each downloaded, decoded and kept by its owner, and by no other host
        assert kept_by(cluster, record) == [cluster.owner_of(record.uuid)]
    # The same burst again: every crop is in the store, nothing is asked of FathomNet.
    standin.reset()
    with ThreadPoolExecutor(20) as pool:
        again = list(pool.map(lambda item: post(cluster.front_url, *item), wanted))
    assert all(answer.json()["cached"] for answer in again)
    assert standin.counts()["api"] == 0 and standin.downloads() == 0


def test_a_batch_through_any_host_sends_each_image_to_its_owner(cluster, standin, handed_out):
    records = [standin.image(name) for name in ("jpeg", "gray", "palette", "rgba")]
    items = [body(record, (k, k, k + 64, k + 48)) for record in records for k in range(0, 30, 10)]
    answer = requests.post(f"{cluster.hosts[1].url}/cropper-list/", json=items, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert all("url" in item for item in answer.json()), answer.json()
    handed_out.extend(item["url"] for item in answer.json())
    assert [standin.downloads(record.uuid) for record in records] == [1] * 4
    for record in records:
        assert kept_by(cluster, record) == [cluster.owner_of(record.uuid)]


def test_the_app_s_etag_is_the_store_s_so_a_crop_revalidates_whoever_served_it(cluster, standin, handed_out):
    record = standin.image("framegrab")
    url = f"{cluster.front_url}/crops/{record.uuid[:2]}/{record.uuid}/7_3_71_24.png"  # nobody asked for it yet
    made = requests.get(url, timeout=TIMEOUT)
    assert made.headers["X-Cropper-Cache"] == "regenerated"
    handed_out.append(url)
    served = requests.get(url, timeout=TIMEOUT)
    assert served.headers["X-Cropper-Cache"] == "store"
    assert made.content == served.content
    assert made.headers["ETag"] == served.headers["ETag"]
    assert requests.get(url, timeout=TIMEOUT, headers={"If-None-Match": made.headers["ETag"]}).status_code == 304


def test_no_answer_through_the_front_hands_out_a_url_a_client_made_up(cluster, standin):
    """The front passes on no forwarded header a client made up, and each host's nginx clears them too."""
    answers = url_answers(cluster.front_url, SPOOFED["all at once"], serial=40)
    for name, answer in answers.items():
        assert answer.status_code < 400, (name, answer.status_code, answer.text[:200])
        urls = urls_in(answer, standin.api_url)
        assert urls and all(url.startswith(f"{cluster.front_url}/") for url in urls), (name, urls)


def test_an_upscaled_iiif_image_is_read_from_the_store_only_for_its_request_with_the_caret(cluster, standin):
    """Its key keeps the ^ (nginx asks the store for the name the request gives): without ^ it is a 400."""
    uuid = standin.image("gray").uuid
    upscaled, without = (f"{cluster.front_url}/iiif/3/{uuid}/30,10,50,40/{size}/0/default.png"
                         for size in ("^100,80", "100,80"))
    made = requests.get(upscaled, timeout=TIMEOUT)
    assert made.status_code == 200 and made.headers["X-Cropper-Cache"] == "miss"
    assert requests.get(without, timeout=TIMEOUT).status_code == 400
    again = requests.get(upscaled, timeout=TIMEOUT)
    assert again.content == made.content and again.headers["X-Cropper-Cache"] in ("store", "hit")  # nginx alone


def test_the_store_going_away_and_coming_back(cluster, store, standin, handed_out):
    record = standin.image("palette-transparent")
    made = post(cluster.front_url, record, (0, 0, 200, 100), format="png")
    assert made.status_code == 200
    url = made.json()["url"]
    handed_out.append(url)
    warm = [requests.get(url, timeout=TIMEOUT) for _ in range(2)]  # through the front: its owner's nginx cache
    assert [answer.headers["X-Cropper-Cache"] for answer in warm] == ["store", "hit"]
    cold_host = next(host for host in cluster.hosts if host.address != warm[0].headers["X-Cropper-Host"])
    store.stop()
    try:
        cached = requests.get(url, timeout=TIMEOUT)
        assert cached.status_code == 200 and cached.headers["X-Cropper-Cache"] == "hit"
        assert cached.content == warm[0].content
        new = post(cluster.front_url, record, (0, 0, 201, 100), format="png")
        assert new.status_code == 503 and new.headers["Retry-After"]
        assert new.json()["error"]["code"] == "store_unavailable"
        assert "crop store" in new.json()["error"]["message"]
        not_cached_there = requests.get(cold_host.url + path_of(url), timeout=TIMEOUT)  # that nginx never read it
        assert not_cached_there.status_code == 503
        assert not_cached_there.json()["error"]["code"] == "store_unavailable"
        ready = requests.get(f"{cluster.hosts[0].url}/readyz", timeout=TIMEOUT)
        assert ready.status_code == 503 and ready.json()["checks"]["store"]["ok"] is False
    finally:
        store.start()
    # Each host finds the store back by its own breaker's probe (every 0.5 s): until then it answers at
    # once that the store cannot be reached, and /readyz says so. Once every host is ready, all is as before.
    assert wait_until(lambda: all(requests.get(f"{host.url}/readyz", timeout=TIMEOUT).status_code == 200
                                  for host in cluster.hosts), timeout=20)
    assert wait_until(lambda: post(cluster.front_url, record, (0, 0, 201, 100), format="png").status_code == 200,
                      timeout=20)
    handed_out.append(post(cluster.front_url, record, (0, 0, 201, 100), format="png").json()["url"])
    assert requests.get(cold_host.url + path_of(url), timeout=TIMEOUT).headers["X-Cropper-Cache"] == "store"
    assert requests.get(f"{cluster.hosts[0].url}/readyz", timeout=TIMEOUT).status_code == 200


class Load:
    """Clients POSTing new crops of `records` through the front until stopped; every answer kept."""

    def __init__(self, url, records, clients=8):
        self.url, self.records, self.clients = url, records, clients
        self.results = []  # (started, ended, status, JSON error or None, answer's URL or None, host)
        self.stop = threading.Event()
        self._next = iter(range(10**6))
        self._lock = threading.Lock()

    def _client(self):
        session = requests.Session()
        while not self.stop.is_set():
            with self._lock:
                n = next(self._next)
            record = self.records[n % len(self.records)]
            k = 1 + n // len(self.records)  # a new box each round
            started = time.monotonic()
            try:
                answer = session.post(f"{self.url}/cropper/", json=body(record, (k, k, k + 100, k + 80)),
                                      timeout=TIMEOUT)
                status, host = answer.status_code, last_host(answer)
                error = None if status == 200 else (answer.json()["error"]["code"] if is_json_error(answer)
                                                    else f"not JSON: {answer.text[:80]!r}")
                url = answer.json()["url"] if status == 200 else None
            except requests.RequestException as failure:
                status, host, error, url = 0, None, f"no answer: {type(failure).__name__}", None
            with self._lock:
                self.results.append((started, time.monotonic(), status, error, url, host))

    def __enter__(self):
        self.threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(TIMEOUT)


def test_a_host_killed_under_load_loses_only_what_it_had_in_flight(cluster, standin, handed_out):
    records = [standin.image(f"survey-{i}") for i in range(10)]
    owned = Counter(cluster.owner_of(record.uuid) for record in records)
    victim = owned.most_common(1)[0][0]
    its_images = [record for record in records if cluster.owner_of(record.uuid) is victim]
    for record in records:  # handed out before the kill: each image's first crop, made by its owner
        made = post(cluster.front_url, record, (0, 0, 320, 240))
        assert made.status_code == 200
        handed_out.append(made.json()["url"])
    assert all(kept_by(cluster, record) == [victim] for record in its_images)
    pids = victim.processes()
    assert len(pids) >= 5  # arbiter, 2 workers, pruner, nginx master and its workers

    with Load(cluster.front_url, records) as load:
        assert wait_until(lambda: len(load.results) >= 40, timeout=TIMEOUT)
        kill_began = time.monotonic()
        cluster.kill(victim)
        killed_at = time.monotonic()  # every process of it is gone
        after_kill = len(load.results)
        assert wait_until(lambda: len(load.results) >= after_kill + 80, timeout=TIMEOUT)
    assert not any(alive(pid) for pid in pids)  # every process of the host is gone
    assert not _listening(int(victim.address.rpartition(":")[2]))

    failed = [r for r in load.results if r[2] != 200]
    in_flight = [r for r in load.results if r[0] < killed_at and r[1] > kill_began]
    assert all(r in in_flight for r in failed), failed  # only requests in flight when it died
    assert len(failed) <= load.clients and all(not r[3].startswith(("not JSON", "no answer")) for r in failed), failed
    answered_after = [r for r in load.results if r[0] > killed_at]
    assert len(answered_after) >= 60 and all(r[2] == 200 for r in answered_after)
    assert victim.address not in {r[5] for r in answered_after}  # the front passed over it
    handed_out.extend(r[4] for r in load.results if r[4])

    # Its images were taken over, each by the next host on its ring, downloaded once more in all.
    for record in its_images:
        heir = cluster.owner_of(record.uuid)
        assert heir is not victim and heir is cluster.owners(record.uuid)[1]
        assert wait_until(lambda: heir.pixels_stored(record.uuid), timeout=10)
        assert standin.downloads(record.uuid) == 2  # the victim's before, the heir's after
        fresh = f"/crops/{record.uuid[:2]}/{record.uuid}/7_3_107_83.webp"  # no one asked for it yet
        regenerated = requests.get(cluster.front_url + fresh, timeout=TIMEOUT)
        assert regenerated.status_code == 200 and regenerated.headers["X-Cropper-Cache"] == "regenerated"
        assert last_host(regenerated) == heir.address
    for record in records:
        if record not in its_images:
            assert standin.downloads(record.uuid) == 1  # the others' images did not move

    # Every crop URL handed out in this module, before the kill or after, still answers.
    def fetch(url):
        return requests.get(url, timeout=TIMEOUT)
    with ThreadPoolExecutor(8) as pool:
        fetched = list(pool.map(fetch, handed_out))
    assert [answer.status_code for answer in fetched] == [200] * len(handed_out)
    assert all(answer.headers["Content-Type"].startswith("image/") for answer in fetched)


def test_a_host_whose_app_died_behind_its_nginx_is_passed_over_too(cluster, standin):
    """Its nginx answers 502 for it: the others take its images as if it were down (and say nothing of it)."""
    alive = [host for host in cluster.hosts if not host.killed]
    if len(alive) < 2:
        pytest.skip("needs two hosts up")
    asking, dead_app = alive[0], alive[1]
    names = [item["name"] for item in standin.catalog()
             if item["name"] not in ("huge", "bomb", "offhost") and cluster.owner_of(item["uuid"]) is dead_app]
    assert names, "no image of the catalog falls to that host"
    dead_app.kill_app()
    assert requests.get(f"{dead_app.url}/healthz", timeout=TIMEOUT).status_code == 502  # its nginx still answers
    for name in names[:3]:
        record = standin.image(name)
        made = post(asking.url, record, (3, 5, 53, 45))
        assert made.status_code == 200, made.text
        assert cluster.owner_of(record.uuid) is not dead_app
        assert wait_until(lambda: cluster.owner_of(record.uuid).pixels_stored(record.uuid), timeout=10)
    assert f"cluster host {dead_app.address} cannot be reached (its nginx answered 502" in asking.gunicorn.log()
