"""Purges on several hosts: three hosts and a front over one SeaweedFS, all real, on loopback (devtools/cluster.py).

Each host's nginx keeps the crops it read from the store in its own cache (STORE_CACHE_DIR, in its
cache folder here, where its app clears a purge's entries). Checked over HTTP and on disk: an image
FathomNet withdrew is gone from the store, every host's nginx and every host's folder, and answers
410 everywhere; a purge made on one host reaches every host and says what each removed; a host
that was down when a purge was made applies it when it starts.
"""

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from cropper.storage.nginx_cache import KEY_MARK
from devtools.cluster import LocalCluster
from devtools.servers import wait_until
from devtools.standin import SURVEY_NAMES, boxes
from tests.cachefolder import files_under

TTL = 3
TOKEN = "an-operators-long-random-token"
TIMEOUT = 30


@pytest.fixture(scope="module")
def cluster(store, standin, tmp_path_factory):
    env = {"METADATA_TTL": str(TTL), "ADMIN_TOKEN": TOKEN, "CACHE_PRUNE_INTERVAL": "0"}
    with LocalCluster(tmp_path_factory.mktemp("cluster"), standin, store, hosts=3, workers=1, env=env) as running:
        yield running


def stored(store, uuid):
    """The store's crops of an image (crops/ and iiif/), as store paths."""
    return sorted(entry.key.store_path for entry in store.store(None).listing().entries if entry.key.uuid == uuid)


def nginx_cached(host, uuid):
    """The keys of the crops of an image this host's nginx keeps from the store."""
    keys = []
    for path in files_under(Path(host.cache_dir, "store-cache")):
        try:
            key = path.read_bytes()[:4096].partition(KEY_MARK)[2].partition(b"\n")[0].decode()
        except FileNotFoundError:  # removed by a purge as we read
            continue
        if f"/{uuid}/" in key:
            keys.append(key)
    return sorted(keys)


def kept_of(host, uuid):
    """What a host's folder keeps of an image besides nginx's cache: records, pixels, the note it is withdrawn."""
    return sorted(path.name for path in files_under(Path(host.cache_dir, "sources")) if uuid in path.name)


def make_and_read_everywhere(cluster, record):
    """Crops of the image (a region, a box, a tile) made through the front, then read through every host's nginx."""
    paths = [urlsplit(requests.post(f"{cluster.front_url}/cropper/", json=body, timeout=TIMEOUT).json()["url"]).path
             for body in ({"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 48, "y2": 48},
                          {"box_uuid": boxes(record.name)[0]["uuid"], "pad": 6})]
    paths.append(f"/iiif/3/{record.uuid}/0,0,256,256/128,128/0/default.jpg")  # as stored: nginx reads it
    assert requests.get(f"{cluster.front_url}{paths[-1]}", timeout=TIMEOUT).status_code == 200
    for host in cluster.hosts:
        for path in paths:
            assert requests.get(f"{host.url}{path}", timeout=TIMEOUT).status_code == 200
            assert requests.get(f"{host.url}{path}", timeout=TIMEOUT).headers["X-Cropper-Cache"] == "hit"
    return paths


def admin_delete(host, path):
    return requests.delete(f"{host.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def test_a_withdrawn_image_is_gone_from_the_store_every_hosts_nginx_and_folder_and_answers_410(cluster, store,
                                                                                              standin):
    record, other = standin.image(SURVEY_NAMES[0]), standin.image(SURVEY_NAMES[1])
    paths = make_and_read_everywhere(cluster, record)
    other_paths = make_and_read_everywhere(cluster, other)
    assert len(stored(store, record.uuid)) == 3
    assert all(nginx_cached(host, record.uuid) for host in cluster.hosts)
    assert wait_until(lambda: cluster.owner_of(record.uuid).pixels_stored(record.uuid))
    kept = {host.address: nginx_cached(host, other.uuid) for host in cluster.hosts}

    standin.withdraw_image(record.uuid)
    time.sleep(TTL)
    listed = requests.get(f"{cluster.front_url}/images/{record.uuid}/boxes", timeout=TIMEOUT)
    assert listed.status_code == 410 and listed.json()["error"]["code"] == "image_withdrawn"

    assert wait_until(lambda: stored(store, record.uuid) == [], timeout=20)
    assert wait_until(lambda: all(nginx_cached(host, record.uuid) == [] for host in cluster.hosts), timeout=20)
    assert wait_until(lambda: all(kept_of(host, record.uuid) == [f"{record.uuid}.gone"] for host in cluster.hosts),
                      timeout=20)
    for host in cluster.hosts:
        for path in paths:
            answer = requests.get(f"{host.url}{path}", timeout=TIMEOUT)
            assert answer.status_code == 410 and answer.json()["error"]["code"] == "image_withdrawn", (host, path)
    again = requests.post(f"{cluster.front_url}/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 48,
                                                                  "y2": 48}, timeout=TIMEOUT)
    assert again.status_code == 410
    # The other image: untouched in the store and in every nginx.
    assert len(stored(store, other.uuid)) == 3 and {host.address: nginx_cached(host, other.uuid)
                                                     for host in cluster.hosts} == kept
    assert all(requests.get(f"{cluster.front_url}{path}", timeout=TIMEOUT).status_code == 200 for path in other_paths)


def test_a_purge_made_on_any_host_reaches_every_host_and_says_what_each_removed(cluster, store, standin):
    record = standin.image(SURVEY_NAMES[2])
    paths = make_and_read_everywhere(cluster, record)
    asked = cluster.hosts[0] if cluster.owner_of(record.uuid) is not cluster.hosts[0] else cluster.hosts[1]

    answer = admin_delete(asked, f"/admin/images/{record.uuid}")

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["store"]["files"] == 3 and stored(store, record.uuid) == []
    assert sorted(entry["host"] for entry in report["hosts"]) == sorted(cluster.addresses)
    for entry in report["hosts"]:
        host = cluster.host_at(entry["host"])
        assert entry["nginx_cache"]["files"] == len(paths) and nginx_cached(host, record.uuid) == []
        assert kept_of(host, record.uuid) == []  # not withdrawn: no note
    owner = next(entry for entry in report["hosts"] if entry["host"] == cluster.owner_of(record.uuid).address)
    assert owner["files"] > len(paths)  # its record and pixels too
    assert report["files"] == report["store"]["files"] + sum(entry["files"] for entry in report["hosts"])
    for host in cluster.hosts:  # made again from FathomNet: it still has the image
        assert requests.get(f"{host.url}{paths[0]}", timeout=TIMEOUT).status_code == 200


def test_a_host_that_was_down_during_a_purge_applies_it_when_it_starts(cluster, store, standin):
    record = standin.image(SURVEY_NAMES[3])
    down = cluster.owner_of(record.uuid)  # it makes the image's crops: it has its pixels
    asked = next(host for host in cluster.hosts if host is not down)
    path = urlsplit(requests.post(f"{cluster.front_url}/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0,
                                                                          "x2": 40, "y2": 40},
                                  timeout=TIMEOUT).json()["url"]).path
    assert requests.get(f"{down.url}{path}", timeout=TIMEOUT).status_code == 200
    assert requests.get(f"{down.url}{path}", timeout=TIMEOUT).headers["X-Cropper-Cache"] == "hit"
    assert wait_until(lambda: down.pixels_stored(record.uuid))
    assert nginx_cached(down, record.uuid) == [path]

    down.stop()
    try:
        answer = admin_delete(asked, f"/admin/images/{record.uuid}")
        assert answer.status_code == 200, answer.text
        missed = next(entry for entry in answer.json()["hosts"] if entry["host"] == down.address)
        assert missed["pending"] is True and "error" in missed
        # Nothing of it was removed on the host that was down...
        assert down.pixels_stored(record.uuid) and nginx_cached(down, record.uuid) == [path]
        assert stored(store, record.uuid) == []
    finally:
        down.gunicorn.start()  # ...until it starts: before its workers answer, it applies what it missed
        down.nginx.start()
    assert not down.pixels_stored(record.uuid) and kept_of(down, record.uuid) == []
    assert nginx_cached(down, record.uuid) == []
    assert answer.json()["purge"]["id"] in os.listdir(down.cache_dir / "purges-applied")
    assert requests.get(f"{down.url}{path}", timeout=TIMEOUT).headers["X-Cropper-Cache"] == "regenerated"
