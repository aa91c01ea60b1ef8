"""serve.py's decisions before anything starts: where nginx's unprivileged workers can read from."""

import os
from pathlib import Path

import pytest

from cropper.config import Settings
from cropper.ops.serve import (
    DEFAULT_CACHE_DIR,
    SYSTEM_CACHE_DIR,
    SYSTEM_RUN_DIR,
    StartError,
    can_reach,
    for_workers,
    is_loopback,
    run_dir,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make folders private to another user")


@pytest.fixture
def private(tmp_path):
    tmp_path.chmod(0o700)  # as root's home is
    return tmp_path


def test_a_user_cannot_reach_a_folder_private_to_root_and_can_reach_an_open_one(private):
    assert not can_reach("nobody", private / "cache")
    assert can_reach("nobody", Path("/tmp")) and can_reach("root", private)


def test_a_private_default_cache_moves_to_the_system_cache_folder(private, monkeypatch):
    monkeypatch.chdir(private)
    moved = for_workers(Settings(cache_dir=DEFAULT_CACHE_DIR), "nobody")
    assert moved.cache_dir == SYSTEM_CACHE_DIR


def test_a_private_cache_that_was_asked_for_is_refused(private):
    with pytest.raises(StartError, match="cannot read the cache folder"):
        for_workers(Settings(cache_dir=private / "cache"), "nobody")


def test_a_reachable_cache_stays_where_it_is(tmp_path):
    open_folder = Path("/tmp")
    assert for_workers(Settings(cache_dir=open_folder / "c"), "nobody").cache_dir == open_folder / "c"


def test_nginx_s_run_folder_is_the_host_s_own_and_never_shared_by_hosts_that_chose_theirs(private, monkeypatch):
    """As root, every host fell back to the same /run/cropper/nginx: their configs and pids overwrote each other."""
    open_folder = Path("/tmp")
    assert run_dir(Settings(var_dir=open_folder / "host1"), "nobody") == open_folder / "host1" / "run" / "nginx"
    with pytest.raises(StartError, match="set VAR_DIR to a folder nobody can reach"):
        run_dir(Settings(var_dir=private / "host1"), "nobody")
    monkeypatch.chdir(private)  # VAR_DIR left as it is, in a private working folder: the system's, as before
    assert run_dir(Settings(), "nobody") == SYSTEM_RUN_DIR
    assert run_dir(Settings(), "") == Path("var/run/nginx")  # not root: nginx's workers are whoever starts it


def test_loopback_addresses():
    assert is_loopback("127.0.0.1:8000") and is_loopback("localhost:1") and is_loopback("[::1]:80")
    assert not is_loopback("0.0.0.0:8000") and not is_loopback("10.0.0.5:80")
