"""Try the service with no internet: `python -m devtools.demo`.

Starts the FathomNet stand-in, then the service exactly as `cropper serve` runs it (nginx in front
of Gunicorn, or Gunicorn alone without nginx) pointed at the stand-in, prints the web page's
address, opened on an image with annotations, and a curl line that works against them, and stops
everything on Ctrl-C or SIGTERM (also when started in the background). The cache and nginx's
access log stay in var/demo/ (printed at start, with the commands that read them).

Every port is checked before anything starts: a port in use (`cropper serve` or another demo
running) is one line and a non-zero exit, as is a service that cannot start.
"""

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from cropper.config import ConfigError, Settings
from cropper.ops.serve import StartError, can_reach, check_free, nginx_binary, worker_user
from devtools.servers import ROOT, StandInProcess, wait_for
from devtools.standin import ANNOTATED_NAMES, DATASET_NAMES


class Stop(Exception):
    """SIGTERM: stop as Ctrl-C does."""


def demo_folder(settings):
    """var/demo in the repository, or /var/tmp/cropper-demo when nginx's workers could not read it there."""
    folder = ROOT / "var" / "demo"
    user = worker_user(settings) if nginx_binary(settings) else ""
    if user and not can_reach(user, folder):
        return Path("/var/tmp/cropper-demo")
    return folder


def busy_ports(ports):
    """One line for each (port, option) something already listens on: the stand-in and serve would fail there."""
    problems = []
    for port, option in ports:
        try:
            check_free(f"127.0.0.1:{port}", option, remedy=f"pass {option} with a free port")
        except StartError as error:
            problems.append(f"Cannot start the demo: {error}")
    return problems


def shown(path):
    """A path as the reader can paste it from the repository: relative when it is inside."""
    return os.path.relpath(path) if Path(path).absolute().is_relative_to(Path.cwd()) else str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (the service's, without nginx)")
    parser.add_argument("--app-port", type=int, default=8000, help="Gunicorn's port")
    parser.add_argument("--standin-port", type=int, default=8001, help="the FathomNet stand-in's port")
    parser.add_argument("--folder", type=Path, default=None, help="for the cache and the access log "
                        "(default: var/demo in the repository)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)  # serve's, which is given this environment and no .env
        nginx = nginx_binary(settings) is not None  # as serve decides: NGINX=off runs Gunicorn alone
    except (ConfigError, StartError) as error:  # a bad setting, or an NGINX that cannot be run
        print(f"Cannot start the demo: {error}", file=sys.stderr)
        return 2
    ports = [(args.standin_port, "--standin-port"), (args.app_port, "--app-port")] + (
        [(args.port, "--port")] if nginx else [])
    problems = busy_ports(ports)  # before anything starts or is printed: the page must be ours, not another's
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    folder = (args.folder or demo_folder(settings)).resolve()

    def stop(*_):
        raise Stop

    signal.signal(signal.SIGTERM, stop)
    service = None
    try:
        # The stand-in draws its annotated images as deep-sea scenes, an animal at each box: all of them at start,
        # in the background (half a second each), so a first data-set job does not wait on its drawings.
        with StandInProcess(port=args.standin_port, look="scenes", draw_ahead=True) as standin:
            url = f"http://127.0.0.1:{args.port if nginx else args.app_port}"
            env = {
                **os.environ, "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
                "CACHE_DIR": str(folder / "cache"), "ACCESS_LOG": str(folder / "access.log"),
                "GUNICORN_BIND": f"127.0.0.1:{args.app_port}", "NGINX_LISTEN": f"127.0.0.1:{args.port}",
            }
            folder.mkdir(parents=True, exist_ok=True)
            # cwd: the demo folder, without a .env, so the demo's settings are the ones above
            service = subprocess.Popen([sys.executable, "-m", "cropper", "serve"], cwd=folder, env=env)
            try:
                wait_for(f"{url}/healthz", process=service)
            except RuntimeError as error:
                if service.poll() is not None:  # serve said why in its one line
                    return 1
                print(f"Cannot start the demo: {error}", file=sys.stderr)
                return 1
            uuid = standin.catalog()["framegrab"]["uuid"]
            annotated = standin.catalog()[ANNOTATED_NAMES[0]]["uuid"]
            several = standin.catalog()[DATASET_NAMES[2]]["uuid"]
            python = shown(sys.executable)
            print(f"\nFathomNet stand-in: {standin.api_url}   service: {url}")
            print(f"Open the page on an image with annotations: {url}/?image={annotated}")
            print(f"  or on one with several kinds of animal: {url}/?image={several}")
            print(f"Cache: {folder / 'cache'}   access log: {folder / 'access.log'}")
            print(f"  CACHE_DIR={shown(folder / 'cache')} {python} -m cropper cache stats")
            print(f"  {python} -m cropper.logstats {shown(folder / 'access.log')}")
            print("Try:")
            print(f"  curl -s -X POST {url}/cropper/ -H 'Content-Type: application/json' \\")
            print(f"       -d '{{\"uuid\": \"{uuid}\", \"x1\": 100, \"y1\": 100, \"x2\": 405, \"y2\": 400}}'")
            print("Ctrl-C stops everything.", flush=True)
            service.wait()
            return 0 if service.returncode == 0 else 1  # serve stopped on its own: it said why
    except (KeyboardInterrupt, Stop):
        return 0
    finally:
        if service is not None and service.poll() is None:
            service.send_signal(signal.SIGTERM)  # not SIGINT: a background job ignores it
            try:
                service.wait(timeout=60)
            except KeyboardInterrupt:
                service.kill()


if __name__ == "__main__":
    sys.exit(main())
