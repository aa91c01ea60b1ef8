"""The operator commands, run as an operator would: `python -m cropper ...` in a fresh process.

Each runs in a temp folder (so no .env of the repository is read) with an environment made from
scratch (so no setting of the machine running the tests leaks in).
"""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from cropper.crops import Box, Crop
from cropper.imaging import write_raw
from cropper.ops.serve import SYSTEM_CACHE_DIR, find_nginx
from cropper.storage.disk import TEMP_SUFFIX, atomic_writer, write_bytes
from devtools.servers import wait_until
from tests.cachefolder import CacheFolder
from tests.processes import HeldInChild

ROOT = Path(__file__).resolve().parents[1]
UUID = "f11816b8-1234-4abc-8def-0123456789ab"
OTHER = "9e140d51-2a43-5870-9337-eb66c5a4de6d"
LONG_AGO = time.time() - 10 * 3600
MIB = 1024**2


def cropper(tmp_path, *args, **settings):
    """Run `python -m cropper args` in tmp_path with only the given settings in the environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
           "CACHE_DIR": str(tmp_path / "cache"), **{name.upper(): str(value) for name, value in settings.items()}}
    return subprocess.run([sys.executable, "-m", "cropper", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)


def mib(size):
    return f"{size / MIB:,.1f} MiB"


def allocated(*paths):
    return sum(os.stat(path).st_blocks * 512 for path in paths)


@pytest.fixture
def cache(tmp_path):
    return CacheFolder(tmp_path / "cache", lock_timeout=2.0)


def make_crop(cache, n, size=MIB, uuid=UUID):
    path = cache.crop_path(Crop(uuid, Box(n, 0, n + 1, 1), "webp"))
    write_bytes(path, os.urandom(size))
    os.utime(path, (LONG_AGO + n, LONG_AGO + n))
    return path


def make_source(cache, uuid):
    paths = cache.source_path(uuid, ".json"), cache.source_path(uuid, ".pix")
    write_bytes(paths[0], b'{"uuid": "%s"}' % uuid.encode())
    with atomic_writer(paths[1]) as out:
        write_raw(Image.new("RGB", (512, 512)), out)
    for path in paths:
        os.utime(path, (LONG_AGO, LONG_AGO))
    return paths


def make_temp(folder, age):
    path = folder / f".1_0_2_1.webp.abc123{TEMP_SUFFIX}"
    path.write_bytes(b"half")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def when(timestamp):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


# -- cache stats


def test_stats_of_an_empty_cache(tmp_path):
    (tmp_path / "cache").mkdir()
    result = cropper(tmp_path, "cache", "stats")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"cache folder: {(tmp_path / 'cache').resolve()}"
    assert lines[1].split() == ["crops:", "0", "files", "0.0", "MiB", "of", "2,048.0", "MiB", "(0%)"]
    assert lines[2].split() == ["sources:", "0", "images", "0.0", "MiB", "of", "2,048.0", "MiB", "(0%)"]
    assert lines[3] == "temp files: 0"
    assert result.stderr == ""


@pytest.mark.parametrize("action", ["stats", "prune"])
def test_a_cache_folder_that_does_not_exist_is_named_not_reported_empty(tmp_path, action):
    result = cropper(tmp_path, "cache", action, cache_dir=tmp_path / "mistyped")

    assert result.returncode == 0, result.stderr
    assert f"the cache folder {tmp_path / 'mistyped'} does not exist" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "CACHE_DIR" in result.stderr
    assert not (tmp_path / "mistyped").exists()  # not made by looking (nor by a prune of nothing)


@pytest.mark.skipif(os.geteuid() != 0 or find_nginx() is None,
                    reason="only `serve` started as root with nginx moves a cache its workers cannot reach")
def test_as_root_stats_and_prune_look_in_the_folder_serve_uses(tmp_path):
    """A service started as root from a private folder keeps its cache in /var/cache/cropper: look there."""
    tmp_path.chmod(0o700)  # private to root, as root's home is: nginx's workers cannot reach var/cache in it
    existed = SYSTEM_CACHE_DIR.exists()
    for action in ("stats", "prune"):
        moved = cropper(tmp_path, "cache", action, cache_dir="")  # CACHE_DIR not set: the default, var/cache
        assert moved.returncode == 0, moved.stderr
        assert f"cache folder: {SYSTEM_CACHE_DIR} (where `cropper serve` keeps it as root" in moved.stdout
    assert SYSTEM_CACHE_DIR.exists() == existed  # looked at, never made
    kept = cropper(tmp_path, "cache", "stats", cache_dir="", nginx="off")  # serve would run Gunicorn alone here
    assert f"cache folder: {tmp_path / 'var/cache'}\n" in kept.stdout
    named = cropper(tmp_path, "cache", "stats")  # a CACHE_DIR of one's own is never moved
    assert f"cache folder: {tmp_path / 'cache'}\n" in named.stdout


def test_stats_of_a_filled_cache(tmp_path, cache):
    crops = [make_crop(cache, n) for n in range(3)]
    sources = make_source(cache, OTHER)
    make_temp(crops[0].parent, age=5)

    result = cropper(tmp_path, "cache", "stats", cache_max_bytes=8 * MIB, source_cache_max_bytes=4 * MIB)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    crop_line = next(line for line in out.splitlines() if line.startswith("crops:"))
    source_line = next(line for line in out.splitlines() if line.startswith("sources:"))
    crop_bytes, source_bytes = allocated(*crops), allocated(*sources)
    assert crop_line.split()[1:3] == ["3", "files"]
    assert f"{mib(crop_bytes)} of 8.0 MiB ({100 * crop_bytes / (8 * MIB):.0f}%)" in crop_line
    assert f"least recently used {when(LONG_AGO)}, most {when(LONG_AGO + 2)}" in crop_line
    assert source_line.split()[1:3] == ["1", "images"]
    assert f"{mib(source_bytes)} of 4.0 MiB" in source_line
    assert "temp files: 1" in out.splitlines()
    assert all(path.exists() for path in crops + list(sources))  # stats only looks


def test_settings_come_from_a_dotenv_in_the_working_folder_and_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text(f"CACHE_DIR={tmp_path / 'from-dotenv'}\nCACHE_MAX_BYTES={4 * MIB}\n")

    result = cropper(tmp_path, "cache", "stats", cache_max_bytes=MIB)

    assert result.returncode == 0, result.stderr
    # CACHE_DIR is set by cropper() too: the environment's folder is used, not the .env's
    assert f"cache folder: {(tmp_path / 'cache').resolve()}" in result.stdout
    assert "of 1.0 MiB" in result.stdout


# -- cache prune


def test_prune_removes_over_budget_files_and_says_what(tmp_path, cache):
    crops = [make_crop(cache, n) for n in range(4)]
    sources = make_source(cache, OTHER)
    old_temp, young_temp = make_temp(crops[0].parent, age=3600), make_temp(sources[0].parent, age=5)
    crop_bytes, source_bytes = allocated(*crops[:3]), allocated(*sources)

    result = cropper(tmp_path, "cache", "prune", cache_max_bytes=int(1.5 * MIB), source_cache_max_bytes=1,
                     temp_grace=600)

    assert result.returncode == 0, result.stderr
    assert [path.exists() for path in crops] == [False, False, False, True]  # oldest first, to 0.9 * 1.5 MiB
    assert not any(path.exists() for path in sources)
    assert not old_temp.exists() and young_temp.exists()
    assert result.stdout.splitlines()[0] == (f"removed 3 crops ({mib(crop_bytes)}), 1 sources ({mib(source_bytes)}), "
                                             "1 temp files, 0 under names of earlier versions; 0 in use were kept")
    assert "crops:" in result.stdout and "temp files: 1" in result.stdout  # then the stats after


def test_prune_keeps_a_crop_being_made(tmp_path, cache):
    crop = make_crop(cache, 1)

    with HeldInChild(lambda: cache.crop_store.lock(Crop(UUID, Box(1, 0, 2, 1), "webp"))):
        result = cropper(tmp_path, "cache", "prune", cache_max_bytes=1)

    assert result.returncode == 0, result.stderr
    assert crop.exists()
    assert result.stdout.startswith("removed 0 crops (0.0 MiB), 0 sources (0.0 MiB), 0 temp files, 0 under names of "
                                    "earlier versions; 1 in use were kept")


# -- cache purge


def test_purge_works_with_the_service_stopped_and_says_what_it_removed(tmp_path, standin):
    """Crops, a tile and an image's records made by an app that is gone; the command removes that image's alone."""
    import json

    from cropper import create_app
    from cropper.config import Settings

    settings = Settings(cache_dir=tmp_path / "cache", fathomnet_api_url=standin.api_url,
                        allowed_image_hosts=(f"127.0.0.1:{standin.port}",), cache_prune_interval=0)
    client = create_app(settings).test_client()
    purged, kept = standin.image("framegrab-1"), standin.image("framegrab-2")
    for record in (purged, kept):
        assert client.post("/cropper/", json={"uuid": record.uuid, "x1": 0, "y1": 0, "x2": 32, "y2": 32}).status_code \
            == 200
        assert client.get(f"/iiif/3/{record.uuid}/0,0,64,64/64,/0/default.png").status_code == 200
    cached = tmp_path / "cache"
    assert wait_until(lambda: all(list(cached.rglob(f"{record.uuid}.pix")) for record in (purged, kept)))
    kept_files = sorted(path for path in cached.rglob("*") if kept.uuid in str(path) and path.is_file())
    del client  # the service is stopped: nothing of it runs

    result = cropper(tmp_path, "cache", "purge", "--image", purged.uuid.upper(), fathomnet_api_url=standin.api_url)

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["purge"]["target"] == purged.uuid and report["store"]["files"] == 2
    assert report["hosts"][0]["files"] >= 1 and report["files"] == report["store"]["files"] + \
        report["hosts"][0]["files"]
    assert not [path for path in cached.rglob("*") if purged.uuid in str(path) and path.is_file()]
    assert sorted(path for path in cached.rglob("*") if kept.uuid in str(path) and path.is_file()) == kept_files
    again = json.loads(cropper(tmp_path, "cache", "purge", "--image", purged.uuid).stdout)
    assert (again["files"], again["bytes"]) == (0, 0)


@pytest.mark.parametrize("args, says", [
    ((), "needs --image UUID"), (("--image", "not-a-uuid"), "is not a uuid"), (("--box", "1234"), "is not a uuid"),
    (("--concept", ""), "1 to 256"), (("--image", UUID, "--box", UUID), "not allowed with"),
])
def test_a_purge_that_names_nothing_is_a_usage_error(tmp_path, args, says):
    result = cropper(tmp_path, "cache", "purge", *args)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr


# -- bad settings


@pytest.mark.parametrize("variable, value", [("CACHE_MAX_BYTES", "abc"), ("CACHE_LOW_WATER", "2"),
                                             ("TEMP_GRACE", "-1")])
@pytest.mark.parametrize("action", ["stats", "prune"])
def test_a_bad_setting_is_a_one_line_error_not_a_traceback(tmp_path, cache, action, variable, value):
    crop = make_crop(cache, 1)

    result = cropper(tmp_path, "cache", action, **{variable: value})

    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""
    assert crop.exists()


def test_an_unknown_cache_action_is_refused(tmp_path):
    result = cropper(tmp_path, "cache", "wipe")

    assert result.returncode == 2
    assert "invalid choice" in result.stderr


# -- env-example


def test_env_example_prints_the_committed_env_example(tmp_path):
    result = cropper(tmp_path, "env-example")

    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / ".env.example").read_text()
    assert "CACHE_MAX_BYTES=" in result.stdout and "CACHE_PRUNE_INTERVAL=" in result.stdout


def test_store_init_without_the_s3_backend_is_a_one_line_error_not_a_traceback(tmp_path):
    done = cropper(tmp_path, "store", "init")  # CACHE_BACKEND=file, the default: there is no bucket
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "CACHE_BACKEND=s3" in done.stderr


def test_store_init_without_credentials_says_credentials_not_try_again(tmp_path):
    done = cropper(tmp_path, "store", "init", cache_backend="s3", s3_endpoint_url="http://127.0.0.1:9",
                   home=tmp_path, aws_ec2_metadata_disabled="true")  # no AWS_* keys, no ~/.aws, no instance role

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "no credentials" in last and "AWS_ACCESS_KEY_ID" in last, done.stderr
    assert "Try again" not in last and "Traceback" not in done.stderr


# -- nginx-config, and settings nginx cannot be given


@pytest.mark.parametrize("args, settings, says", [
    ((), {"cache_backend": "s3"}, "plain http://"),  # the store is AWS's, over https: nginx cannot read it
    (("--front",), {}, "CLUSTER_HOSTS"),  # a front of no hosts
])
def test_nginx_config_nginx_cannot_be_given_is_a_one_line_error_not_a_traceback(tmp_path, args, settings, says):
    result = cropper(tmp_path, "nginx-config", *args, str(tmp_path / "rendered"), **settings)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and says in result.stderr, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("every", ["-1", "nan"])
def test_prune_refuses_an_interval_that_would_never_pause(tmp_path, every):
    result = cropper(tmp_path, "cache", "prune", "--every", every)  # pruned again and again, at full speed

    assert result.returncode == 2
    assert "--every" in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("action", ["stats", "prune"])
def test_a_store_that_cannot_be_reached_is_a_one_line_error_not_a_traceback(tmp_path, action):
    result = cropper(tmp_path, "cache", action, cache_backend="s3", s3_endpoint_url="http://127.0.0.1:9",
                     aws_access_key_id="x", aws_secret_access_key="y")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cropper: The crop store"), result.stderr


def test_cluster_check_says_whether_the_other_hosts_take_this_one_s_key(tmp_path, settings):
    from werkzeug.serving import make_server

    from cropper import create_app

    server = make_server("127.0.0.1", 0, create_app(settings.replace(cluster_key="key-3f9a1")), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    other = f"127.0.0.1:{server.server_port}"
    cluster = {"cache_backend": "s3", "cluster_hosts": f"{other},127.0.0.1:1", "cluster_self": "127.0.0.1:1"}
    try:
        taken = cropper(tmp_path, "cluster", "check", cluster_key="key-3f9a1", **cluster)
        refused = cropper(tmp_path, "cluster", "check", cluster_key="key-77c0e", **cluster)
    finally:
        server.shutdown()
    assert taken.returncode == 0 and f"CLUSTER_KEY taken by {other}" in taken.stderr
    assert refused.returncode == 1 and f"{other} refused it and none took it" in refused.stderr
    assert "key-" not in taken.stderr + refused.stderr  # no key, in any log
    alone = cropper(tmp_path, "cluster", "check")
    assert alone.returncode == 2 and "set CLUSTER_HOSTS" in alone.stderr


def test_the_front_s_config_needs_only_the_hosts_and_connects_from_the_address_they_trust(tmp_path):
    """It demanded CLUSTER_SELF, CLUSTER_KEY and CACHE_BACKEND=s3, which the front does not use."""
    made = cropper(tmp_path, "nginx-config", "--front", str(tmp_path / "front"),
                   cluster_hosts="127.0.0.1:8101,127.0.0.1:8102", front_source_address="127.0.0.2")
    assert made.returncode == 0, made.stderr
    front = (tmp_path / "front" / "conf.d" / "front.conf").read_text()
    assert "proxy_bind 127.0.0.2;" in front
    assert "server 127.0.0.1:8101 max_fails=1 fail_timeout=10s;" in front
