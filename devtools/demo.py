"""Try the service with no internet: `python -m devtools.demo`.

Starts the FathomNet stand-in, then the service exactly as `python -m cropper serve` runs it
(nginx in front of Gunicorn, or Gunicorn alone without nginx) pointed at the stand-in, prints a
curl line that works against them, and stops everything on Ctrl-C.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from cropper.serve import find_nginx
from devtools.servers import ROOT, StandInProcess, wait_for


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (the service's, without nginx)")
    parser.add_argument("--app-port", type=int, default=8000, help="Gunicorn's port")
    parser.add_argument("--standin-port", type=int, default=8001, help="the FathomNet stand-in's port")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, StandInProcess(port=args.standin_port) as standin:
        with_nginx = find_nginx() is not None
        url = f"http://127.0.0.1:{args.port if with_nginx else args.app_port}"
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "FATHOMNET_API_URL": standin.api_url,
            "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}",
            "CACHE_DIR": str(Path(args.cache_dir or f"{tmp}/cache").resolve()),
            "GUNICORN_BIND": f"127.0.0.1:{args.app_port}", "NGINX_LISTEN": f"127.0.0.1:{args.port}",
            "ACCESS_LOG": f"{tmp}/access.log",
        }
        # cwd: a folder without a .env, so the demo's settings are the ones above
        service = subprocess.Popen([sys.executable, "-m", "cropper", "serve"], cwd=tmp, env=env)
        try:
            wait_for(f"{url}/healthz", process=service)
            uuid = standin.catalog()["framegrab"]["uuid"]
            print(f"\nFathomNet stand-in: {standin.api_url}   service: {url}   cache: {env['CACHE_DIR']}")
            print("Try:")
            print(f"  curl -s -X POST {url}/cropper/ -H 'Content-Type: application/json' \\")
            print(f"       -d '{{\"uuid\": \"{uuid}\", \"x1\": 100, \"y1\": 100, \"x2\": 405, \"y2\": 400}}'")
            print("Ctrl-C stops everything.", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds the with-blocks too
            service.wait()
        except KeyboardInterrupt:
            pass
        finally:
            service.send_signal(signal.SIGINT)
            service.wait(timeout=60)


if __name__ == "__main__":
    main()
