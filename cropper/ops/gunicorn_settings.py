"""Gunicorn settings, as a module of the package so every install has them: `gunicorn -c
python:cropper.ops.gunicorn_settings 'cropper:create_app()'` (the top-level gunicorn.conf.py imports this).

Values come from cropper.config.Settings (the environment, or `.env`), so every setting of the
service, Gunicorn's included, is documented in one place: `.env.example`.
"""

import os
import shutil
import subprocess
import sys

from cropper.config import ConfigError, Settings
from cropper.ops.helpers import KeptProcess

try:
    settings = Settings.from_env()
except ConfigError as error:
    sys.exit(f"Cannot start: {error}")  # one clear line, not a traceback

# Metrics across workers: prometheus_client's multiprocess mode keeps each process's values in this
# folder. It must be set before the workers fork (cropper.metrics imports prometheus_client only
# then), and wiped at each start (on_starting); child_exit marks a dead worker's gauges.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.metrics_dir.resolve()))

bind = settings.gunicorn_bind

# Worker class. Measured with `python -m bench.run --quick --worker-classes sync,gthread` on this
# 2-core machine, 3 workers, the stand-in adding 50 ms per request (medians):
#                                                   sync          gthread (4 threads)
#   cached repeat POST, wrk -t2 -c8 (median of 3)   4,291 req/s   4,912 req/s
#   cold crop / second box of the same image        175 / 12.5 ms 139 / 10.9 ms
#   cached POST while 6 crops wait 1 s on a host    1,139 ms      1.0 ms
# gthread keeps HTTP keep-alive and lets a worker's other threads answer cached requests while
# one thread waits on a slow download; sync workers are all stuck behind slow hosts.
# Both are Gunicorn's own workers with one change: the errors Gunicorn answers itself are JSON.
worker_class = {"gthread": "cropper.ops.workers.JSONThreadWorker",
                "sync": "cropper.ops.workers.JSONSyncWorker"}[settings.gunicorn_worker_class]
# Gunicorn quietly turns sync into gthread when threads > 1; keep "sync" meaning sync.
threads = settings.gunicorn_threads if settings.gunicorn_worker_class == "gthread" else 1
# Cropping and encoding hold the GIL, so processes beyond the core count add only memory.
workers = settings.gunicorn_workers or (os.cpu_count() or 1) + 1

# A worker silent this long is killed and replaced: it must outlast the slowest honest request,
# a download (DOWNLOAD_TIMEOUT) plus its decode.
timeout = settings.gunicorn_timeout
graceful_timeout = 30
keepalive = 5

# Recycle workers now and then so slow leaks cannot build up; the jitter keeps them from
# all restarting at once. Rarely: a worker answers 1,500 cached requests a second, and each
# restart costs an import and drops the worker's keep-alive connections to clients that then
# crowd the others (5,000 made every worker restart every few seconds under load, bench/floor.py).
max_requests = 200_000
max_requests_jitter = 20_000

# nginx writes the access log people monitor; Gunicorn's own would only repeat it. The service's
# own lines (warnings, prune reports) go to stderr beside Gunicorn's, in its format.
accesslog = None
errorlog = "-"
loglevel = "info"
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"generic": {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
                               "datefmt": "%Y-%m-%d %H:%M:%S %z"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "generic", "stream": "ext://sys.stderr"}},
    "root": {"level": "WARNING", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},  # nginx's log is the one
        "cropper": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}

# Gunicorn 27's control socket is one fixed path per user (~/.gunicorn/gunicorn.ctl), which several
# instances on one host (tests, bench, replicas) would fight over; nothing here uses it.
control_socket_disable = True


def on_starting(server):
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# The cache pruner and the data-set worker run beside the workers, started by the arbiter: processes of
# their own, so no web worker walks the cache or runs a job, and the app factory starts nothing; each is
# started again if it dies (ops/helpers.py). Several Gunicorns sharing one cache folder (replicas) each
# start a pruner; the folder's pruner lock lets one prune and the rest stand by. Each data-set worker
# takes jobs from the one queue (DATASET_QUEUE).
def helpers():
    """The processes to keep beside the workers: name -> command."""
    commands = {}
    if settings.cache_prune_interval > 0:
        commands["cache pruner"] = [sys.executable, "-m", "cropper", "cache", "prune", "--every",
                                    str(settings.cache_prune_interval), "--exit-with-parent"]
    if settings.dataset_worker:
        commands["data-set worker"] = [sys.executable, "-m", "cropper", "datasets", "worker", "--exit-with-parent"]
    return commands


# Before the workers start: purges other hosts made while this one was down, from the store's purge list
# (its pruner's passes then apply any it misses later). Bounded: a store that hangs costs at most this.
MISSED_PURGES_SECONDS = 60
KEY_CHECK_WAIT = 60  # seconds the start's key check asks again hosts that do not answer yet


def apply_missed_purges(server):
    try:
        subprocess.run([sys.executable, "-m", "cropper", "cache", "purge", "--missed"],
                       timeout=MISSED_PURGES_SECONDS, stdout=subprocess.DEVNULL, check=True)
    except (subprocess.SubprocessError, OSError) as error:
        server.log.warning("could not apply the purges missed while this host was down (its pruner tries again): "
                           "%s", error)


def when_ready(server):
    if settings.cache_backend == "s3":
        apply_missed_purges(server)
    server.cropper_helpers = [KeptProcess(name, command).start() for name, command in helpers().items()]
    # Several hosts: this one's CLUSTER_KEY checked with the others once, in the log (they may be starting
    # too: those not answering yet are asked again for a minute). Once, not kept: /readyz checks it each time.
    if settings.cluster_hosts:
        server.cropper_key_check = subprocess.Popen([
            sys.executable, "-m", "cropper", "cluster", "check", "--wait", str(KEY_CHECK_WAIT)])


def on_exit(server):
    for helper in getattr(server, "cropper_helpers", []):
        helper.stop()
    key_check = getattr(server, "cropper_key_check", None)
    if key_check is not None and key_check.poll() is None:
        key_check.terminate()
        key_check.wait(timeout=10)
