"""Settings: every knob of the service, its default and why it exists.

This is the only module that reads the environment. The app factory builds one
Settings from `.env` plus the process environment and hands it to everything else.
"""

import dataclasses
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from . import formats


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _str(raw):
    return raw.strip()


def _lower(raw):
    return raw.strip().lower()


def _format(raw):
    fmt = formats.lookup(raw)
    return fmt.name if fmt else raw.strip().lower()


def _bool(raw):
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(raw)
    return value in ("true", "1", "yes", "on")


def _int(raw):
    return int(raw)


def _float(raw):
    return float(raw)


def _path(raw):
    return Path(raw).expanduser()


def _networks(raw):
    networks = _csv(raw)
    for network in networks:
        ipaddress.ip_network(network)  # ValueError for what is not a network
    return networks


def _address(raw):
    return str(ipaddress.ip_address(raw.strip()))  # ValueError for what is not an IP address


def _csv(raw):
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


MAY_BE_ZERO = ("upstream_retries", "trusted_proxies", "gunicorn_workers", "cache_prune_interval", "temp_grace",
               "miss_queue", "webp_method", "png_compress_level", "dataset_queue_max", "metadata_ttl")


def setting(default, parse, help):
    return field(default=default, metadata={"parse": parse, "help": help})


# Folders that, left empty, go under VAR_DIR: one setting keeps the hosts of one machine apart.
UNDER_VAR_DIR = {"cache_dir": "cache", "metrics_dir": "metrics", "access_log": "log/access.log",
                 "dataset_queue": "datasets/queue.sqlite3"}


@dataclass(frozen=True)
class Settings:
    """All settings; the environment variable of each is its name in upper case."""

    public_url: str = setting(
        "", _str, "Base URL put in front of /crops/... in answers; empty: taken from the request (behind ProxyFix).")
    var_dir: Path = setting(
        Path("var"), _path, "Folder for everything this host writes: its cache, metrics, access log and data-set "
        "queue (below, when left empty) and nginx's config, pid and temp files (run/nginx); hosts on one machine "
        "each need their own.")
    cache_dir: Path = setting(
        None, _path, "Folder of the local cache: crops (which nginx serves), image sources and locks; empty: "
        "VAR_DIR/cache.")
    fathomnet_api_url: str = setting(
        "https://database.fathomnet.org/api", _str, "FathomNet API base, the variable fathomnet-py reads too.")
    allowed_image_hosts: tuple = setting(
        ("database.fathomnet.org",), _csv,
        "Hosts images may be downloaded from ('host' on ports 80/443, or 'host:port'), so a poisoned API "
        "answer cannot aim us at an internal address.")
    connect_timeout: float = setting(3.05, _float, "Seconds to open a connection to FathomNet or the image host.")
    read_timeout: float = setting(10.0, _float, "Seconds to wait for each read from FathomNet or the image host.")
    api_timeout: float = setting(
        15.0, _float, "Seconds a whole FathomNet API call may take, answer included; catches trickling peers.")
    download_timeout: float = setting(
        60.0, _float, "Seconds a whole image download may take; catches hosts that trickle bytes.")
    upstream_retries: int = setting(
        2, _int, "Extra tries, with backoff, after a connection error or a 5xx from FathomNet.")
    max_download_bytes: int = setting(200 * 1024 * 1024, _int, "Largest source image file we download.")
    max_api_bytes: int = setting(
        16 * 1024 * 1024, _int, "Largest FathomNet API answer we read (after inflating it), e.g. an image query.")
    max_image_pixels: int = setting(
        40_000_000, _int, "Largest source image (width x height) we decode; guards against decompression bombs.")
    max_crop_side: int = setting(8192, _int, "Longest side, in pixels, a crop may have.")
    max_crop_pixels: int = setting(16_777_216, _int, "Largest crop area (width x height), in pixels.")
    default_format: str = setting("webp", _format, "Output format when the request names none (see formats.py).")
    quality: int = setting(90, _int, "Quality (1-100) of crops in the lossy formats (see formats.py).")
    # Encoder effort: a crop is encoded once and served many times. Measured by `python -m bench.encoders`
    # (docs/performance.md, "Encoder settings"): WebP method 0 is 2.2x faster than Pillow's default 4 for
    # 11 % more bytes, and faster than methods 1 and 2, whose crops are within 1.5 % of its bytes.
    webp_method: int = setting(0, _int, "WebP's effort, 0 (fastest) to 6 (smallest).")
    jpeg_optimize: bool = setting(True, _bool, "JPEG: optimise the Huffman tables (7 % fewer bytes, +1.3 ms).")
    jpeg_progressive: bool = setting(False, _bool, "JPEG: progressive (12 % fewer bytes, +3.8 ms).")
    png_compress_level: int = setting(6, _int, "PNG's zlib level, 0 (none) to 9 (smallest, slowest).")
    lock_timeout: float = setting(
        30.0, _float, "Seconds a request waits for another making the same file before answering 503.")
    miss_slots: int = setting(
        4, _int, "Crops one worker makes at once (each may wait on FathomNet); below GUNICORN_THREADS, so "
        "threads stay free for cache hits.")
    miss_queue: int = setting(
        24, _int, "Requests for new crops one worker lets wait for a slot; past that it answers 503 busy at once.")
    max_body_bytes: int = setting(1024 * 1024, _int, "Largest request body; bigger is a 413.")
    cors_origins: tuple = setting(("*",), _csv, "Origins allowed to call the API from a browser, comma-separated.")
    trusted_proxies: int = setting(
        1, _int, "How many proxies in front set X-Forwarded-For, -Proto and -Host (the app trusts no other "
        "forwarded header); 0 when clients reach Gunicorn directly.")
    cache_max_bytes: int = setting(
        2 * 1024**3, _int, "Space crops may take (in CACHE_DIR, or in the bucket on the S3_PRUNER host); over it, "
        "least recently used go.")
    source_cache_max_bytes: int = setting(
        2 * 1024**3, _int, "Disk space source images (decoded pixels, ~6 MB per 1920x1080) may take.")
    cache_low_water: float = setting(
        0.9, _float, "When over a budget, remove until under this fraction of it, so pruning is not constant.")
    cache_prune_interval: float = setting(
        60.0, _float, "Seconds between cache checks by the pruner Gunicorn starts (one per cache folder); "
        "0: only by command.")
    temp_grace: float = setting(600.0, _float, "Age in seconds after which a temp file left by a killed worker goes.")
    batch_max_crops: int = setting(1000, _int, "Most crops one /cropper-list request may ask for; more is a 413.")
    iiif_tile_size: int = setting(512, _int, "Side of the IIIF tiles info.json offers viewers for deep zoom.")
    iiif_manifest_max_age: int = setting(
        3600, _int, "Seconds browsers, and nginx when PUBLIC_URL is set, keep an IIIF manifest or collection page "
        "before asking again: FathomNet's boxes may be edited meanwhile.")
    concept_page_max: int = setting(
        100, _int, "Most boxes one /cropper-concept page crops (and its default), so a page fits nginx's timeout.")
    batch_concurrency: int = setting(
        4, _int, "Downloads, decodes and crops one batch runs at once (Pillow's codecs use both cores).")
    min_free_bytes: int = setting(
        512 * 1024 * 1024, _int, "Free space the cache's disk needs for /readyz to say ready.")
    ready_timeout: float = setting(2.0, _float, "Seconds /readyz waits for FathomNet (and the S3 bucket) to answer.")

    # Freshness and purges (docs/freshness.md)
    metadata_ttl: float = setting(
        3600.0, _float, "Seconds FathomNet's answers about an image's boxes and about a box are used before the next "
        "request that needs them asks again (a crop named by its pixel region never asks); 0: every time.")
    admin_token: str = setting(
        "", _str, "Bearer token of the operator endpoints (DELETE /admin/images/<uuid>, /admin/boxes/<uuid>, "
        "/admin/concepts?name=...): a long random secret; empty: they do not exist (404).")
    admin_allow: tuple = setting(
        ("127.0.0.0/8", "::1/128"), _networks, "Networks that may reach /admin/ (others: 403, from nginx and "
        "the app), comma-separated.")

    # The crop store: this host's folder, or an S3 bucket every host shares (docs/deployment.md, "Several hosts")
    cache_backend: str = setting(
        "file", _str, "Where crops are kept: file (CACHE_DIR, served by this nginx from disk) or s3 (S3_BUCKET, "
        "shared by every host; nginx reads it through a local cache). Image sources stay in CACHE_DIR.")
    s3_bucket: str = setting(
        "cropper-crops", _str, "With CACHE_BACKEND=s3: the bucket, created with a policy that lets anyone read the "
        "crops/ and iiif/ keys in it. Credentials come from the usual AWS_* variables.")
    s3_endpoint_url: str = setting(
        "", _str, "With CACHE_BACKEND=s3: the store's S3 endpoint (SeaweedFS, MinIO, ...); empty: AWS S3.")
    s3_region: str = setting("us-east-1", _str, "With CACHE_BACKEND=s3: the bucket's region.")
    s3_public_url: str = setting(
        "", _str, "With CACHE_BACKEND=s3: http://host:port nginx reads crops from, unsigned (path-style); empty: "
        "S3_ENDPOINT_URL's.")
    s3_pruner: bool = setting(
        False, _bool, "With CACHE_BACKEND=s3: this host's pruner keeps the bucket within CACHE_MAX_BYTES (set it "
        "on one host only, or use a lifecycle rule of the store instead).")
    store_cache_max_bytes: int = setting(
        1024 * 1024 * 1024, _int, "With CACHE_BACKEND=s3: most bytes nginx's local cache of crops read from the "
        "store may hold.")
    store_cache_dir: str = setting(
        "", _str, "With CACHE_BACKEND=s3: the folder of that cache; empty: store-cache in CACHE_DIR. A purge "
        "clears an image's entries there when this host's app can reach it.")
    store_cache_valid: int = setting(
        600, _int, "With CACHE_BACKEND=s3: seconds nginx serves a crop from that cache before asking the store "
        "again (a conditional GET): how long a purge takes where the app cannot clear the cache.")
    cluster_hosts: tuple = setting(
        (), _csv, "Several hosts: every host's nginx as host:port, in the front nginx's order, the same on "
        "every host; empty: one host.")
    cluster_self: str = setting("", _lower, "Several hosts: this host's entry in CLUSTER_HOSTS.")
    cluster_key: str = setting(
        "", _str, "Several hosts: a shared secret the hosts send each other when one asks another to make "
        "crops (POST /_cluster/make); required with CLUSTER_HOSTS.")
    cluster_timeout: float = setting(
        120.0, _float, "Seconds a host waits for another to make the crops it asked for.")
    front_source_address: str = setting(
        "", _address, "The front (serve --front, nginx-config --front): the local address it connects to the "
        "hosts from, so their NGINX_REAL_IP_FROM can trust it alone (on one machine a loopback address of its "
        "own, e.g. 127.0.0.2, not every local client's 127.0.0.1); empty: the system's choice.")

    # Data-set jobs (docs/datasets.md)
    dataset_max_boxes: int = setting(
        10_000, _int, "Most boxes one data-set job may hold (its max_boxes' default and ceiling).")
    dataset_workers: int = setting(
        4, _int, "Images one data-set job downloads, decodes and crops at once (cached crops stay fast meanwhile).")
    dataset_jobs_running: int = setting(1, _int, "Data-set jobs one host's worker runs at once.")
    dataset_queue_max: int = setting(
        20, _int, "Data-set jobs that may wait for the worker; past it a new job is a 429 with Retry-After.")
    dataset_shard_bytes: int = setting(
        512 * 1024**2, _int, "Most bytes of one WebDataset shard (a tar of whole images' samples).")
    dataset_ttl: float = setting(7 * 24 * 3600.0, _float, "Seconds a finished data set's files are kept.")
    dataset_max_bytes: int = setting(
        20 * 1024**3, _int, "Space finished data sets may take; over it the oldest finished go first.")
    dataset_queue: str = setting(
        None, _str, "Where data-set jobs wait for the worker: a SQLite file that Gunicorn's workers and the "
        "data-set worker of this host share (kept out of CACHE_DIR, which may be remounted read-only); with "
        "CLUSTER_HOSTS, a Redis every host shares (redis://host:6379/0), which also keeps the jobs' records; "
        "empty: VAR_DIR/datasets/queue.sqlite3.")
    dataset_worker: bool = setting(
        True, _bool, "Run the data-set worker beside Gunicorn (started by its arbiter, as the pruner is).")

    # Metrics
    metrics_allow: tuple = setting(
        ("127.0.0.0/8", "::1/128"), _networks, "Networks that may read /metrics (the app's and nginx's), "
        "comma-separated; add the one your Prometheus scrapes from.")
    metrics_dir: Path = setting(
        None, _path, "Folder where Gunicorn's workers keep their metrics (wiped at start); empty: VAR_DIR/metrics.")

    # Gunicorn (read by gunicorn.conf.py)
    gunicorn_bind: str = setting("127.0.0.1:8000", _str, "Address Gunicorn listens on; nginx proxies to it.")
    gunicorn_workers: int = setting(0, _int, "Gunicorn worker processes; 0: one per core plus one.")
    gunicorn_worker_class: str = setting(
        "gthread", _str, "sync or gthread; see cropper/ops/gunicorn_settings.py for the measurements.")
    gunicorn_threads: int = setting(
        32, _int, "Threads per worker with gthread: MISS_SLOTS + MISS_QUEUE of them for new crops, the rest for hits.")
    gunicorn_timeout: int = setting(
        90, _int, "Seconds before a silent worker is replaced; must outlast DOWNLOAD_TIMEOUT plus a decode.")

    # nginx, when run by `python -m cropper serve` (docker-compose.yml passes its own values)
    nginx: str = setting(
        "auto", _str, "auto: nginx in front when it is installed; off: Gunicorn alone; or the nginx binary's path.")
    nginx_listen: str = setting("127.0.0.1:8080", _str, "Address nginx listens on for HTTP.")
    nginx_user: str = setting(
        "", _str, "User nginx's workers run as when `cropper serve` is started as root; empty: www-data (or "
        "nobody). It must be able to read CACHE_DIR.")
    nginx_upstream: str = setting("", _str, "host:port nginx proxies the API to; empty: GUNICORN_BIND.")
    nginx_real_ip_from: tuple = setting(
        (), _networks, "Proxies in front of this nginx (a cluster's front) whose X-Forwarded-For names the "
        "client, comma-separated networks; empty: none, the client is the connection's address.")
    nginx_resolver: str = setting(
        "", _str, "DNS server nginx re-resolves NGINX_UPSTREAM's name with (Docker's is 127.0.0.11); empty: none.")
    access_log: Path = setting(
        None, _path, "nginx's JSON access log, the one to monitor; empty: VAR_DIR/log/access.log.")
    api_rate_limit: str = setting("50r/s", _str, "Per-client request rate for /cropper and /cropper-list.")
    api_burst: int = setting(100, _int, "Requests a client may send above the API rate before getting 429.")
    regen_rate_limit: str = setting(
        "10r/s", _str, "Per-client rate for fetching crops missing on disk (each may mean a download).")
    regen_burst: int = setting(20, _int, "Missing-crop fetches a client may send above that rate before 429.")
    iiif_rate_limit: str = setting(
        "100r/s", _str, "Per-client rate for IIIF requests nginx cannot answer from disk (a zooming viewer "
        "asks for dozens of tiles at once).")
    iiif_burst: int = setting(400, _int, "IIIF requests a client may send above that rate before 429.")
    tls_listen: str = setting("127.0.0.1:8443", _str, "Address nginx listens on for HTTPS, when TLS is on.")
    tls_cert_file: str = setting("", _str, "PEM certificate (chain) for HTTPS; with TLS_KEY_FILE turns TLS on.")
    tls_key_file: str = setting("", _str, "PEM private key for HTTPS: readable by the user starting nginx, mode 600.")

    # docker-compose (read by docker-compose.yml from .env)
    nginx_port: int = setting(8080, _int, "docker-compose: host port that publishes nginx's HTTP (container port 80).")
    nginx_tls_port: int = setting(
        8443, _int, "docker-compose with docker-compose.tls.yml: host port that publishes nginx's HTTPS.")

    def __post_init__(self):
        for name in UNDER_VAR_DIR:
            if getattr(self, name) is None:
                object.__setattr__(self, name, self.under_var_dir(name))  # frozen: set once, as it is made

    def under_var_dir(self, name):
        """Where a folder setting left empty goes: under VAR_DIR, as its field's type (DATASET_QUEUE's is a str,
        which may name Redis instead)."""
        found = self.var_dir / UNDER_VAR_DIR[name]
        return str(found) if next(f for f in dataclasses.fields(self) if f.name == name).type is str else found

    @classmethod
    def from_env(cls, environ=None, dotenv_path=".env", front=False):
        """Build settings from a mapping (default: `.env` overlaid by the process environment).

        front: for the front of several hosts, which needs none of a host's cluster settings but CLUSTER_HOSTS.
        """
        if environ is None:
            environ = {**dotenv_values(dotenv_path), **os.environ}
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.name.upper())
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError:
                raise ConfigError(f"{f.name.upper()}={raw!r} is not valid: {f.metadata['help']}") from None
        return cls(**values).checked(front)

    @property
    def store_cache_folder(self):
        """Where nginx keeps the crops it read from the store: STORE_CACHE_DIR, else in CACHE_DIR."""
        return Path(self.store_cache_dir).expanduser() if self.store_cache_dir else self.cache_dir / "store-cache"

    def replace(self, **changes):
        if "var_dir" in changes:  # the folders that follow VAR_DIR follow its change
            changes = {**{name: None for name in UNDER_VAR_DIR if getattr(self, name) == self.under_var_dir(name)},
                       **changes}
        return dataclasses.replace(self, **changes).checked()

    def checked(self, front=False):
        """Refuse settings that would only fail later, per request (for the front, only what it uses)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):  # an int to Python, but no number
                continue
            if isinstance(value, (int, float)) and not (0 < value < math.inf) and f.name not in MAY_BE_ZERO:
                raise ConfigError(f"{f.name.upper()} must be a finite number more than 0, not {value}")
            if f.name in MAY_BE_ZERO and not 0 <= value < math.inf:
                raise ConfigError(f"{f.name.upper()} must be a finite number, 0 or more, not {value}")
        if self.gunicorn_worker_class == "gthread" and self.gunicorn_threads <= self.miss_slots + self.miss_queue:
            raise ConfigError(f"GUNICORN_THREADS ({self.gunicorn_threads}) must be more than MISS_SLOTS + MISS_QUEUE "
                              f"({self.miss_slots} + {self.miss_queue}), or cache hits queue behind slow downloads")
        from .wiring import CROP_STORES  # the table of backends is the wiring's; imported when settings are checked

        if self.cache_backend not in CROP_STORES:
            raise ConfigError(f"CACHE_BACKEND must be {' or '.join(CROP_STORES)}, not {self.cache_backend!r}")
        if self.cluster_hosts and not front and (self.cluster_self not in self.cluster_hosts or not self.cluster_key):
            raise ConfigError("With CLUSTER_HOSTS, CLUSTER_SELF must be one of them and CLUSTER_KEY must be set")
        if self.cluster_hosts and not front and self.cache_backend != "s3":
            raise ConfigError("CLUSTER_HOSTS needs CACHE_BACKEND=s3: the hosts share their crops through the store")
        if not 0 < self.cache_low_water <= 1:
            raise ConfigError(f"CACHE_LOW_WATER must be more than 0 and at most 1, not {self.cache_low_water}")
        if not self.allowed_image_hosts:
            raise ConfigError("ALLOWED_IMAGE_HOSTS must name at least one host, or no image can be downloaded")
        if self.default_format not in formats.names():
            raise ConfigError(f"DEFAULT_FORMAT must be one of {', '.join(formats.names())}, "
                              f"not {self.default_format!r}")
        if not 0 <= self.webp_method <= 6 or not 0 <= self.png_compress_level <= 9:
            raise ConfigError("WEBP_METHOD must be 0 to 6, PNG_COMPRESS_LEVEL 0 to 9")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"QUALITY must be between 1 and 100, not {self.quality}")
        if self.gunicorn_worker_class not in ("gthread", "sync"):
            raise ConfigError(f"GUNICORN_WORKER_CLASS must be gthread or sync, not {self.gunicorn_worker_class!r}")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
        for name in ("api_rate_limit", "regen_rate_limit", "iiif_rate_limit"):
            if not re.fullmatch(r"[1-9][0-9]*r/[sm]", getattr(self, name)):
                raise ConfigError(f"{name.upper()} must look like 50r/s or 600r/m, not {getattr(self, name)!r}")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError(f"PUBLIC_URL must start with http:// or https://, not {self.public_url!r}")
        return self


def describe():
    """Yield (variable, default, help) for every setting, for docs and .env.example."""
    for f in dataclasses.fields(Settings):
        default = f.default
        if default is None:  # a folder under VAR_DIR
            default = ""
        elif isinstance(default, tuple):
            default = ",".join(default)
        elif isinstance(default, bool):
            default = str(default).lower()
        yield f.name.upper(), default, f.metadata["help"]


def env_example():
    """The text of .env.example: every setting with its help and default (`python -m cropper env-example`)."""
    lines = ["# Environment variable overrides for the crop service. Copy to .env and edit;",
             "# a real environment variable wins over this file. Every value shown is the default.",
             "# Made by `python -m cropper env-example > .env.example` from cropper/config.py.", ""]
    for name, default, help in describe():
        lines += [f"# {help}", f"{name}={default}", ""]
    return "\n".join(lines)
