"""Operator commands: `cropper serve [--front] | env-example | nginx-config [--front] DIR | cache stats | cache
prune [--every N] | cache purge --image UUID | --box UUID | --concept NAME | --missed | store init | datasets
worker | cluster check [--wait N]`."""

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

from . import wiring
from .cluster import check_key_at_start, cluster_of
from .config import ConfigError, Settings, env_example
from .crops import canonical_uuid
from .datasets.worker import run_worker
from .errors import CropperError
from .ops.nginx import FrontSite, NginxProcess, NginxSite, render_front, render_nginx
from .ops.serve import StartError, prepare_store, serve, served_cache_dir
from .purges import MAX_CONCEPT
from .storage.eviction import run_pruner


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cropper", description="FathomNet Cropper operator commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="run nginx + Gunicorn (Gunicorn alone without nginx) until Ctrl-C")
    serving.add_argument("--front", action="store_true",
                         help="run the front nginx of several hosts (CLUSTER_HOSTS) on this machine instead")
    commands.add_parser("env-example", help="print every setting with its default, as in .env.example")
    nginx = commands.add_parser("nginx-config", help="render nginx's config for the compose files' nginx image")
    nginx.add_argument("out", type=Path, help="folder nginx reads it from (the same path in both containers)")
    nginx.add_argument("--front", action="store_true", help="the front of several hosts (CLUSTER_HOSTS) instead")
    store = commands.add_parser("store", help="the shared crop store (CACHE_BACKEND=s3)")
    store.add_argument("action", choices=["init"], help="init: create the bucket, open its crops to reads")
    cluster = commands.add_parser("cluster", help="several hosts (CLUSTER_HOSTS)")
    cluster.add_argument("action", choices=["check"], help="check: do the other hosts take this one's CLUSTER_KEY?")
    cluster.add_argument("--wait", type=interval, default=0, metavar="SECONDS",
                         help="ask hosts that cannot be reached again, every second, for up to SECONDS")
    cache = commands.add_parser("cache", help="inspect, prune or purge the cache folder (CACHE_DIR) and the store")
    cache.add_argument("action", choices=["stats", "prune", "purge"])
    cache.add_argument("--every", type=interval, metavar="SECONDS",
                       help="with prune: keep pruning at this interval, as the cache folder's one pruner")
    what = cache.add_mutually_exclusive_group()
    what.add_argument("--image", type=uuid_text, metavar="UUID",
                      help="with purge: every crop, tile, pixel and record of an image")
    what.add_argument("--box", type=uuid_text, metavar="UUID", help="with purge: what is remembered of a box")
    what.add_argument("--concept", type=concept_name, metavar="NAME",
                      help="with purge: what is remembered of a concept's boxes")
    what.add_argument("--missed", action="store_true",
                      help="with purge: apply the purges other hosts made while this one was down")
    cache.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    datasets = commands.add_parser("datasets", help="data-set jobs")
    datasets.add_argument("action", choices=["worker"], help="worker: run queued jobs until stopped "
                          "(Gunicorn's arbiter starts one beside its workers when DATASET_WORKER is on)")
    datasets.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "cache" and args.action == "purge" and not (args.image or args.box or args.concept or
                                                                   args.missed):
        parser.error("cache purge needs --image UUID, --box UUID, --concept NAME or --missed")
    if args.command == "env-example":
        print(env_example(), end="")
        return 0
    try:
        settings = Settings.from_env(front=getattr(args, "front", False))  # the front needs no host's settings
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    if args.command == "serve":
        return serve(settings, front=args.front)
    if args.command == "nginx-config":
        try:
            if args.front:
                main = render_front(FrontSite.from_settings(settings), NginxProcess.docker(args.out))
            else:
                main = render_nginx(NginxSite.from_settings(settings), NginxProcess.docker(args.out))
        except ValueError as error:  # settings nginx cannot be given (no CLUSTER_HOSTS, a store over https)
            parser.exit(2, f"{parser.prog}: {error}\n")
        print(f"wrote {main}")
        return 0
    if args.command == "datasets":
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
        try:
            worker, queue = wiring.dataset_worker(settings)
        except (OSError, sqlite3.Error) as error:  # a cache folder that is read-only, full, or not ours
            parser.exit(1, f"{parser.prog}: the data-set worker cannot open its queue in {settings.cache_dir}: "
                           f"{error}\n")
        run_worker(settings, worker, queue, parent_pid=os.getppid() if args.exit_with_parent else None)
        return 0
    if args.command == "store":
        if settings.cache_backend != "s3":
            parser.exit(2, f"{parser.prog}: store init is for the shared crop store: set CACHE_BACKEND=s3\n")
        try:
            prepare_store(settings.replace(cache_dir=served_cache_dir(settings)))  # serve's breaker file
        except StartError as error:
            parser.exit(1, f"{parser.prog}: {error}\n")
        print(f"bucket {settings.s3_bucket} ready: crops/ and iiif/ readable by anyone, written only with credentials")
        return 0
    if args.command == "cluster":
        if not settings.cluster_hosts:
            parser.exit(2, f"{parser.prog}: cluster check is for several hosts: set CLUSTER_HOSTS\n")
        log_lines()
        found = check_key_at_start(cluster_of(settings), args.wait, settings.ready_timeout)
        return 1 if found.problem else 0
    try:
        return cache_command(args, settings)
    except CropperError as error:  # the store cannot be reached, the disk is read-only: say so in one line
        parser.exit(1, f"{parser.prog}: {error.message}\n")


def log_lines():
    """Log as Gunicorn does, for the commands it starts beside its workers (the pruner, the key check)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")


def uuid_text(raw):
    try:
        return canonical_uuid(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a uuid") from None


def concept_name(raw):
    if not 0 < len(raw) <= MAX_CONCEPT:
        raise argparse.ArgumentTypeError(f"a concept is a name of 1 to {MAX_CONCEPT} characters")
    return raw


def interval(raw):
    seconds = float(raw)
    if not seconds >= 0:  # a negative or NaN interval would prune again and again without a pause
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds, 0 or more")
    return seconds


def cache_command(args, settings):
    where, missing = "", False
    if not args.every:  # an operator's look: at the folder `serve` uses (the pruner --every is given Gunicorn's)
        folder = served_cache_dir(settings)
        if folder != settings.cache_dir:
            where = f" (where `cropper serve` keeps it as root: nginx's workers cannot reach {settings.cache_dir})"
            settings = settings.replace(cache_dir=folder)
        missing = not settings.cache_dir.is_dir()
        if missing:  # a mistyped CACHE_DIR, or the demo's folder: said, not "0 files" alone, and not made by a prune
            print(f"cropper: warning: the cache folder {settings.cache_dir.resolve()} does not exist: set CACHE_DIR "
                  f"to the service's (the demo prints its own)", file=sys.stderr, flush=True)
    built = wiring.stores(settings)
    crop_store, source_store = built.crops, built.sources
    pruner = wiring.pruner(settings, built)
    if args.action == "purge":
        return purge_command(args, settings, built)
    if args.action == "prune" and args.every:
        log_lines()
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a stop: end after the current pass, quietly
            signal.signal(signum, lambda *_: stop.set())
        # Each pass also applies the purges this host missed: made while it was down or cut off, or that it
        # could not apply when they were made.
        missed = wiring.purges(settings, wiring.crop_service(settings, built=built)).catch_up
        run_pruner(pruner, args.every, stop,
                   parent_pid=os.getppid() if args.exit_with_parent else None, after_each=missed)
        return 0
    if args.action == "prune" and not missing:
        report = pruner.prune()
        print(f"removed {report.crops_removed} crops ({mib(report.crop_bytes_removed)}), "
              f"{report.sources_removed} sources ({mib(report.source_bytes_removed)}), "
              f"{report.temp_files_removed} temp files, {report.superseded_removed} under names of earlier versions; "
              f"{report.skipped_in_use} in use were kept")
    print_stats(settings, crop_store, source_store, where)
    return 0


def purge_command(args, settings, built):
    """Purge on this host (running or not), in the store and on every other host; print what went, as JSON."""
    log_lines()
    if settings.metrics_dir.is_dir():  # counted with the service's workers (Gunicorn empties it at each start)
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.metrics_dir.resolve()))
    purges = wiring.purges(settings, wiring.crop_service(settings, built=built))
    if args.missed:
        report = {"applied": [purge.to_dict() for purge in purges.catch_up()]}
    elif args.concept:
        report = purges.concept(args.concept)
    else:
        report = purges.image(args.image) if args.image else purges.box(args.box)
    print(json.dumps(report, indent=2))
    return 0


def print_stats(settings, crop_store, source_store, where=""):
    print(f"cache folder: {settings.cache_dir.resolve()}{where}")
    crops, sources = crop_store.listing(), source_store.listing()
    for label, listing, budget in (("crops", crops, settings.cache_max_bytes),
                                   ("sources", sources, settings.source_cache_max_bytes)):
        line = f"{label + ':':<9}{len(listing.entries):>9} {'files' if label == 'crops' else 'images'}  " \
               f"{mib(listing.size):>12} of {mib(budget)} ({100 * listing.size / budget:.0f}%)"
        if listing.entries:
            used = [entry.last_used for entry in listing.entries]
            line += f"  least recently used {when(min(used))}, most {when(max(used))}"
        print(line)
    print(f"temp files: {len(crops.temp_files) + len(sources.temp_files)}")


def mib(size):
    return f"{size / 1024**2:,.1f} MiB"


def when(timestamp):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


if __name__ == "__main__":
    raise SystemExit(main())
