"""Try the service with no internet: `python -m devtools.demo`.

Starts the FathomNet stand-in, then the service exactly as `cropper serve` runs it (nginx in front
of Gunicorn, or Gunicorn alone without nginx) pointed at the stand-in, prints the web page's
address, opened on an image with annotations, and a curl line that works against them, and stops
everything on Ctrl-C or SIGTERM (also when started in the background). The cache and nginx's
access log stay in var/demo/ (printed at start), where `cropper cache stats` and `python -m
cropper.logstats` find them.
"""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from cropper.config import Settings
from cropper.ops.serve import can_reach, find_nginx, worker_user
from devtools.servers import ROOT, StandInProcess, wait_for
from devtools.standin import ANNOTATED_NAMES, DATASET_NAMES


class Stop(Exception):
    """SIGTERM: stop as Ctrl-C does."""


def demo_folder():
    """var/demo in the repository, or /var/tmp/cropper-demo when nginx's workers could not read it there."""
    folder = ROOT / "var" / "demo"
    user = worker_user(Settings()) if find_nginx() else ""
    if user and not can_reach(user, folder):
        return Path("/var/tmp/cropper-demo")
    return folder


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (the service's, without nginx)")
    parser.add_argument("--app-port", type=int, default=8000, help="Gunicorn's port")
    parser.add_argument("--standin-port", type=int, default=8001, help="the FathomNet stand-in's port")
    parser.add_argument("--folder", type=Path, default=None, help="for the cache and the access log "
                        "(default: var/demo in the repository)")
    args = parser.parse_args(argv)
    folder = (args.folder or demo_folder()).resolve()

    def stop(*_):
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    service = None
    try:
        # The stand-in draws its annotated images as deep-sea scenes, an animal at each box: all of them at start,
        # in the background (half a second each), so a first data-set job does not wait on its drawings.
        with StandInProcess(port=args.standin_port, look="scenes", draw_ahead=True) as standin:
            url = f"http://127.0.0.1:{args.port if find_nginx() else args.app_port}"
            env = {
                **os.environ, "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
                "CACHE_DIR": str(folder / "cache"), "ACCESS_LOG": str(folder / "access.log"),
                "GUNICORN_BIND": f"127.0.0.1:{args.app_port}", "NGINX_LISTEN": f"127.0.0.1:{args.port}",
            }
            folder.mkdir(parents=True, exist_ok=True)
            # cwd: the demo folder, without a .env, so the demo's settings are the ones above
            service = subprocess.Popen([sys.executable, "-m", "cropper", "serve"], cwd=folder, env=env)
            wait_for(f"{url}/healthz", process=service)
            uuid = standin.catalog()["framegrab"]["uuid"]
            annotated = standin.catalog()[ANNOTATED_NAMES[0]]["uuid"]
            several = standin.catalog()[DATASET_NAMES[2]]["uuid"]
            print(f"\nFathomNet stand-in: {standin.api_url}   service: {url}")
            print(f"Open the page on an image with annotations: {url}/?image={annotated}")
            print(f"  or on one with several kinds of animal: {url}/?image={several}")
            print(f"Cache: {folder / 'cache'}   access log: {folder / 'access.log'}")
            print("Try:")
            print(f"  curl -s -X POST {url}/cropper/ -H 'Content-Type: application/json' \\")
            print(f"       -d '{{\"uuid\": \"{uuid}\", \"x1\": 100, \"y1\": 100, \"x2\": 405, \"y2\": 400}}'")
            print("Ctrl-C stops everything.", flush=True)
            service.wait()
    except (KeyboardInterrupt, Stop):
        pass
    except RuntimeError as error:  # the service did not come up: its own message is above
        print(f"The demo could not start: {error}", file=sys.stderr)
        return 1
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)  # not SIGINT: a background job ignores it
            try:
                service.wait(timeout=60)
            except KeyboardInterrupt:
                service.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
