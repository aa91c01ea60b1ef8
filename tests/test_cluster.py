"""The cluster's pure logic: nginx's ring, the owner of an image, and what travels between hosts.

That the ring is the one a running nginx routes by is checked against nginx itself in
tests/integration/test_cluster.py; the vectors below were taken from nginx 1.22.1's `hash ...
consistent` so the ring stays nginx's even where nginx is not installed.
"""

import logging
import socket
import threading
import uuid as uuidlib
from collections import Counter
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from cropper import create_app
from cropper.cluster import FAILED_HOST_SECONDS, KEY_HEADER, Cluster, RemoteError, Ring, crops_of_paths
from cropper.crops import Box, Crop
from tests.disks import fill, small_disk

NAMESPACE = uuidlib.UUID("6f1b3c2e-5d7a-4e8b-9c0d-fa7000f00d00")
HOSTS = ("127.0.0.1:28081", "127.0.0.1:28082", "127.0.0.1:28083")
# uuid5(NAMESPACE, "ring-<i>") -> the server nginx chose, with all three up, and with 28082 down.
NGINX_CHOSE = [
    ("127.0.0.1:28082", "127.0.0.1:28081"), ("127.0.0.1:28082", "127.0.0.1:28083"),
    ("127.0.0.1:28082", "127.0.0.1:28083"), ("127.0.0.1:28081", "127.0.0.1:28081"),
    ("127.0.0.1:28081", "127.0.0.1:28081"), ("127.0.0.1:28082", "127.0.0.1:28083"),
    ("127.0.0.1:28083", "127.0.0.1:28083"), ("127.0.0.1:28083", "127.0.0.1:28083"),
    ("127.0.0.1:28083", "127.0.0.1:28083"), ("127.0.0.1:28082", "127.0.0.1:28083"),
    ("127.0.0.1:28082", "127.0.0.1:28083"), ("127.0.0.1:28082", "127.0.0.1:28081"),
]


def keys(n, prefix="k"):
    return [str(uuidlib.uuid5(NAMESPACE, f"{prefix}{i}")) for i in range(n)]


def owner(ring, key):
    return next(ring.owners(key))


@pytest.mark.parametrize("i", range(len(NGINX_CHOSE)))
def test_the_ring_chooses_what_nginx_chose_and_fails_over_as_nginx_did(i):
    key = str(uuidlib.uuid5(NAMESPACE, f"ring-{i}"))
    all_up, without_28082 = NGINX_CHOSE[i]
    ring = Ring(HOSTS)
    assert owner(ring, key) == all_up
    assert next(host for host in ring.owners(key) if host != "127.0.0.1:28082") == without_28082


def test_the_ring_is_deterministic_and_the_same_in_any_order():
    some = keys(500)
    first, again, reversed_ = Ring(HOSTS), Ring(HOSTS), Ring(HOSTS[::-1])
    assert [list(first.owners(k)) for k in some] == [list(again.owners(k)) for k in some]
    assert [owner(first, k) for k in some] == [owner(reversed_, k) for k in some]
    assert len(first.hashes) == 3 * 160 and first.hashes == sorted(first.hashes)


def test_owners_name_every_host_once_owner_first():
    ring = Ring(HOSTS)
    for key in keys(200):
        order = list(ring.owners(key))
        assert sorted(order) == sorted(HOSTS)


def test_a_host_gone_moves_only_its_own_images_each_to_its_next_owner():
    ring, without = Ring(HOSTS), Ring([HOSTS[0], HOSTS[2]])
    for key in keys(2000):
        order = list(ring.owners(key))
        expected = order[1] if order[0] == HOSTS[1] else order[0]
        assert owner(without, key) == expected


def test_a_host_added_takes_about_its_share_and_only_from_the_others():
    ring, grown = Ring(HOSTS), Ring([*HOSTS, "127.0.0.1:28084"])
    some = keys(6000)
    moved = [k for k in some if owner(ring, k) != owner(grown, k)]
    assert {owner(grown, k) for k in moved} == {"127.0.0.1:28084"}
    assert 0.15 < len(moved) / len(some) < 0.35


@pytest.mark.parametrize("hosts", [HOSTS, ("crops-a:8080", "crops-b:8080", "crops-c:8080"),
                                   ("app1", "app2", "app3", "app4", "app5")])
def test_images_spread_across_the_hosts(hosts):
    ring, some = Ring(hosts), keys(6000, "spread")
    shares = Counter(owner(ring, k) for k in some)
    assert set(shares) == set(hosts)
    for host in hosts:
        assert 0.6 / len(hosts) < shares[host] / len(some) < 1.4 / len(hosts), shares


def test_a_port_is_the_digits_after_the_last_colon_as_nginx_reads_it():
    # nginx hashes "host\0port"; with no port (or not digits), "name\0".
    assert Ring(["app:80"]).hashes != Ring(["app80"]).hashes
    assert Ring(["[::1]:8080"]).hosts[0] == "[::1]:8080"
    assert len(Ring(["app:http"]).hashes) == 160


def test_the_owner_passes_over_a_failed_host_for_a_while_but_never_over_itself():
    cluster = Cluster(HOSTS, HOSTS[0], "key", 5)
    theirs = [k for k in keys(300) if owner(cluster.ring, k) == HOSTS[1]]
    mine = [k for k in keys(300) if owner(cluster.ring, k) == HOSTS[0]]
    assert all(cluster.owner(k) == HOSTS[1] and not cluster.is_mine(k) for k in theirs)
    assert cluster._down(HOSTS[1], "test") is None
    assert all(cluster.owner(k) == list(cluster.ring.owners(k))[1] for k in theirs)
    assert all(cluster.is_mine(k) for k in mine)
    cluster._down(HOSTS[0], "test")  # this host is always its own images' owner
    assert all(cluster.is_mine(k) for k in mine)
    cluster._failed[HOSTS[1]] -= FAILED_HOST_SECONDS + 1  # its time is up: it is asked again
    assert all(cluster.owner(k) == HOSTS[1] for k in theirs)


def test_crops_this_host_owns_are_not_sent_anywhere():
    cluster = Cluster(HOSTS, HOSTS[2], "key", 5)
    mine = [k for k in keys(100) if owner(cluster.ring, k) == HOSTS[2]]
    wanted = [Crop(k, Box(0, 0, 10, 10), "webp") for k in mine[:5]]
    assert cluster.make_elsewhere(wanted) == [None] * 5  # made here: no request at all


def test_only_paths_a_request_would_make_are_taken_from_another_host():
    crop = Crop(str(uuidlib.uuid4()), Box(10, 10, 300, 200), "webp")
    found = crops_of_paths([crop.store_path, "crops/ab/not-a-crop", None, 12, "etc/passwd",
                            crop.store_path.replace("10_10", "010_10")])
    assert found == [crop, None, None, None, None, None]


def test_an_error_another_host_answers_keeps_its_status_code_details_and_retry_after():
    item = {"status": 422, "retry_after": None, "error": {
        "code": "box_outside_image", "message": "The box does not fit.", "details": {"image_width": 640}}}
    error = RemoteError(item["status"], item)
    assert (error.status, error.code, error.message, error.details) == \
        (422, "box_outside_image", "The box does not fit.", {"image_width": 640})
    busy = RemoteError(503, {"status": 503, "retry_after": 1, "error": {"code": "busy", "message": "Busy."}})
    assert (busy.status, busy.retry_after, busy.details) == (503, 1, {})
    odd = RemoteError(500, {"error": {"details": {"message": "a detail named message"}}})
    assert odd.code == "internal_error" and odd.details == {"message": "a detail named message"}


def test_an_owner_whose_disk_is_full_is_a_507_for_the_asker_too_not_a_cluster_failure(settings, standin, tmp_path):
    """The owner answers /_cluster/make 507 as a whole when it cannot store an image's metadata; the asking
    host must pass that on (no Retry-After: a full disk is no reason to retry at once), not call it a 503."""
    with small_disk(tmp_path / "disk", 1) as disk:
        owner_app = create_app(settings.replace(cache_dir=disk / "cache", cluster_key="k"))
        server = make_server("127.0.0.1", 0, owner_app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            fill(disk)
            asker = Cluster([f"127.0.0.1:{server.server_port}"], "127.0.0.1:1", "k", timeout=10)

            [made] = asker.make_elsewhere([Crop(standin.image("gray").uuid, Box(0, 0, 8, 8), "png")])

            assert (made.status, made.code, made.retry_after) == (507, "insufficient_storage", None)
        finally:
            server.shutdown()


def test_more_crops_than_an_owner_takes_in_one_request_are_asked_for_in_turn(settings, standin, tmp_path):
    """An owner answers a /_cluster/make of more than its BATCH_MAX_CROPS paths with a 400: a data-set round
    or a batch may hold more of one owner's crops than that, so they go in requests of at most that many."""
    owner_app = create_app(settings.replace(cache_dir=tmp_path / "cache", cluster_key="k", batch_max_crops=3))
    server = make_server("127.0.0.1", 0, owner_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        asker = Cluster([f"127.0.0.1:{server.server_port}"], "127.0.0.1:1", "k", timeout=10, most_per_request=3)
        uuid = standin.image("gray").uuid
        wanted = [Crop(uuid, Box(0, 0, 8 + side, 8), "png") for side in range(7)]

        made = asker.make_elsewhere(wanted)

        assert [type(m).__name__ for m in made] == ["Made"] * 7 and not any(m.cached for m in made)
        assert [m.cached for m in asker.make_elsewhere(wanted[5:] + wanted[:2])] == [True] * 4
    finally:
        server.shutdown()


# -- one CLUSTER_KEY for every host


@contextmanager
def peer(settings, key):
    """Another host's app, answering /_cluster/make to its own key, on a free port: its address."""
    server = make_server("127.0.0.1", 0, create_app(settings.replace(cluster_key=key)), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def test_a_host_whose_key_every_other_refuses_is_the_one_to_fix(settings):
    with peer(settings, "ours") as a, peer(settings, "ours") as b:
        found = Cluster([a, b, "127.0.0.1:1"], "127.0.0.1:1", "not ours", timeout=5).check_key(2)
    assert (found.took, found.refused, found.unreachable) == ((), (a, b), ())
    assert found.problem.startswith(f"This host's CLUSTER_KEY is not the other hosts': {a} and {b} refused it")
    assert "same CLUSTER_KEY" in found.problem and "ours" not in found.problem


def test_a_host_whose_key_the_others_take_is_fine_and_names_the_one_that_refused_it(settings):
    with peer(settings, "ours") as a, peer(settings, "theirs") as odd:
        found = Cluster([a, odd, "127.0.0.1:1"], "127.0.0.1:1", "ours", timeout=5).check_key(2)
    assert (found.took, found.refused, found.problem) == ((a,), (odd,), None)
    assert found.warning.startswith(f"{odd} refused this host's CLUSTER_KEY, which {a} took: that host has another")
    assert "ours" not in found.warning and "theirs" not in found.warning


def test_a_host_that_cannot_be_asked_is_no_key_mismatch(settings):
    down = closed_port()
    with peer(settings, "ours") as a:
        found = Cluster([a, down, "127.0.0.1:1"], "127.0.0.1:1", "ours", timeout=5).check_key(2)
    assert (found.took, found.refused, found.problem) == ((a,), (), None)
    assert [host for host, _ in found.unreachable] == [down] and f"{down} could not be asked" in found.warning
    nobody = Cluster([down, "127.0.0.1:1"], "127.0.0.1:1", "ours", timeout=5).check_key(2)
    assert nobody.problem is None and nobody.refused == ()  # every other host down: nothing to say of keys


def test_a_refused_key_is_an_answer_that_says_what_to_fix_and_both_hosts_log_it(settings, standin, caplog):
    """A refusal was "answered HTTP 404 (not_found) when asked to", and no log line said "key"."""
    with peer(settings, "theirs") as owner:
        asker = Cluster([owner], "127.0.0.1:2", "ours", timeout=5)
        with caplog.at_level(logging.WARNING, logger="cropper"):
            [made] = asker.make_elsewhere([Crop(standin.image("gray").uuid, Box(0, 0, 8, 8), "png")])
    assert (made.status, made.code) == (503, "cluster_unavailable")
    assert made.message == (f"The hosts of this cluster do not share one CLUSTER_KEY: {owner}, which makes this "
                            "image's crops, refused the key of 127.0.0.1:2, which took this request. The operator "
                            "must give every host the same CLUSTER_KEY.")
    said = [record.getMessage() for record in caplog.records]
    assert any(f"cluster host {owner} refused this host's CLUSTER_KEY" in line for line in said)  # the asker's
    assert any("asked this one to make crops with a CLUSTER_KEY that is not this host's" in line
               and "(as '127.0.0.1:2')" in line for line in said)  # the owner's
    assert not any("ours" in line or "theirs" in line for line in said)


def test_a_refused_key_is_logged_once_a_minute_per_asker_and_a_request_without_one_not_at_all(settings, caplog):
    app = create_app(settings.replace(cluster_key="ours"))
    with caplog.at_level(logging.WARNING, logger="cropper"), app.test_client() as peer_client:
        for headers in ({KEY_HEADER: "theirs"}, {KEY_HEADER: "theirs"}, {}, {KEY_HEADER: ""}):
            refused = peer_client.post("/_cluster/make", json={"paths": []}, headers=headers,
                                       environ_base={"REMOTE_ADDR": "192.0.2.77"})
            assert refused.status_code == 404 and refused.json["error"]["code"] == "not_found"
    assert sum("192.0.2.77" in record.getMessage() for record in caplog.records) == 1
