"""create_app: a factory without side effects, so tests (and tools) can build apps freely."""

import logging
import threading

from cropper import create_app


def test_create_app_starts_no_thread_touches_no_logger_and_writes_nothing(settings):
    threads = set(threading.enumerate())
    loggers = {name: (list(logger.handlers), logger.level, logger.propagate)
               for name, logger in logging.Logger.manager.loggerDict.items() if isinstance(logger, logging.Logger)}
    root = (list(logging.getLogger().handlers), logging.getLogger().level)

    apps = [create_app(settings.replace(cache_prune_interval=60)) for _ in range(5)]

    assert set(threading.enumerate()) - threads == set()  # none started (others may have ended meanwhile)
    assert (list(logging.getLogger().handlers), logging.getLogger().level) == root
    for name, state in loggers.items():
        logger = logging.getLogger(name)
        assert (list(logger.handlers), logger.level, logger.propagate) == state, name
    assert not settings.cache_dir.exists()  # nothing on disk until something is stored
    assert len({id(app.extensions["cropper"]) for app in apps}) == 5


def test_each_app_has_its_own_settings(settings, tmp_path):
    first = create_app(settings)
    second = create_app(settings.replace(cache_dir=tmp_path / "other", public_url="http://other.test"))
    assert first.config["SETTINGS"].public_url == "http://crops.test"
    assert second.config["SETTINGS"].public_url == "http://other.test"


def test_a_fresh_app_answers_health_without_touching_the_disk(settings):
    client = create_app(settings).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert not settings.cache_dir.exists()
