"""Run the service on this machine: nginx in front of Gunicorn when nginx is installed, else Gunicorn alone.

`python -m cropper serve` renders nginx's templates for local paths into a run folder (nginx.py),
checks them with `nginx -t`, starts both servers and stops both on Ctrl-C. The tests and the bench
start nginx through the same functions, so what they test is what runs.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .. import errors, wiring
from .nginx import DEFAULTS, FrontSite, NginxProcess, NginxSite, render_front, render_nginx

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx")


def find_nginx():
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def check_tls_files(cert, key):
    """List what is wrong with a certificate and key pair, in words that say how to fix it."""
    problems = []
    for label, path, marker in (("certificate", cert, "-----BEGIN CERTIFICATE-----"),
                                ("private key", key, "PRIVATE KEY-----")):
        file = Path(path)
        if not file.is_file():
            problems.append(f"TLS {label} {path} does not exist (or is not a file)")
        elif not os.access(file, os.R_OK):
            problems.append(f"TLS {label} {path} is not readable by user {os.geteuid()}, who starts nginx: "
                            f"chown it to that user or give it mode 640 with a group that user is in")
        elif marker not in file.read_text(errors="replace"):
            problems.append(f"TLS {label} {path} is not a PEM {label} (no '{marker}' line)")
    if not problems and Path(key).stat().st_mode & 0o077 & ~0o040:
        problems.append(f"TLS private key {key} is readable by other users (mode "
                        f"{Path(key).stat().st_mode & 0o777:o}): chmod 600 {key}")
    return problems


class Nginx:
    """nginx in the foreground, with its config and scratch files in run_dir."""

    def __init__(self, site, run_dir, binary=None, user=""):
        self.site, self.run_dir = site, Path(run_dir).resolve()
        self.binary = binary or find_nginx()
        render = render_front if isinstance(site, FrontSite) else render_nginx
        self.conf = render(site, NginxProcess.local(self.run_dir, user))
        site.access_log.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(site, NginxSite) and site.store_url and site.store_cache:
            site.store_cache.parent.mkdir(parents=True, exist_ok=True)  # nginx makes only its cache's last folder
        self.process = None

    def test_config(self):
        result = subprocess.run([self.binary, "-t", "-q", "-p", str(self.run_dir), "-c", str(self.conf)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"nginx refused its config {self.conf}:\n{result.stderr}")

    def start(self, log=None):
        self.test_config()
        self.process = subprocess.Popen([self.binary, "-p", str(self.run_dir), "-c", str(self.conf)],
                                        stdout=log, stderr=log)
        return self

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def gunicorn_command(app="cropper:create_app()"):
    """Gunicorn with the package's settings, serving the app factory: works from any folder."""
    return [sys.executable, "-m", "gunicorn", "-c", "python:cropper.ops.gunicorn_settings", app]


class StartError(Exception):
    """Why the service cannot start, in one line that says what to fix."""


def reachable_address(listen):
    """Where this machine reaches a listen: nginx's "8080" or "127.0.0.1:8080 default_server", Gunicorn's bind."""
    address = listen.split()[0]  # nginx's parameters follow the address
    return address if ":" in address else f"127.0.0.1:{address}"  # a port alone listens on every address


def wait_for_port(address, process, seconds=30):
    """True once something listens on host:port; False if process exits or the time is up first."""
    address = reachable_address(address)
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if address.startswith("unix:"):  # Gunicorn's (and nginx's) spelling of a Unix socket
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.settimeout(1)
                    probe.connect(address[len("unix:"):])
            else:  # "[::1]:8080": the brackets are the address's spelling, not part of the host
                socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def check_free(address, setting, remedy=None):
    """Refuse to start on a port something else already holds (it would answer in our place)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return  # not host:port (e.g. Docker's "80 default_server"): nothing to check here
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
        except OSError as error:
            raise StartError(f"{address} ({setting}) is not free: {error.strerror}; stop what uses it "
                             f"or {remedy or f'set {setting} to another address'}") from None


def is_loopback(address):
    if address.startswith("unix:"):  # a Unix socket: only this machine reaches it
        return True
    host = address.rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def worker_user(settings):
    """As whom nginx's workers run: NGINX_USER, else (when started as root) an unprivileged user."""
    if os.geteuid() != 0:
        return ""
    if settings.nginx_user:
        return settings.nginx_user
    for name in ("www-data", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise StartError("no unprivileged user (www-data or nobody) to run nginx's workers as: set NGINX_USER")


def can_reach(user, folder):
    """True if user may walk into folder (every folder on the way lets them through)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return False
    if account.pw_uid == 0:
        return True
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    folder = nearest_existing(folder)  # what does not exist yet will be made with open modes
    for step in [folder, *folder.parents]:
        mode = os.stat(step)
        allowed = mode.st_mode & (0o100 if mode.st_uid == account.pw_uid else
                                  0o010 if mode.st_gid in groups else 0o001)
        if not allowed:
            return False
    return True


DEFAULT_CACHE_DIR = DEFAULTS.cache_dir
# Where a service started as root keeps what nginx's unprivileged workers must reach, when the
# working folder is private (as root's home is) and VAR_DIR is left as it is: the usual places for
# a system service. Hosts on one machine each set a VAR_DIR of their own, and never fall back.
SYSTEM_CACHE_DIR, SYSTEM_RUN_DIR = Path("/var/cache/cropper"), Path("/run/cropper/nginx")


def workers_cache_dir(settings, user):
    """The cache folder nginx's workers (user) read: CACHE_DIR, or SYSTEM_CACHE_DIR for a private default."""
    if not user or can_reach(user, settings.cache_dir.resolve()):
        return settings.cache_dir
    if settings.cache_dir != DEFAULT_CACHE_DIR:
        raise StartError(f"nginx's workers run as {user}, who cannot read the cache folder "
                         f"{settings.cache_dir.resolve()}: set VAR_DIR (or CACHE_DIR) to a folder {user} can reach "
                         f"(e.g. {SYSTEM_CACHE_DIR}), or NGINX_USER to a user who can")
    return SYSTEM_CACHE_DIR


def for_workers(settings, user):
    """Settings whose cache folder nginx's workers (user) can read: a private default moves to /var/cache."""
    folder = workers_cache_dir(settings, user)
    if folder == settings.cache_dir:
        return settings
    print(f"Started as root: nginx's workers run as {user}, who cannot reach {DEFAULT_CACHE_DIR.resolve()}; "
          f"the cache is in {folder} (set VAR_DIR or CACHE_DIR to choose).", flush=True)
    return settings.replace(cache_dir=folder)


def served_cache_dir(settings):
    """The cache folder `serve` uses with these settings, for the operator commands to look in the same one."""
    try:
        if nginx_binary(settings) is None:
            return settings.cache_dir
        return workers_cache_dir(settings, worker_user(settings))
    except StartError:  # serve would refuse to start: the folder CACHE_DIR names is the one meant
        return settings.cache_dir


def run_dir(settings, user):
    """Where nginx's config, pid and temp files go: VAR_DIR/run/nginx, which its workers (user) must reach."""
    folder = settings.var_dir / "run" / "nginx"
    if not user or can_reach(user, folder.resolve()):
        return folder
    if settings.var_dir != DEFAULTS.var_dir:
        raise StartError(f"nginx's workers run as {user}, who cannot reach {folder.resolve()}: set VAR_DIR to a "
                         f"folder {user} can reach, or NGINX_USER to a user who can")
    return SYSTEM_RUN_DIR


def nearest_existing(folder):
    while not folder.exists():
        folder = folder.parent
    return folder


def nginx_binary(settings):
    """The nginx to run (NGINX), or None for none."""
    binary = {"auto": find_nginx(), "off": None}.get(settings.nginx, settings.nginx)
    if binary is not None and not shutil.which(binary):
        raise StartError(f"NGINX={settings.nginx} is not an nginx binary that can be run: set NGINX to auto, off, "
                         f"or the path of nginx")
    return binary


def checked_nginx(site, settings, binary):
    """nginx rendered for site in VAR_DIR/run/nginx and checked with `nginx -t`, its workers as NGINX_USER."""
    user = worker_user(settings)
    try:
        nginx = Nginx(site, run_dir(settings, user), binary, user=user)
    except ValueError as error:  # settings nginx cannot be given (a store it cannot read over plain http, no hosts)
        raise StartError(str(error)) from None
    try:
        nginx.test_config()
    except RuntimeError as error:
        raise StartError(str(error).replace("\n", " ").strip()) from None
    return nginx


def prepared_nginx(settings):
    """(nginx rendered for this machine and checked with `nginx -t`, or None to run Gunicorn alone; settings)."""
    binary = nginx_binary(settings)
    if binary is None:
        return None, settings
    settings = for_workers(settings, worker_user(settings))
    return checked_nginx(NginxSite.from_settings(settings), settings, binary), settings


def serve(settings, front=False):
    """Run until Ctrl-C (or SIGTERM): nginx + Gunicorn, or Gunicorn alone without nginx; with front, the
    front nginx of several hosts (CLUSTER_HOSTS) alone.

    Everything is checked before anything starts (TLS files, nginx's config, free ports), and what
    did start is stopped when the rest cannot: a failed start is one line and a non-zero exit.
    """
    try:
        return _serve_front(settings) if front else _serve(settings)
    except StartError as error:
        print(f"Cannot start: {error}", file=sys.stderr, flush=True)
        return 1


def prepare_store(settings):
    """Create the shared crop store's bucket if need be, and open its crops to reads (safe to repeat)."""
    try:
        wiring.stores(settings).crops.ensure_bucket()
    except errors.StoreUnavailableError as error:
        raise StartError(error.message) from None


def _serve(settings):
    if settings.tls_cert_file:
        problems = check_tls_files(settings.tls_cert_file, settings.tls_key_file)
        if problems:
            raise StartError("TLS: " + "; ".join(problems))
    nginx, settings = prepared_nginx(settings)
    if settings.cache_backend == "s3":  # with the cache folder the workers use: the store's breaker file is there
        prepare_store(settings)
    check_free(settings.gunicorn_bind, "GUNICORN_BIND")
    if nginx:
        check_free(settings.nginx_listen, "NGINX_LISTEN")
        if settings.tls_cert_file:
            check_free(settings.tls_listen, "TLS_LISTEN")
    else:
        why = "NGINX=off" if settings.nginx == "off" else "nginx is not installed"
        print(f"{why}: running Gunicorn alone on http://{settings.gunicorn_bind} (it serves crops too); "
              f"`apt-get install nginx-light` puts nginx in front.", flush=True)
        if not is_loopback(settings.gunicorn_bind):
            print(f"Warning: Gunicorn alone listens on {settings.gunicorn_bind}, beyond this machine. It has no "
                  f"deadline for slow clients, which can stall it: every deployment puts nginx in front.",
                  file=sys.stderr, flush=True)

    def start(processes):
        # Gunicorn reads its settings from the environment: pass on what serve decided (the cache folder).
        environment = {**os.environ, "CACHE_DIR": str(settings.cache_dir)}
        processes.append(subprocess.Popen(gunicorn_command(), env=environment))
        if not wait_for_port(settings.gunicorn_bind, processes[0]):
            raise StartError(f"Gunicorn did not start listening on {settings.gunicorn_bind} (its log is above)")
        if nginx:
            start_nginx(nginx, settings, processes)
            urls = [f"http://{reachable_address(settings.nginx_listen)}"] + (
                [f"https://{reachable_address(settings.tls_listen)}"] if settings.tls_cert_file else [])
            print(f"Serving on {' and '.join(urls)} (nginx), Gunicorn on {settings.gunicorn_bind}; "
                  f"access log: {settings.access_log}. Ctrl-C stops both.", flush=True)

    return run(start, nginx)


def _serve_front(settings):
    binary = nginx_binary(settings)
    if binary is None:
        raise StartError("the front is nginx, which is not installed (apt-get install nginx-light), or NGINX=off")
    nginx = checked_nginx(FrontSite.from_settings(settings), settings, binary)
    check_free(settings.nginx_listen, "NGINX_LISTEN")

    def start(processes):
        start_nginx(nginx, settings, processes)
        print(f"Serving the front of {', '.join(settings.cluster_hosts)} on "
              f"http://{reachable_address(settings.nginx_listen)} (nginx); access log: {settings.access_log}. "
              "Ctrl-C stops it.", flush=True)

    return run(start, nginx)


def start_nginx(nginx, settings, processes):
    nginx.start()
    processes.append(nginx.process)
    if not wait_for_port(settings.nginx_listen, nginx.process, seconds=10):
        raise StartError(f"nginx did not start listening on {settings.nginx_listen} (its log is above)")


def run(start, nginx):
    """start(processes), appending each server as it starts; then keep them until Ctrl-C or SIGTERM (0), or
    until one stops on its own (a StartError); stop every one that runs, nginx first."""
    processes = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds to the finally below
    try:
        start(processes)
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        raise StartError("a server stopped on its own (its log is above); stopped the others")
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the stopping short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if nginx:
            nginx.stop()
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=40)
