"""Three real hosts and a front over one SeaweedFS (devtools/cluster.py), one of them started with
another CLUSTER_KEY.

That host said ready; its peers refused its /_cluster/make with a plain 404 (as they must, to hide
the route), which it logged as a plain failure; about 4 POSTs in 9 failed for good with an answer
naming a correctly configured host, and no log line on either side said "key". Now it is not ready
and says why, its peers stay ready, both sides log the mismatch, and the failed answers say what to fix.
"""

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.cluster import LocalCluster
from devtools.servers import wait_until

TIMEOUT = 30


@pytest.fixture(scope="module")
def cluster(store, standin, tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), standin, store, hosts=3)
    cluster.odd_key = secrets.token_hex(16)
    cluster.hosts[2].gunicorn.env["CLUSTER_KEY"] = cluster.odd_key  # a typo in one host's settings
    with cluster:
        yield cluster


def keys_in(text, cluster):
    return cluster.key in text or cluster.odd_key in text


def test_the_host_with_another_key_is_not_ready_and_says_why_and_the_others_stay_ready(cluster):
    right, also_right, odd = cluster.hosts
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda host: requests.get(f"{host.url}/readyz", timeout=TIMEOUT), cluster.hosts))
    assert [answer.status_code for answer in answers] == [200, 200, 503]
    said = answers[2].json()["checks"]["cluster"]
    assert said["ok"] is False
    assert f"{right.address} and {also_right.address} refused it" in said["error"]
    assert "Give every host of CLUSTER_HOSTS the same CLUSTER_KEY" in said["error"]
    for answer in answers[:2]:
        check = answer.json()["checks"]["cluster"]
        assert check["ok"] is True
        assert check["warning"].startswith(f"{odd.address} refused this host's CLUSTER_KEY")
    assert not any(keys_in(answer.text, cluster) for answer in answers)


def test_a_crop_the_other_key_cannot_have_made_says_what_to_fix(cluster, standin):
    right, _, odd = cluster.hosts
    names = [item["name"] for item in standin.catalog() if item["name"] not in ("huge", "bomb", "offhost")]
    owned_by_odd = next(standin.image(n) for n in names if cluster.owner_of(standin.image(n).uuid) is odd)
    owned_by_right = next(standin.image(n) for n in names if cluster.owner_of(standin.image(n).uuid) is right)
    for asked, record, owner in ((right, owned_by_odd, odd), (odd, owned_by_right, right)):
        crop = {"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 20, "y2": 20}
        answer = requests.post(f"{asked.url}/cropper/", json=crop, timeout=TIMEOUT)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "cluster_unavailable"
        message = answer.json()["error"]["message"]
        assert f"do not share one CLUSTER_KEY: {owner.address}" in message and f"key of {asked.address}" in message
        assert "give every host the same CLUSTER_KEY" in message and not keys_in(answer.text, cluster)


def test_both_sides_log_the_mismatch_in_words_from_the_start(cluster):
    right, also_right, odd = cluster.hosts
    # At start (Gunicorn runs `cropper cluster check`), then whenever one asks the other.
    assert wait_until(lambda: "This host's CLUSTER_KEY is not the other hosts'" in odd.gunicorn.log(), timeout=TIMEOUT)
    assert wait_until(lambda: f"{odd.address} refused this host's CLUSTER_KEY" in right.gunicorn.log(), timeout=TIMEOUT)
    assert wait_until(lambda: f"CLUSTER_KEY taken by {also_right.address}" in right.gunicorn.log(), timeout=TIMEOUT)
    for refusing, asking in ((odd, right), (right, odd)):
        assert wait_until(lambda: f"(as '{asking.address}') asked this one to make crops with a CLUSTER_KEY that is "
                                  "not this host's" in refusing.gunicorn.log(), timeout=TIMEOUT)
    assert not any(keys_in(host.gunicorn.log(), cluster) for host in cluster.hosts)


def test_a_host_that_cannot_be_reached_is_no_key_mismatch(cluster):
    right, also_right, odd = cluster.hosts
    odd.kill()
    ready = requests.get(f"{right.url}/readyz", timeout=TIMEOUT)
    check = ready.json()["checks"]["cluster"]
    assert ready.status_code == 200 and check["ok"] is True and "error" not in check
    assert f"{odd.address} could not be asked" in check["warning"] and "refused" not in check["warning"]
    assert requests.get(f"{also_right.url}/readyz", timeout=TIMEOUT).status_code == 200
