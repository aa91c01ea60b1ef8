"""Wiring: the parts of the service, built from the settings, one role at a time.

A table of contents for the factory (`create_app`) and the operator commands (`cropper cache`,
`cropper store`, `serve`), which ask nothing of each other: each part comes from one function
here, chosen by one setting where there is a choice (CACHE_BACKEND for the crop store).
"""

import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from .cluster import cluster_of
from .datasets import Datasets
from .datasets.jobs import Jobs
from .datasets.queue import DatasetQueue, is_shared, queue_storage
from .datasets.worker import Worker
from .purges import Purges
from .service import CropService
from .sources import ImageSources
from .storage.breaker import OPEN_FILE
from .storage.eviction import Pruner
from .storage.files import FileCropStore, FileDatasetStore, FileJobStore, FileSourceStore
from .storage.locks import Locks
from .storage.nginx_cache import NginxCache


def _s3_crop_store(settings, locks):
    from .storage.s3 import S3CropStore  # boto3 is imported only by hosts that use it

    return S3CropStore(settings.s3_bucket, settings.s3_endpoint_url or None, locks, region=settings.s3_region,
                       connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout,
                       ready_timeout=settings.ready_timeout, breaker_file=store_breaker_file(settings))


def store_breaker_file(settings):
    """The file that says, to every process of this host and its nginx, that the shared store is unreachable."""
    return Path(settings.cache_dir).resolve() / OPEN_FILE


# CACHE_BACKEND -> the crop store it names, built from the settings and this host's locks.
CROP_STORES = {
    "file": lambda settings, locks: FileCropStore(settings.cache_dir, locks),
    "s3": _s3_crop_store,
}


@dataclass(frozen=True)
class Stores:
    """The crop store and the source store, sharing this host's locks."""

    crops: object  # a storage.CropStore
    sources: object  # a storage.SourceStore


def host_locks(settings):
    """The locks every process of this host shares (in CACHE_DIR)."""
    return Locks(Path(settings.cache_dir).resolve() / "locks", settings.lock_timeout)


def stores(settings):
    """The stores the settings name: crops in CACHE_DIR or a shared bucket; image sources always in CACHE_DIR."""
    locks = host_locks(settings)
    return Stores(CROP_STORES[settings.cache_backend](settings, locks), FileSourceStore(settings.cache_dir, locks))


def image_source(settings):
    """Where images come from: FathomNet."""
    from .upstream.fathomnet import FathomNetClient  # requests' session is made only by what asks FathomNet

    return FathomNetClient(settings)


def pruner(settings, built=None):
    """The evictor of the stores."""
    built = built or stores(settings)
    return Pruner(built.crops, built.sources, settings)


def crop_service(settings, source=None, built=None):
    """The crop service over the stores, the image source (default: FathomNet), the evictor and the cluster."""
    built = built or stores(settings)
    evictor = pruner(settings, built)
    sources = ImageSources(source or image_source(settings), built.sources, evictor, settings.max_image_pixels,
                           settings.metadata_ttl)
    return CropService(settings, built.crops, sources, evictor, cluster_of(settings))


def purges(settings, service):
    """Purges over the service's stores, this host's nginx cache (CACHE_BACKEND=s3) and the cluster; an image
    FathomNet withdraws is purged through them."""
    nginx_cache = NginxCache(settings.store_cache_folder) if settings.cache_backend == "s3" else None
    made = Purges(service.sources, service.crop_store, nginx_cache, service.cluster,
                  settings.cluster_self or socket.gethostname())
    service.sources.on_withdrawn = made.withdrawn
    return made


def dataset_store(settings, crop_store):
    """Where finished data sets' files are kept: this host's folder, or the S3 store every host shares (each
    host's nginx serves them from there), through the crop store's client and breaker."""
    if settings.cache_backend == "s3":
        from .storage.s3 import S3DatasetStore

        return S3DatasetStore(crop_store, settings.cache_dir)
    return FileDatasetStore(settings.cache_dir)


def job_store(settings):
    """Where data-set job records are: in Redis with the queue when every host shares it, else in CACHE_DIR."""
    if is_shared(settings.dataset_queue):
        from .storage.redis import RedisJobStore  # the Redis client is imported only by hosts that use it

        return RedisJobStore(settings.dataset_queue, settings.cluster_self or socket.gethostname(),
                             settings.lock_timeout)
    return FileJobStore(settings.cache_dir, host_locks(settings))


def jobs(settings, enqueue=None):
    """Data-set job records, handing new ones to enqueue(job_id) (the web's side; the worker's submits none)."""
    return Jobs(job_store(settings), enqueue, settings.dataset_queue_max)


def datasets(settings, service):
    """Data-set jobs as the web API asks them; the queue is opened at the first job (the factory writes nothing)."""
    queue = Lazy(lambda: DatasetQueue(queue_storage(settings)))
    return Datasets(jobs(settings, lambda job_id: queue.get().enqueue(job_id)),
                    dataset_store(settings, service.crop_store), service.sources,
                    unavailable=datasets_unavailable(settings))


def datasets_unavailable(settings):
    """Why this host takes no data-set jobs, or None: several hosts need a queue they share."""
    if settings.cluster_hosts and not is_shared(settings.dataset_queue):
        return ("Data-set jobs on several hosts need a queue every host shares: set DATASET_QUEUE to "
                "redis://host:port/db on every host.")
    return None


def dataset_worker(settings):
    """The data-set worker's parts: (Worker, DatasetQueue whose task runs its jobs)."""
    service = crop_service(settings)
    worker = Worker(settings, service, jobs(settings), dataset_store(settings, service.crop_store))
    return worker, DatasetQueue(queue_storage(settings), run=worker.run)


class Lazy:
    """A value made at its first use, once, whichever thread asks first."""

    def __init__(self, make):
        self.make, self.value, self._lock = make, None, threading.Lock()

    def get(self):
        with self._lock:
            if self.value is None:
                self.value = self.make()
            return self.value
