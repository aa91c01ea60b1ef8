"""Fixtures that run the real service: Gunicorn with several workers, against the stand-in."""

import pytest

from devtools.seaweed import SeaweedFS
from devtools.servers import Gunicorn, NginxServer, find_nginx_or_skip, service_env


@pytest.fixture(scope="module")
def gunicorn(standin, tmp_path_factory, request):
    """Real Gunicorn, 3 workers, with a cache folder of its own for the module; a module's SERVICE_SETTINGS
    (a dict of settings) change service_env's."""
    run_dir = tmp_path_factory.mktemp("gunicorn")
    env = service_env(standin, run_dir / "cache", **getattr(request.module, "SERVICE_SETTINGS", {}))
    server = Gunicorn(env, cwd=run_dir, workers=3)
    with server:
        server.cache_dir = run_dir / "cache"
        yield server


@pytest.fixture(scope="module")
def nginx(gunicorn, tmp_path_factory):
    """Real nginx from nginx/templates in front of the module's Gunicorn, sharing its cache folder."""
    find_nginx_or_skip()
    with NginxServer(gunicorn, gunicorn.cache_dir, tmp_path_factory.mktemp("nginx")) as server:
        yield server


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A real SeaweedFS for the module's hosts (with their nginx, which reads it), on loopback."""
    find_nginx_or_skip()
    server = SeaweedFS(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
    except RuntimeError as error:
        server.close()
        pytest.skip(f"SeaweedFS cannot start here, so hosts sharing a store cannot run: {error}")
    try:
        yield server
    finally:
        server.close()
