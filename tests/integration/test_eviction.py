"""A bounded cache in the running service: it shrinks on its own, and evicted crops' links still work."""

import os

import requests

from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, wait_until
from tests.cachefolder import CacheFolder, Usage, scan
from tests.images import assert_image_equal, expected_crop, open_bytes
from tests.integration.conftest import service_env

CROP_BUDGET = 256 * 1024
SOURCE_BUDGET = 8 * 1024 * 1024  # about one 1920x1080 source: filling it evicts sources too


def test_the_cache_stays_within_its_budget_and_evicted_links_heal(standin, tmp_path):
    """No pruner runs: the writes themselves make room, so the budgets hold as soon as the burst is over."""
    find_nginx_or_skip()
    cache_dir = tmp_path / "cache"
    env = service_env(standin, cache_dir, CACHE_MAX_BYTES=CROP_BUDGET, SOURCE_CACHE_MAX_BYTES=SOURCE_BUDGET,
                      CACHE_PRUNE_INTERVAL="0")
    records = [standin.image(name) for name in ("framegrab", "framegrab-1", "rgba")]
    limits = {"regen_rate": "1000r/s", "regen_burst": 1000, "api_rate": "1000r/s", "api_burst": 1000}
    with Gunicorn(env, cwd=tmp_path, workers=2) as app, NginxServer(app, cache_dir, tmp_path, **limits) as nginx:
        made = []  # (record, box, url)
        for record in records:
            body = [{"uuid": record.uuid, "x1": 13 * j, "y1": 7 * j, "x2": 13 * j + 160, "y2": 7 * j + 120,
                     "format": "png"} for j in range(15)]
            answers = requests.post(f"{nginx.url}/cropper-list/", json=body, timeout=60).json()
            made += [(record, a["box"], a["url"]) for a in answers]
        usage = scan(CacheFolder(cache_dir, 5))
        assert Usage.total(usage.crops) <= CROP_BUDGET
        assert Usage.total(usage.sources) <= SOURCE_BUDGET

        evicted = [(r, box, url) for r, box, url in made if not os.path.exists(cache_dir / url.split("/", 3)[3])]
        assert evicted, "nothing was evicted"
        for record, box, url in evicted:
            served = requests.get(url, timeout=30)
            assert served.status_code == 200, url
            assert served.headers["X-Cropper-Cache"] in ("regenerated", "hit")
            assert_image_equal(open_bytes(served.content), expected_crop(record, box))


def test_one_pruner_per_cache_folder_however_many_gunicorns_share_it(standin, tmp_path):
    """Two app hosts (as two containers on one volume): one prunes, the other stands by and takes over."""
    cache_dir = tmp_path / "cache"
    env = service_env(standin, cache_dir, CACHE_MAX_BYTES=64 * 1024, CACHE_PRUNE_INTERVAL="0.3")
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first, second = Gunicorn(env, cwd=first_dir, workers=1), Gunicorn(env, cwd=second_dir, workers=1)
    with first:
        assert wait_until(lambda: "pruning the cache every 0.3 s" in first.log())
        with second:
            assert wait_until(lambda: "another process prunes this cache; standing by" in second.log())
            record = standin.image("framegrab")
            body = [{"uuid": record.uuid, "x1": 20 * j, "y1": 0, "x2": 20 * j + 300, "y2": 200, "format": "png"}
                    for j in range(12)]
            assert requests.post(f"{second.url}/cropper-list/", json=body, timeout=60).status_code == 200
            cache = CacheFolder(cache_dir, 5)
            assert wait_until(lambda: Usage.total(scan(cache).crops) <= 64 * 1024)  # pruned by the first's pruner
            assert "pruning the cache every" not in second.log()
            first.stop()  # its pruner goes with its arbiter; the second's takes over
            assert wait_until(lambda: "pruning the cache every 0.3 s" in second.log())
    assert "Traceback" not in first.log() + second.log()
