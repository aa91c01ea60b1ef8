"""Try the service with no internet: `python -m tests.demo`.

Starts the FathomNet stand-in and the service (Gunicorn) pointed at it, prints a curl line
that works against them, and stops both on Ctrl-C.
"""

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from tests.servers import Gunicorn, StandInProcess


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the service's port")
    parser.add_argument("--standin-port", type=int, default=8001, help="the FathomNet stand-in's port")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(args.cache_dir or f"{tmp}/cache").resolve()
        with StandInProcess(port=args.standin_port) as standin:
            env = {"CACHE_DIR": cache_dir, "FATHOMNET_API_URL": standin.api_url, "ALLOWED_IMAGE_HOSTS": "127.0.0.1"}
            with Gunicorn(env, cwd=tmp, port=args.port, workers=2) as service:
                uuid = standin.catalog()["framegrab"]["uuid"]
                print(f"FathomNet stand-in: {standin.api_url}   service: {service.url}   cache: {cache_dir}")
                print("Try:")
                print(f"  curl -s -X POST {service.url}/cropper/ -H 'Content-Type: application/json' \\")
                print(f"       -d '{{\"uuid\": \"{uuid}\", \"x1\": 100, \"y1\": 100, \"x2\": 405, \"y2\": 400}}'")
                print("Ctrl-C stops both.", flush=True)
                wait_for_ctrl_c()


def wait_for_ctrl_c():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds the with-blocks, stopping the servers
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
