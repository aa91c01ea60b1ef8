"""Operator commands: `python -m cropper serve | env-example | cache stats | cache prune`."""

import argparse
import time

from .cache import FileCache
from .config import ConfigError, Settings, env_example
from .eviction import Pruner, Usage, scan
from .serve import serve


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m cropper", description="FathomNet Cropper operator commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run nginx + Gunicorn (Gunicorn alone without nginx) until Ctrl-C")
    commands.add_parser("env-example", help="print every setting with its default, as in .env.example")
    cache = commands.add_parser("cache", help="inspect or prune the cache folder (CACHE_DIR)")
    cache.add_argument("action", choices=["stats", "prune"])
    args = parser.parse_args(argv)
    if args.command == "env-example":
        print(env_example(), end="")
        return 0
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    if args.command == "serve":
        return serve(settings)
    file_cache = FileCache(settings.cache_dir, settings.lock_timeout)
    if args.action == "prune":
        report = Pruner(file_cache, settings).prune()
        print(f"removed {report.crops_removed} crops ({mib(report.crop_bytes_removed)}), "
              f"{report.sources_removed} sources ({mib(report.source_bytes_removed)}), "
              f"{report.temp_files_removed} temp files; {report.skipped_in_use} in use were kept")
    print_stats(file_cache, settings)
    return 0


def print_stats(file_cache, settings):
    usage = scan(file_cache)
    print(f"cache folder: {file_cache.root}")
    for label, entries, budget in (("crops", usage.crops, settings.cache_max_bytes),
                                   ("sources", usage.sources, settings.source_cache_max_bytes)):
        total = Usage.total(entries)
        line = f"{label + ':':<9}{len(entries):>9} {'files' if label == 'crops' else 'images'}  " \
               f"{mib(total):>12} of {mib(budget)} ({100 * total / budget:.0f}%)"
        if entries:
            used = [entry.last_used for entry in entries]
            line += f"  least recently used {when(min(used))}, most {when(max(used))}"
        print(line)
    print(f"temp files: {len(usage.temp_files)}")


def mib(size):
    return f"{size / 1024**2:,.1f} MiB"


def when(timestamp):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


if __name__ == "__main__":
    raise SystemExit(main())
