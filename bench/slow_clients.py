"""What slow clients do to Gunicorn alone, and to nginx in front: `python -m bench.slow_clients`.

Opens SLOW connections of each kind (headers sent a byte at a time, a body that never finishes,
answers never read, connections left idle) against the service, and meanwhile times a well-behaved
client's cached crop requests. Prints the good client's median, p99 and worst latency with no
attack and under each attack, for Gunicorn alone and for nginx in front. Loopback only; every
loop is bounded in count and time.
"""

import argparse
import socket
import statistics
import tempfile
import threading
import time

import requests

from devtools.servers import Gunicorn, NginxServer, StandInProcess

KINDS = ("slow headers", "slow body", "unread answers", "idle connections")


def attacker(url, kind, stop):
    """One slow client of the given kind, until stop is set."""
    host, port = url.removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=2)
    except OSError:
        return
    try:
        if kind == "slow headers":
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.5):
                    break
                sock.send(bytes([byte]))
        elif kind == "slow body":
            sock.send(b"POST /cropper/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n{")
            while not stop.wait(0.5):
                sock.send(b" ")
        elif kind == "unread answers":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            while not stop.is_set():
                sock.send(request * 100)  # pipelined, never read: the server's writes fill the window
                stop.wait(0.1)
        else:  # idle connections
            stop.wait()
    except OSError:
        pass
    finally:
        sock.close()


def good_client(url, body, seconds):
    """Latencies (s) of cached crop POSTs, one after another, for `seconds`."""
    latencies, session = [], requests.Session()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.monotonic()
        try:
            session.post(f"{url}/cropper/", json=body, timeout=15).raise_for_status()
            latencies.append(time.monotonic() - started)
        except requests.RequestException:
            latencies.append(15.0)  # a timeout or a refused connection counts as the worst
    return latencies


def measure(url, body, kind, count, seconds):
    stop = threading.Event()
    attackers = [threading.Thread(target=attacker, args=(url, kind, stop), daemon=True) for _ in range(count)] \
        if kind else []
    for thread in attackers:
        thread.start()
    time.sleep(0.5 if kind else 0)
    latencies = good_client(url, body, seconds)
    stop.set()
    for thread in attackers:
        thread.join(5)
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000, ordered[-1] * 1000


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slow", type=int, default=200, help="slow connections per attack")
    parser.add_argument("--seconds", type=float, default=8, help="how long the good client measures, per attack")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, StandInProcess() as standin:
        env = {"CACHE_DIR": f"{tmp}/cache", "FATHOMNET_API_URL": standin.api_url,
               "ALLOWED_IMAGE_HOSTS": f"127.0.0.1:{standin.port}", "CACHE_PRUNE_INTERVAL": "0"}
        limits = {"api_rate": "100000r/s", "api_burst": 100000}  # the good client is not the one to stop
        with Gunicorn(env, cwd=tmp, workers=3) as app, NginxServer(app, f"{tmp}/cache", tmp, **limits) as nginx:
            uuid = standin.catalog()["gray"]["uuid"]
            body = {"uuid": uuid, "x1": 0, "y1": 0, "x2": 64, "y2": 64}
            requests.post(f"{app.url}/cropper/", json=body, timeout=30).raise_for_status()
            print(f"Gunicorn: 3 workers x 32 threads (the defaults); {args.slow} slow "
                  f"connections per attack; a good client's cached POSTs for {args.seconds:.0f} s (ms)")
            print(f"{'attack':<20}{'Gunicorn alone: median / p99 / worst':>40}{'nginx in front':>30}")
            for kind in (None, *KINDS):
                alone = measure(app.url, body, kind, args.slow, args.seconds)
                front = measure(nginx.url, body, kind, args.slow, args.seconds)
                print(f"{kind or 'none':<20}{'%.1f / %.1f / %.0f' % alone:>40}{'%.1f / %.1f / %.0f' % front:>30}",
                      flush=True)


if __name__ == "__main__":
    main()
