"""Shared fixtures: the FathomNet stand-in, settings pointed at it, the app and its test client."""

import pytest

from cropper import create_app
from cropper.config import Settings
from devtools.redis import RedisServer, find_redis
from devtools.standin import FathomNetStandIn
from tests.fakeservers import RawHandler, serving


@pytest.fixture(scope="session")
def standin():
    """One real FathomNet stand-in on 127.0.0.1 for the whole run (its images take a while to make)."""
    with FathomNetStandIn(latency=0.0) as server:
        server.draw_ahead()
        yield server


@pytest.fixture(autouse=True)
def fresh_standin(request):
    """Every test starts with zeroed counters, no faults and no latency."""
    if "standin" in request.fixturenames:
        server = request.getfixturevalue("standin")
        server.reset()
        server.latency = 0.0


@pytest.fixture
def settings(tmp_path, standin):
    """Settings for one test: its own cache, the stand-in as FathomNet, short timeouts."""
    return Settings(
        cache_dir=tmp_path / "cache",
        fathomnet_api_url=standin.api_url,
        allowed_image_hosts=(f"127.0.0.1:{standin.port}",),
        connect_timeout=1.0,
        read_timeout=1.0,
        download_timeout=3.0,
        lock_timeout=5.0,
        public_url="http://crops.test",
        trusted_proxies=1,
        cache_prune_interval=0,  # tests prune when they mean to
        dataset_queue=str(tmp_path / "datasets-queue.sqlite3"),
    ).checked()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tiny():
    """A minimal HTTP/1.0 server on 127.0.0.1; set tiny.routes[path] = (status, headers, body)."""
    with serving(RawHandler) as server:
        yield server


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server (Debian's) for the module's tests, on loopback with a password."""
    if not find_redis():
        pytest.skip("redis-server is not installed (apt-get install redis-server): .ci/setup installs it")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
