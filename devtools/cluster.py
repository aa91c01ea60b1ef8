"""Several hosts on this machine, for tests and benches: N hosts and a front nginx sharing one S3 store.

    with SeaweedFS(folder / "s3") as store, LocalCluster(folder, standin, store, hosts=3) as cluster:
        requests.post(f"{cluster.front_url}/cropper/", json=...)
        cluster.kill(cluster.owner_of(uuid))         # SIGKILL the whole host

Each host is what a real one runs: Gunicorn (CACHE_BACKEND=s3, CLUSTER_*) with its own cache folder
(its image sources), and its own nginx in store mode (crops read from the bucket through a local
cache). The front nginx hashes requests to the hosts' nginx by image; CLUSTER_HOSTS lists those
addresses exactly as the front's upstream does, so the apps' ring is the front's. PUBLIC_URL is
the front's URL on every host. Everything listens on 127.0.0.1; the FathomNet stand-in (in this
process or its own) and the store are shared.
"""

import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cropper.cluster import Ring
from cropper.ops.nginx import FrontSite
from cropper.ops.serve import Nginx

from .servers import Gunicorn, NginxServer, _listening, children, free_port, service_env, wait_for, wait_until

# A host waits on the stand-in, the store and other hosts at once on a busy machine: longer reads.
SLOWER = {"READ_TIMEOUT": "2", "API_TIMEOUT": "10", "DOWNLOAD_TIMEOUT": "10"}
# Each host's nginx takes the client's address from the front's X-Forwarded-For (the front connects
# from 127.0.0.1); its per-client limits are lifted here, where one machine is every client.
FRONT = ("127.0.0.1/32",)
UNLIMITED = {"api_rate": "100000r/s", "api_burst": 100000, "regen_rate": "100000r/s", "regen_burst": 100000,
             "iiif_rate": "100000r/s", "iiif_burst": 100000}


def kill_tree(pid):
    """SIGKILL pid and every process under it, none left to start another meanwhile.

    Each is stopped (SIGSTOP) as it is found, so a Gunicorn arbiter cannot replace a worker and
    nginx's master cannot start a worker between the listing and the kill; then all are killed.
    """
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        try:
            os.kill(current, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        found.append(current)
        frontier += children(current)
    for each in found:
        try:
            os.kill(each, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


class Host:
    """One host of the cluster: its Gunicorn and its nginx (store mode), each with its own folders."""

    def __init__(self, index, folder, standin, store, workers, env, site_options):
        self.index = index
        self.folder = Path(folder)
        self.cache_dir = self.folder / "cache"
        self.folder.mkdir(parents=True, exist_ok=True)
        settings = {"CACHE_BACKEND": "s3", **SLOWER, **store.env(), **env}  # env may set what SLOWER does
        self.gunicorn = Gunicorn(service_env(standin, self.cache_dir, **settings), cwd=self.folder, workers=workers)
        self.nginx = NginxServer(self.gunicorn, self.cache_dir, self.folder / "nginx",
                                 store_url=f"{store.endpoint_url}/{store.bucket}",
                                 store_cache=self.cache_dir / "store-cache",  # where its app clears a purge's
                                 **site_options)
        self.address = f"127.0.0.1:{self.nginx.port}"  # its entry in CLUSTER_HOSTS and in the front's upstream
        self.url = self.nginx.url
        self.killed = self.app_killed = False

    def pixels_stored(self, uuid):
        """True if this host has the image's decoded pixels: it downloaded (or took over) the image."""
        return (self.cache_dir / "sources" / uuid[:2] / f"{uuid}.pix").exists()

    def processes(self):
        """Pids of every process of this host: arbiter, workers, pruner, nginx master and workers."""
        pids = []
        for top in (self.gunicorn.process, self.nginx.nginx.process):
            if top is not None and top.poll() is None:
                stack = [top.pid]
                while stack:
                    pid = stack.pop()
                    pids.append(pid)
                    stack += children(pid)
        return pids

    def kill(self):
        """SIGKILL every process of the host at once, as a machine that dies; returns their pids."""
        pids = []
        for top in (self.nginx.nginx.process, self.gunicorn.process):
            if top is not None and top.poll() is None:
                pids += kill_tree(top.pid)
        for top in (self.nginx.nginx.process, self.gunicorn.process):
            if top is not None:
                top.wait(timeout=10)  # reap them; their children went with them
        self.killed = True
        return pids

    def kill_app(self):
        """SIGKILL only its Gunicorn (arbiter, workers, pruner): its nginx stays, answering 502 for the app."""
        pids = kill_tree(self.gunicorn.process.pid)
        self.gunicorn.process.wait(timeout=10)
        self.app_killed = True
        return pids

    def stop(self):
        self.nginx.stop()
        self.gunicorn.stop()

    def __repr__(self):
        return f"Host({self.index}, {self.address})"


class LocalCluster:
    """`hosts` hosts and a front nginx on 127.0.0.1, sharing `store` (a started SeaweedFS) and `standin`."""

    def __init__(self, folder, standin, store, hosts=3, workers=2, env=None, site_options=None):
        self.folder = Path(folder)
        self.key = secrets.token_hex(16)
        site_options = {**UNLIMITED, "real_ip_from": FRONT, **(site_options or {})}
        self.hosts = [Host(i, self.folder / f"host{i}", standin, store, workers, env or {}, site_options)
                      for i in range(hosts)]
        self.addresses = tuple(host.address for host in self.hosts)
        self.ring = Ring(self.addresses)
        self.front_port = free_port()
        self.front_url = f"http://127.0.0.1:{self.front_port}"
        self.front_log = self.folder / "front" / "access.log"
        for host in self.hosts:
            host.gunicorn.env.update({
                "CLUSTER_HOSTS": ",".join(self.addresses), "CLUSTER_SELF": host.address, "CLUSTER_KEY": self.key,
                "CLUSTER_TIMEOUT": "30", "PUBLIC_URL": self.front_url,
            })
        site = FrontSite(listen=f"127.0.0.1:{self.front_port}", hosts=self.addresses, access_log=self.front_log)
        self.front = Nginx(site, self.folder / "front", user="root" if os.geteuid() == 0 else "")
        self.started = []

    def start(self):
        try:
            with ThreadPoolExecutor(len(self.hosts)) as pool:  # Gunicorns start side by side: ~1 s each
                list(pool.map(lambda host: host.gunicorn.start(), self.hosts))
            for host in self.hosts:
                self.started.append(host.gunicorn)
                host.nginx.start()
                self.started.append(host.nginx)
            with open(self.folder / "front" / "nginx.log", "ab") as log:
                self.front.start(log=log)
            self.started.append(self.front)
            if not wait_until(lambda: _listening(self.front_port), timeout=10):
                raise RuntimeError(f"the front nginx did not listen on {self.front_url}")
            wait_for(f"{self.front_url}/healthz", seconds=10, process=self.front.process)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.front.process is not None:
            self.front.stop()
        for host in self.hosts:
            if host.gunicorn.process is not None:
                host.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- who owns what
    def host_at(self, address):
        return next(host for host in self.hosts if host.address == address)

    def owners(self, uuid):
        """The hosts in the order the ring gives uuid to them (the front's and every app's order)."""
        return [self.host_at(address) for address in self.ring.owners(uuid)]

    def owner_of(self, uuid):
        """The host that makes uuid's crops now: the first on its ring that is not killed (nor its app)."""
        return next(host for host in self.owners(uuid) if not (host.killed or host.app_killed))

    def kill(self, host):
        """SIGKILL every process of one host; the others and the front keep running."""
        started = time.monotonic()
        pids = host.kill()
        return pids, time.monotonic() - started
