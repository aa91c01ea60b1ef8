"""The cache pruner Gunicorn's arbiter runs beside the workers: started again when it dies, seen in the
metrics when it has not pruned for twice its interval, and never in the way of a read-only remount."""

import os
import re
import signal
import subprocess
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, wait_until
from tests.disks import small_disk
from tests.integration.conftest import service_env


def the_pruner(app, other_than=None):
    """The pruner's pid once there is one (and it is not other_than), waiting for it to be started."""
    assert wait_until(lambda: app.pruner_pids() not in ([], [other_than]), timeout=15), app.log()[-2000:]
    (pid,) = app.pruner_pids()
    return pid


def test_a_killed_pruner_is_started_again_after_a_pause_that_doubles_and_the_log_says_so(standin, tmp_path):
    env = service_env(standin, tmp_path / "cache", CACHE_PRUNE_INTERVAL="0.2")
    with Gunicorn(env, cwd=tmp_path, workers=1) as app:
        first = the_pruner(app)
        os.kill(first, signal.SIGKILL)  # as the kernel's OOM killer would
        second = the_pruner(app, other_than=first)
        killed = time.monotonic()
        os.kill(second, signal.SIGKILL)  # again, after a short run: the pause doubles
        third = the_pruner(app, other_than=second)
        assert time.monotonic() - killed >= 1.9
        log = app.log()
        for pid, pause in ((first, 1), (second, 2)):
            # Killed, in words; "exited" only if Gunicorn's arbiter reaped it before the pruner's thread could.
            assert re.search(rf"the cache pruner \(pid {pid}\) (was killed by SIGKILL|exited) after \d+ s; "
                             rf"starting it again in {pause} s", log), log[-2000:]
        assert f"started the cache pruner again (pid {second})" in log
        assert f"started the cache pruner again (pid {third})" in log
        assert len(app.worker_pids()) == 1 and requests.get(f"{app.url}/healthz", timeout=5).status_code == 200
    assert "Traceback" not in log


def pruned(nginx):
    """(last pass, interval) as /metrics says, through nginx; (None, None) before the first pass."""
    text = requests.get(f"{nginx.url}/metrics", timeout=10).text
    values = {sample.name: sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples}
    return values.get("cropper_cache_pruned_timestamp_seconds"), values.get("cropper_cache_prune_interval_seconds")


def test_the_metrics_show_a_pruner_that_has_not_pruned_for_twice_its_interval(standin, tmp_path):
    find_nginx_or_skip()
    env = service_env(standin, tmp_path / "cache", CACHE_PRUNE_INTERVAL="0.5")
    with Gunicorn(env, cwd=tmp_path, workers=1) as app, NginxServer(app, tmp_path / "cache", tmp_path) as nginx:
        def overdue():
            last, interval = pruned(nginx)
            return time.time() - last > 2 * interval

        assert wait_until(lambda: pruned(nginx)[0] is not None, timeout=15)
        assert pruned(nginx)[1] == 0.5 and wait_until(lambda: not overdue(), timeout=15)
        frozen = the_pruner(app)
        os.kill(frozen, signal.SIGSTOP)  # alive, so not started again: only the metrics can tell
        try:
            assert wait_until(overdue, timeout=15)
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert wait_until(lambda: not overdue(), timeout=15)


def test_the_cache_folder_can_be_remounted_read_only_under_a_running_pruner(standin, tmp_path):
    """The pruner holds its lock for as long as it runs: on a descriptor open for reading only."""
    with small_disk(tmp_path / "disk", 8) as disk:
        env = service_env(standin, disk / "cache", CACHE_PRUNE_INTERVAL="0.2")
        with Gunicorn(env, cwd=tmp_path, workers=1) as app:
            assert wait_until(lambda: "pruning the cache every" in app.log(), timeout=15)
            remounted = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
            try:
                assert remounted.returncode == 0, remounted.stderr  # no "mount point is busy"
            finally:
                subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=False)
