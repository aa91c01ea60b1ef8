"""A frozen store (SIGSTOP: alive, silent) behind a real host: Gunicorn (2 workers, CACHE_BACKEND=s3)
and its nginx reading crops from a real SeaweedFS.

Frozen for 30 s, every new POST (and even a repeat of a crop in the bucket) waited two tries of
READ_TIMEOUT, and a GET nginx did not hold waited nginx's read timeout and then the app's two; the
outage was remembered within one batch only. Now the first to meet it waits one timeout, every later
request of the host is answered at once (503, Retry-After), what nginx holds is still served, and
the host is itself again once the store thaws.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.servers import Gunicorn, NginxServer, service_env, wait_until

READ_TIMEOUT = 5  # the app's to the store; nginx's own read of the store waits 10 s (cropper-store.conf)
NGINX_STORE_READ = 10
FAST = 3  # the target: a request after the host has seen the store fail


@pytest.fixture(scope="module")
def host(store, standin, tmp_path_factory):
    folder = tmp_path_factory.mktemp("host")
    env = service_env(standin, folder / "cache", CACHE_BACKEND="s3", READ_TIMEOUT=str(READ_TIMEOUT), **store.env())
    with Gunicorn(env, cwd=folder, workers=2) as gunicorn, \
            NginxServer(gunicorn, folder / "cache", folder / "nginx",
                        store_url=f"{store.endpoint_url}/{store.bucket}") as nginx:
        nginx.gunicorn = gunicorn
        yield nginx


def crop_body(record, box, **options):
    x1, y1, x2, y2 = box
    return {"uuid": record.uuid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **options}


def timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def unavailable(answer):
    return answer.status_code == 503 and answer.json()["error"]["code"] == "store_unavailable" \
        and int(answer.headers["Retry-After"]) >= 1


def test_a_frozen_store_fails_new_work_fast_keeps_what_nginx_holds_and_recovers(host, store, standin):
    post = lambda path, body: requests.post(f"{host.url}{path}", json=body, timeout=60)  # noqa: E731
    get = lambda path: requests.get(f"{host.url}{path}", timeout=60)  # noqa: E731
    known, other = standin.image("framegrab"), standin.image("jpeg")
    made = [post("/cropper/", crop_body(known, (10 * k, 10, 10 * k + 90, 80))) for k in range(4)]
    assert [answer.status_code for answer in made] == [200] * 4
    repeat, unread, unread_too, held = ([crop_body(known, (10 * k, 10, 10 * k + 90, 80)),
                                         made[k].json()["url"].split("/", 3)[3]] for k in range(4))
    assert [get(f"/{held[1]}").headers["X-Cropper-Cache"] for _ in range(2)] == ["store", "hit"]  # nginx holds it

    store.freeze()
    try:
        # Nobody on the host has met the frozen store yet: a GET nginx does not hold waits nginx's own read
        # of the store, and no more (it used to wait it, then the app's two tries of READ_TIMEOUT).
        first, took = timed(lambda: get(f"/{unread[1]}"))
        assert unavailable(first) and took < NGINX_STORE_READ + 2, (first.status_code, took)

        # The host has seen it fail: whatever new work comes, on either worker, is answered at once.
        asked = [
            ("new image", lambda: post("/cropper/", crop_body(other, (0, 0, 50, 50)))),
            ("new box of a known image", lambda: post("/cropper/", crop_body(known, (1, 2, 60, 70)))),
            ("a crop already in the bucket", lambda: post("/cropper/", repeat[0])),
            ("a batch", lambda: post("/cropper-list/", [crop_body(known, (3, 3, 40, 40)), repeat[0],
                                                        crop_body(other, (5, 5, 30, 30))])),
            ("a GET nginx does not hold", lambda: get(f"/{unread_too[1]}")),
            ("an IIIF image", lambda: get(f"/iiif/3/{known.uuid}/0,0,64,64/max/0/default.jpg")),
        ] * 3
        with ThreadPoolExecutor(len(asked)) as pool:  # side by side, over connections of their own
            answers = list(pool.map(lambda item: (item[0], *timed(item[1])), asked))
        for what, answer, took in answers:
            assert took < FAST, (what, took)
            if what == "a batch":
                assert answer.status_code == 200
                assert [item["error"]["code"] for item in answer.json()] == ["store_unavailable"] * 3
            else:
                assert unavailable(answer), (what, answer.status_code, answer.text[:200])
        message = answers[0][1].json()["error"]["message"]
        assert "crop store" in message and "tries it again" in message
        ready, took = timed(lambda: get("/readyz"))
        assert ready.status_code == 503 and ready.json()["checks"]["store"]["ok"] is False and took < FAST

        # What nginx holds is still served, store or no store.
        cached = get(f"/{held[1]}")
        assert cached.status_code == 200 and cached.headers["X-Cropper-Cache"] == "hit"
    finally:
        store.thaw()
    thawed = time.monotonic()
    assert wait_until(lambda: post("/cropper/", crop_body(other, (0, 0, 50, 50))).status_code == 200, timeout=20)
    recovered = time.monotonic() - thawed
    assert get("/readyz").status_code == 200
    assert get(f"/{unread_too[1]}").headers["X-Cropper-Cache"] == "store"
    assert recovered < FAST, recovered
    log = host.gunicorn.log()
    assert log.count("the crop store cannot be reached") == 1  # one worker found it; the other was told
    assert "the crop store answers again" in log
